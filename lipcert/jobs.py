"""The unit of work: one block to certify (BlockJob), what came of it (BlockOutcome), and its key.

Planning makes jobs (lipcert.blocks), executors run them (lipcert.execute), the cache keeps
their outcomes (lipcert.cache); none of those needs the others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from lipcert.defaults import SolverSettings
from lipcert.network.form import Network
from lipcert.vocabulary import Method


@dataclass(frozen=True)
class BlockJob:
    key: str  # identifies the result: block matrices, method, solver settings, input weights
    net: Network
    method: Method  # naive, lipsdp-neuron or lipsdp-layer
    settings: SolverSettings
    input_weights: np.ndarray | None = None
    tiles: tuple | None = None  # the tiles of a coupled group: one SDP over all of them
    clique_target: int | None = None  # solve over chordal cliques merged up to this side (sdp.chordal)
    deadline: float | None = None  # wall-clock time (time.time()) by which the estimate must be done

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))


@dataclass(frozen=True)
class BlockOutcome:
    key: str
    bound: float  # verified (or sound fallback) bound of the block
    source: str
    size: int  # LMI side as solved
    seconds: float
    raw_objective: float | None = None  # diagnosis only: never a bound
    fallback: bool = False  # the block's LipSDP could not be certified; the bound is its naive one
    multipliers: tuple[float, ...] | None = None  # the certified per-neuron λ of the block (LipSDP-Neuron)
    cut_short: bool = False  # the estimate's time budget stopped or skipped it: sound, but not cached

    def to_json(self) -> dict:
        return asdict(self)


def job_key(
    block_key: str,
    method: Method | str,
    settings: SolverSettings,
    weights: np.ndarray | None,
    clique_target: int | None = None,
) -> str:
    """A result is reusable only for the same block, method, settings, input weights and decomposition."""
    digest = hashlib.sha256(block_key.encode())
    solve = [str(method), settings.key()]
    if clique_target is not None:
        solve.append(clique_target)
    digest.update(json.dumps(solve, sort_keys=True).encode())
    if weights is not None:
        digest.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    return digest.hexdigest()
