"""Solve independent blocks: in this process, in a local process pool, or on a Dask cluster.

Every block runs with single-threaded BLAS, whichever executor runs it, so the verified
bound is the same bit for bit everywhere (multi-threaded LAPACK may round differently),
and a pool of N workers on N cores does not oversubscribe them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass

import numpy as np

from lipcert.network.form import Network
from lipcert.sdp.solve import SolverSettings


@dataclass(frozen=True)
class BlockJob:
    key: str  # identifies the result: block matrices, method, solver settings, input weights
    net: Network
    method: str  # "neuron", "layer" or "naive"
    settings: SolverSettings
    input_weights: np.ndarray | None = None
    tiles: tuple | None = None  # the tiles of a coupled group (method "coupled")
    clique_target: int | None = None  # solve over chordal cliques merged up to this side (sdp.chordal)


@dataclass(frozen=True)
class BlockOutcome:
    key: str
    bound: float  # verified (or sound fallback) bound of the block
    source: str
    size: int  # LMI side as solved
    seconds: float
    raw_objective: float | None = None  # diagnosis only: never a bound

    def to_json(self) -> dict:
        return asdict(self)


def job_key(
    block_key: str,
    method: str,
    settings: SolverSettings,
    weights: np.ndarray | None,
    clique_target: int | None = None,
) -> str:
    """A result is reusable only for the same block, method, settings, input weights and decomposition."""
    digest = hashlib.sha256(block_key.encode())
    solve = [method, asdict(settings)] if clique_target is None else [method, asdict(settings), clique_target]
    digest.update(json.dumps(solve, sort_keys=True).encode())
    if weights is not None:
        digest.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    return digest.hexdigest()


def certify_job(job: BlockJob) -> BlockOutcome:
    """Certify one block. Runs in any worker; never raises for solver trouble."""
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(limits=1):
        if job.method == "naive":
            from lipcert.sdp.certify import naive_block_bound

            bound = naive_block_bound(job.net, job.input_weights)
            return BlockOutcome(job.key, bound, "naive", job.net.lmi_size, time.perf_counter() - start)
        if job.method == "coupled":
            return _certify_coupled(job, start)
        from lipcert.sdp.certify import certify_block

        cert = certify_block(
            job.net, job.method, job.settings, input_weights=job.input_weights, clique_target=job.clique_target
        )
    raw = cert.raw_sqrt_objective if np.isfinite(cert.raw_sqrt_objective) else None
    source = cert.source
    if cert.cliques and not cert.is_fallback:
        source = f"{source} ({len(cert.cliques)} chordal cliques of side <= {max(cert.cliques)})"
    return BlockOutcome(job.key, cert.bound, source, cert.lmi_size_solved, time.perf_counter() - start, raw)


def _certify_coupled(job: BlockJob, start: float) -> BlockOutcome:
    """One SDP over a group's tiles; if it cannot be verified, the group's naive bound."""
    from lipcert.partition.coupled import SdpSettings, coupled_lipsdp
    from lipcert.sdp.certify import naive_block_bound

    size = max(t.net.lmi_size for t in job.tiles)
    settings = SdpSettings(eps=job.settings.eps, max_iters=job.settings.max_iters)
    try:
        cert = coupled_lipsdp(job.net, job.tiles, settings)
    except Exception as err:  # solver trouble of any kind must not end the run
        bound = naive_block_bound(job.net)
        reason = f"fallback-naive: coupled SDP failed ({type(err).__name__}: {err})"
        return BlockOutcome(job.key, bound, reason, size, time.perf_counter() - start)
    source = f"coupled ({len(job.tiles)} tiles)"
    return BlockOutcome(job.key, cert.bound, source, size, time.perf_counter() - start, np.sqrt(cert.solver_rho))


Callback = Callable[[BlockOutcome], None]


def run_jobs(
    jobs: Iterable[BlockJob], workers: int = 1, scheduler: str | None = None, on_done: Callback | None = None
) -> dict[str, BlockOutcome]:
    """Certify every job (assumed distinct by key); results by key."""
    jobs = list(jobs)
    if scheduler is not None:
        return _run_dask(jobs, scheduler, on_done)
    if workers <= 1 or len(jobs) <= 1:
        return _run_here(jobs, on_done)
    return _run_pool(jobs, workers, on_done)


def _record(results: dict[str, BlockOutcome], outcome: BlockOutcome, on_done: Callback | None) -> None:
    results[outcome.key] = outcome
    if on_done is not None:
        on_done(outcome)


def _run_here(jobs: list[BlockJob], on_done: Callback | None) -> dict[str, BlockOutcome]:
    results: dict[str, BlockOutcome] = {}
    for job in jobs:
        _record(results, certify_job(job), on_done)
    return results


def _run_pool(jobs: list[BlockJob], workers: int, on_done: Callback | None) -> dict[str, BlockOutcome]:
    # spawn, not fork: a forked copy of a process that already runs BLAS or torch threads can hang.
    context = multiprocessing.get_context("spawn")
    results: dict[str, BlockOutcome] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(certify_job, job) for job in _largest_first(jobs)]
        for future in as_completed(futures):
            _record(results, future.result(), on_done)
    return results


def _run_dask(jobs: list[BlockJob], scheduler: str, on_done: Callback | None) -> dict[str, BlockOutcome]:
    from lipcert.errors import BadInputError

    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise BadInputError("--scheduler needs Dask: pip install 'lipcert[dask]'") from None
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as err:
        raise BadInputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({err})") from None
    results: dict[str, BlockOutcome] = {}
    with client:
        futures = client.map(certify_job, _largest_first(jobs), pure=False)
        for future in dask_completed(futures):
            _record(results, future.result(), on_done)
    return results


def _largest_first(jobs: list[BlockJob]) -> list[BlockJob]:
    """Start the longest solves first so that no worker is left with one big block at the end."""
    return sorted(jobs, key=lambda job: -job.net.lmi_size)
