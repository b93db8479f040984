"""Combining per-block bounds into one bound: the theorems of MATH.md §4, one function each,
and RULES, the registry that names each group combination and the theorem behind it.

Every result is a certificate, so every floating-point operation is rounded upward.
Round-to-nearest IEEE arithmetic (and math.fsum, math.sqrt) return the float nearest
to the exact result; the next float above it (`round_up`) is therefore >= the exact
result. Applying that after each operation on nonnegative numbers keeps every
intermediate value an upper bound of its exact counterpart, and the functions used
(sum, product, sqrt, max) are monotone, so the final value bounds the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from lipcert.defaults import COUPLED_BUDGET
from lipcert.linalg import round_up
from lipcert.vocabulary import Combine, GroupRule, Method


def combine_paper(bounds: Sequence[float]) -> float:
    """(a) L <= sqrt(sum_i L_i^2): the tiles' outputs partition y and ||dx_K|| <= ||dx||."""
    squares = [_square_up(b) for b in _checked("bound", bounds)]
    return _sqrt_up(round_up(math.fsum(squares)))


def combine_overlap(bounds: Sequence[float], input_indices: Sequence[np.ndarray], n_x: int) -> float:
    """(b) L <= sqrt(max_k sum_{i: k in K_i} L_i^2): only the tiles that read pixel k pay for it."""
    values = _checked("bound", bounds)
    if len(values) != len(input_indices):
        raise ValueError(f"{len(values)} bounds but {len(input_indices)} input index sets")
    squares = np.array([_square_up(b) for b in values])
    worst = max((_group_sum_up(squares, group) for group in _covering_sets(input_indices, n_x)), default=0.0)
    return _sqrt_up(worst)


def pou_weights(input_indices: Sequence[np.ndarray], n_x: int) -> list[np.ndarray]:
    """(c) Partition-of-unity weights pi_i(k) <= 1/#{tiles reading k}, aligned with each K_i.

    The weights are rounded down, so sum_{i: k in K_i} pi_i(k) <= 1 holds exactly and
    the theorem of combine_pou applies to the floats as stored.
    """
    counts = _cover_counts(input_indices, n_x)
    return [_reciprocal_down(counts[np.asarray(K, dtype=np.int64)]) for K in input_indices]


def combine_pou(rhos: Sequence[float]) -> float:
    """(c) L <= sqrt(max_i rho_i), rho_i from the tile LMI with input term -rho_i diag(pi_i).

    Proof: ||df||^2 = sum_i ||df_i||^2 <= sum_i rho_i sum_k pi_i(k) dx_k^2
    <= max_i rho_i sum_k (sum_{i: k in K_i} pi_i(k)) dx_k^2 <= max_i rho_i ||dx||^2.
    """
    values = _checked("rho", rhos)
    return _sqrt_up(max(values, default=0.0))


def combine_depth(bounds: Sequence[float]) -> float:
    """Depth groups compose: L(g_m o ... o g_1) <= prod_g L(g_g)."""
    product = 1.0
    for bound in _checked("bound", bounds):
        product = round_up(product * bound)
    return product


def _checked(what: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    for i, v in enumerate(out):
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"{what} {i} must be finite and >= 0, found {v}")
    return out


def _square_up(value: float) -> float:
    return round_up(value * value)


def _sqrt_up(value: float) -> float:
    return round_up(math.sqrt(value))


def _incidence(input_indices: Sequence[np.ndarray], n_x: int) -> sp.csr_matrix:
    """Boolean matrix (n_x x tiles): entry (k, i) when tile i reads pixel k."""
    cols, rows = [], []
    for i, K in enumerate(input_indices):
        K = np.asarray(K, dtype=np.int64).ravel()
        if K.size and (K.min() < 0 or K.max() >= n_x):
            raise ValueError(f"input indices of tile {i} must lie in [0, {n_x})")
        if np.unique(K).size != K.size:
            raise ValueError(f"input indices of tile {i} repeat a pixel")
        rows.append(K)
        cols.append(np.full(K.size, i, dtype=np.int64))
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = np.ones(row.size, dtype=np.int8)
    return sp.csr_matrix((data, (row, col)), shape=(n_x, len(input_indices)))


def _cover_counts(input_indices: Sequence[np.ndarray], n_x: int) -> np.ndarray:
    return np.diff(_incidence(input_indices, n_x).indptr)


def _covering_sets(input_indices: Sequence[np.ndarray], n_x: int) -> set[tuple[int, ...]]:
    """The distinct sets {i: k in K_i} over pixels k (few: pixels in one region share them)."""
    inc = _incidence(input_indices, n_x)
    inc.sort_indices()
    return {tuple(inc.indices[inc.indptr[k] : inc.indptr[k + 1]].tolist()) for k in range(n_x)}


def _group_sum_up(squares: np.ndarray, group: tuple[int, ...]) -> float:
    return round_up(math.fsum(squares[list(group)].tolist())) if group else 0.0


def _reciprocal_down(counts: np.ndarray) -> np.ndarray:
    """1/c rounded toward zero: the nearest float, or the one below it when that is above 1/c."""
    counts = counts.astype(np.int64)
    if np.any(counts < 1):
        raise ValueError("every pixel of a tile is covered at least by that tile")
    out = np.empty(counts.size)
    for c in np.unique(counts).tolist():  # few distinct counts; exact rational check for each
        q = 1.0 / c
        out[counts == c] = q if Fraction(q) * c <= 1 else float(np.nextafter(q, 0.0))
    return out


# --------------------------------------------------------------------------- the registry


class Solves(StrEnum):
    """What a group's combination has solved before it combines."""

    GROUP = "the group as one block"
    TILES = "each tile on its own"
    WEIGHTED_TILES = "each tile with partition-of-unity input weights"
    COUPLED = "the group's tiles in one SDP"


@dataclass(frozen=True)
class Rule:
    """One way a depth group's tile results become the group's bound."""

    name: GroupRule
    solves: Solves
    theorem: str  # the statement proven in MATH.md §4 (and in the function's docstring)
    bound: Callable[[Sequence[float], Sequence[np.ndarray], int], float]  # (tile values, K_i, n_x) -> bound


def _single(values: Sequence[float], _: Sequence[np.ndarray], __: int) -> float:
    return values[0]


RULES: dict[GroupRule, Rule] = {
    rule.name: rule
    for rule in (
        Rule(GroupRule.SINGLE, Solves.GROUP, "one block: its verified bound", _single),
        Rule(GroupRule.PAPER, Solves.TILES, "(a) L <= sqrt(sum_i L_i^2)", lambda v, _, __: combine_paper(v)),
        Rule(GroupRule.OVERLAP, Solves.TILES, "(b) L <= sqrt(max_k sum_{i: k in K_i} L_i^2)", combine_overlap),
        Rule(
            GroupRule.POU,
            Solves.WEIGHTED_TILES,
            "(c) L <= sqrt(max_i rho_i), tile i weighted by pi_i with sum_{i: k in K_i} pi_i(k) <= 1",
            lambda v, _, __: combine_pou([round_up(b * b) for b in v]),
        ),
        Rule(
            GroupRule.COUPLED,
            Solves.COUPLED,
            "(d) one SDP, one PSD constraint per tile; its stitched multipliers verified on the group's LMI",
            _single,
        ),
    )
}


def resolve_rule(combine: Combine, method: Method, tile_sizes: Sequence[int], max_block_size: int) -> GroupRule:
    """The rule a group's tiles actually combine by (`tile_sizes`: each tile's LMI side).

    auto couples a group's tiles when its one SDP costs at most COUPLED_BUDGET SCS iterations of
    blocks at the size budget (cubic in each PSD block's side), else overlap (independent,
    reusable tiles). coupled splits per-neuron multipliers, so LipSDP-Layer falls back to overlap.
    """
    if len(tile_sizes) == 1:
        return GroupRule.SINGLE
    combine = Combine(combine)
    if combine in (Combine.AUTO, Combine.GLOBAL):  # global stitches the groups' multipliers: couple where affordable
        cost = sum(float(n) ** 3 for n in tile_sizes)
        combine = Combine.COUPLED if cost <= COUPLED_BUDGET * float(max_block_size) ** 3 else Combine.OVERLAP
    if combine is Combine.COUPLED and Method(method) is not Method.NEURON:
        return GroupRule.OVERLAP
    return GroupRule(combine.value)
