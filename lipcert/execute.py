"""Run block jobs (lipcert.jobs): in this process, in a local process pool, or on a Dask cluster.

Every block runs with single-threaded BLAS, whichever executor runs it, so the verified
bound is the same bit for bit everywhere (multi-threaded LAPACK may round differently),
and a pool of N workers on N cores does not oversubscribe them.

Workers die with their parent, however it dies: on Linux the kernel kills them when it goes
(PR_SET_PDEATHSIG), elsewhere a watchdog thread in each worker sees the parent gone; and every
way out of run_jobs, a signal or an error included, stops the pool or cancels the Dask tasks.
Workers write no files: the parent alone caches what they return.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

import numpy as np

from lipcert.defaults import SolverSettings
from lipcert.jobs import BlockJob, BlockOutcome
from lipcert.vocabulary import Method


def certify_job(job: BlockJob) -> BlockOutcome:
    """Certify one block. Runs in any worker; never raises for solver trouble."""
    from threadpoolctl import threadpool_limits

    from lipcert.sdp.certify import certify_block, naive_block_bound

    start = time.perf_counter()
    with threadpool_limits(limits=1):
        if job.method is Method.NAIVE:
            bound = naive_block_bound(job.net, job.input_weights)
            return BlockOutcome(job.key, bound, "naive", job.net.lmi_size, time.perf_counter() - start)
        settings, remaining = _within_budget(job)
        if remaining is not None and remaining <= 0:
            bound = naive_block_bound(job.net, job.input_weights)
            why = "fallback-naive: not solved, the estimate's time budget (--time-limit) was spent"
            return BlockOutcome(job.key, bound, why, job.net.lmi_size, 0.0, None, True, None, cut_short=True)
        cert = certify_block(
            job.net,
            job.method,
            settings,
            input_weights=job.input_weights,
            clique_target=job.clique_target,
            tiles=job.tiles,
        )
    raw = cert.raw_sqrt_objective if np.isfinite(cert.raw_sqrt_objective) else None
    seconds = time.perf_counter() - start
    lam = _neuron_multipliers(job, cert)
    source, size = _source(job, cert), cert.lmi_size_solved
    own = job.settings.time_limit_secs
    binding = remaining is not None and (own <= 0 or remaining < own)  # the estimate's budget, not the block's own
    cut = binding and cert.solver_status == "time_limit"
    return BlockOutcome(job.key, cert.bound, source, size, seconds, raw, cert.is_fallback, lam, cut_short=cut)


def _within_budget(job: BlockJob) -> tuple[SolverSettings, float | None]:
    """The job's solver settings with SCS's time limit cut to what the estimate has left (if anything)."""
    if job.deadline is None:
        return job.settings, None
    remaining = job.deadline - time.time()
    own = job.settings.time_limit_secs
    limit = remaining if own <= 0 else min(own, remaining)
    return replace(job.settings, time_limit_secs=max(limit, 1e-3)), remaining


def _neuron_multipliers(job: BlockJob, cert) -> tuple[float, ...] | None:  # noqa: ANN001 - a BlockCertificate
    """The block's certified per-neuron λ, for whole-network certificates (lipcert.stitch)."""
    if job.method is not Method.NEURON or cert.multipliers is None:  # None also for naive fallbacks
        return None
    return tuple(float(v) for v in np.asarray(cert.multipliers).ravel())


def _source(job: BlockJob, cert) -> str:  # noqa: ANN001 - a BlockCertificate
    """What the block's bound is, and how its SDP was decomposed."""
    if job.tiles is not None:
        return f"coupled ({len(job.tiles)} tiles): {cert.source}"
    if cert.cliques and not cert.is_fallback:
        return f"{cert.source} ({len(cert.cliques)} chordal cliques of side <= {max(cert.cliques)})"
    return cert.source


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
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=tie_to_parent, initargs=(os.getpid(),)
    )
    try:
        futures = [pool.submit(certify_job, job) for job in _largest_first(jobs)]
        for future in as_completed(futures):
            _record(results, future.result(), on_done)
    except BaseException:  # a signal, a worker's error, a failing callback: no worker goes on solving
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 1.0


def tie_to_parent(parent: int) -> None:
    """Pool initialiser: this worker dies when its parent does, even by SIGKILL.

    Ctrl-C reaches the whole process group; a worker leaves it to the parent, which stops the
    pool (an SCS solve still catches it and ends the job with Interrupted, which the parent sees).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not (sys.platform.startswith("linux") and _parent_death_signal(signal.SIGKILL)):
        threading.Thread(target=_watch_parent, args=(parent,), name="lipcert-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the tie was made
        os._exit(1)


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send signum when the parent ends; False if it cannot be asked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Where the kernel cannot do it: once the parent is gone this process is re-parented; end it."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: cancel what has not started, kill what runs (solves cannot be stopped half way)."""
    # No public way to end running workers before Python 3.14's kill_workers(); this mirrors it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # already gone, or already closed
            process.kill()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(timeout=5)


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
        try:
            for future in dask_completed(futures):
                _record(results, future.result(), on_done)
        except BaseException:  # nobody will read them: the scheduler drops the tasks not yet started
            client.cancel(futures)
            raise
    return results


def _largest_first(jobs: list[BlockJob]) -> list[BlockJob]:
    """Start the longest solves first so that no worker is left with one big block at the end."""
    return sorted(jobs, key=lambda job: -job.net.lmi_size)
