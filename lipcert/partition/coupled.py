"""Mode (d) of MATH.md §4, in width and in depth: one SDP, one small PSD constraint per tile.

Notation. z = (dx, dw) over the whole network. The network is a chain of depth groups
(stages); stage g's tiles partition its output, and tile i lives on the coordinates I_i
of z: its input pixels K_i (a pixel of x in stage 0, else an activation of the previous
stage's last layer) and its receptive cone N_i. The full LipSDP matrix is

    M(rho, lam) = sum_r [C D]_r^T [C D]_r + sum_j lam_j S_j - rho Ex^T Ex.

Decomposition. Each tile i gets its own multipliers lam_ij >= 0 for j in N_i and, for
every other tile i' it shares coordinates with (in its own stage or the next one), a
free symmetric slack Z_ii' on I_i n I_i' (added to tile i, subtracted from tile i').
Tiles of the last stage carry the output rows they own; tiles of stage 0 get input
weights d_i >= 0 on K_i. Its matrix is

    M_i = [sum_{r in Y_i} [C D]_r^T [C D]_r] + sum_{j in N_i} lam_ij S_j - [diag(d_i)] + slacks,

and the SDP asks M_i <= 0 for every i and sum_{i: k in K_i} d_i(k) <= rho for every k.
With one stage this is the coupled combination of one group's tiles; with several it
couples the groups too: where the product of group bounds puts a scalar rho_g I at
every cut, the slacks here put a free symmetric matrix on each tile's share of it,
which is how the full LMI splits over its depth-banded cliques.

Soundness. Every term of M_i is supported on I_i: the output rows of Y_i read only K_i
and N_i (definition of the cone), and S_j reads only neuron j and what j reads, which
for j in N_i is in I_i (the cone is closed under B, its inputs are K_i). Embedded into
z, the slacks cancel pairwise, so with lam_j := sum_{i: j in N_i} lam_ij (>= 0, a valid
LipSDP multiplier) and D(k) := sum_{i: k in K_i} d_i(k) <= rho,

    sum_i M_i = M(0, lam) - diag(D)  and  M(rho, lam) = sum_i M_i - diag(rho - D) <= 0.

Hence ||dy||^2 <= rho ||dx||^2 and L <= sqrt(rho).

Verification (see tile_lmi): nothing the solver returns is trusted. Tiles are checked
from the last stage back to the first. A tile of a later stage has no input weights to
raise, so it is proven to satisfy M_i - s_i I_{K_i} <= 0 for the smallest certified
s_i >= 0, and s_i is handed down: the previous stage's tile that owns activation k
(its output, so it is in that tile's cone) gets + sum_i s_i (rounded up) on k's
diagonal before it is verified itself. The shifts cancel in the sum up to a PSD
remainder, so the argument above holds unchanged. In stage 0 the input weights are
raised as for a single tile, and rho is max_k sum_i d_i(k), summed with fsum and
rounded up. A tile that fails to verify names itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from lipcert.linalg import round_up
from lipcert.network.form import Network
from lipcert.partition.combine import combine_pou
from lipcert.partition.tile_lmi import (
    NotDefinite,
    SdpSettings,
    Slack,
    TileLmi,
    WeightedCertificate,
    clipped_value,
    diag_map,
    lmi_expression,
    neuron_map,
    round_up_each,
    slack_map,
    solve_verified,
    symmetric_from_triangle,
    tile_lmi,
    verify_block,
    weighted_lipsdp,
)
from lipcert.partition.tiles import Tile

__all__ = [
    "CoupledCertificate",
    "SdpSettings",
    "Stage",
    "WeightedCertificate",
    "chain_lipsdp",
    "coupled_lipsdp",
    "weighted_lipsdp",
]


@dataclass(frozen=True)
class Stage:
    """One depth group of a coupled chain: its tiles and where its coordinates sit in z.

    x_global[k] is the z index of the group's input k (a pixel of x for the first group,
    n_x + the neuron index of the previous group's activation otherwise), w_global[j]
    the z index of its neuron j.
    """

    tiles: tuple[Tile, ...]
    x_global: np.ndarray
    w_global: np.ndarray


@dataclass(frozen=True)
class CoupledCertificate:
    """Verified: ||dy||^2 <= rho ||dx||^2 for the whole network, so L <= bound."""

    bound: float
    rho: float
    solver_rho: float
    input_weights: tuple[np.ndarray, ...]  # verified d_i of stage 0, aligned with each tile's input_index
    multipliers: tuple[np.ndarray, ...]  # lam_i (clipped at 0) of every tile, stage by stage
    raised_by: tuple[float, ...]  # how far verification raised each tile's input term
    status: str
    eps: float
    n_variables: int
    solve_seconds: float
    verify_seconds: float


@dataclass(frozen=True)
class _Clique:
    stage: int
    lmi: TileLmi
    index: np.ndarray  # z index of each local coordinate (inputs first, then neurons); ascending in each part


@dataclass(frozen=True)
class _Pair:
    i: int
    j: int
    loc_i: np.ndarray
    loc_j: np.ndarray


@dataclass(frozen=True)
class Scaling:
    """The congruence the SDP is solved in: z = diag(sigma) z' and outputs times c (lipsdp.balance).

    It leaves the SDP's value unchanged but gives SCS entries of similar size (it cannot
    rescale inside a PSD cone), so it converges in far fewer iterations. Only the solve
    is scaled: the solution is mapped back and verified on the original tiles.
    """

    sigma: np.ndarray  # per coordinate of z: 1 on pixels, the balancing scale of each neuron
    c: float

    @staticmethod
    def of(net: Network) -> Scaling:
        from lipcert.sdp.lipsdp import balance, linear_lower_estimate

        balanced, d, c = balance(net)
        lower = linear_lower_estimate(balanced)
        return Scaling(np.concatenate([np.ones(net.n_x), d]), c / lower if lower > 0 else c)


def coupled_lipsdp(net: Network, tiles: Sequence[Tile], settings: SdpSettings | None = None) -> CoupledCertificate:
    """One group's tiles in one SDP (mode (d)); verified in float64, see the module docstring."""
    _check_partition(net, tiles)
    stage = Stage(tuple(tiles), np.arange(net.n_x), net.n_x + np.arange(net.n_w))
    return chain_lipsdp([stage], settings, Scaling.of(net))


def chain_lipsdp(
    stages: Sequence[Stage], settings: SdpSettings | None = None, scaling: Scaling | None = None
) -> CoupledCertificate:
    """Every tile of every depth group in one SDP; verified in float64, see the module docstring."""
    settings = settings or SdpSettings()
    cliques = _cliques(stages)
    sigmas = [np.ones(c.index.size) if scaling is None else scaling.sigma[c.index] for c in cliques]
    c2 = 1.0 if scaling is None else scaling.c**2
    pairs = _overlapping_pairs([c.index for c in cliques]) if settings.slacks else []
    lams = [cp.Variable(c.lmi.n_w, nonneg=True) if c.lmi.n_w else None for c in cliques]
    first = stages[0].tiles
    ds = [cp.Variable(c.lmi.n_in, nonneg=True) for c in cliques[: len(first)]]
    zs = [cp.Variable(p.loc_i.size * (p.loc_i.size + 1) // 2) for p in pairs]
    rho = cp.Variable(nonneg=True)
    scaled = [_scaled_lmi(c.lmi, sigma, c2) for c, sigma in zip(cliques, sigmas)]
    constraints = [_tile_constraint(i, lmi, lams[i], ds, pairs, zs) for i, lmi in enumerate(scaled)]
    constraints.append(_cover_sum(first, ds) <= rho)
    problem = cp.Problem(cp.Minimize(rho), constraints)
    values = _Unscaled(cliques, sigmas, c2, lams, ds, pairs, zs)
    run = solve_verified(problem, settings, lambda: _verify_chain(cliques, values, pairs))
    d_verified, raised = run.value
    rho_verified = _max_cover_sum(first, d_verified)
    variables = [v for v in [*lams, *ds, *zs] if v is not None]
    return CoupledCertificate(
        bound=combine_pou([rho_verified]),
        rho=rho_verified,
        solver_rho=float(rho.value) / c2,
        input_weights=tuple(d_verified),
        multipliers=tuple(values.lam(i) for i in range(len(cliques))),
        raised_by=tuple(raised),
        status=run.status,
        eps=run.eps,
        n_variables=int(sum(v.size for v in variables) + 1),
        solve_seconds=run.solve_seconds,
        verify_seconds=run.verify_seconds,
    )


def clique_sizes(stages: Sequence[Stage]) -> list[int]:
    """The side of every tile's PSD constraint in chain_lipsdp (no input compression there)."""
    return [t.net.n_x + t.net.n_w for stage in stages for t in stage.tiles]


def _cliques(stages: Sequence[Stage]) -> list[_Clique]:
    if not stages or any(not s.tiles for s in stages):
        raise ValueError("a coupled chain needs at least one stage, and every stage at least one tile")
    last = len(stages) - 1
    for g in range(1, len(stages)):
        if not np.isin(stages[g].x_global, stages[g - 1].w_global).all():
            raise ValueError(
                f"stage {g} reads coordinates that are not neurons of stage {g - 1}: the stages do not chain"
            )
    cliques = []
    for g, stage in enumerate(stages):
        for tile in stage.tiles:
            index = np.concatenate([stage.x_global[tile.input_index], stage.w_global[tile.neuron_index]])
            cliques.append(_Clique(g, tile_lmi(tile.net, with_output=g == last), index.astype(np.int64)))
    return cliques


def _scaled_lmi(lmi: TileLmi, sigma: np.ndarray, c2: float) -> TileLmi:
    """The tile's LMI in the solver's coordinates: c^2 S M S with S = diag(sigma)."""
    S = sp.diags(sigma)
    AB = sp.diags(1.0 / sigma[lmi.n_in :]) @ lmi.AB @ S
    return replace(lmi, CD=(np.sqrt(c2) * lmi.CD @ S).tocsr(), AB=sp.csr_matrix(AB))


@dataclass(frozen=True)
class _Unscaled:
    """The solver's values mapped back to the original coordinates (any floats: verification decides)."""

    cliques: Sequence[_Clique]
    sigmas: Sequence[np.ndarray]
    c2: float
    lams: Sequence[cp.Variable | None]
    ds: Sequence[cp.Variable]
    pairs: Sequence[_Pair]
    zs: Sequence[cp.Variable]

    def lam(self, i: int) -> np.ndarray:
        """lam_j = lam'_j / (c^2 sigma_j^2), clipped at 0."""
        if self.lams[i] is None:
            return np.zeros(0)
        sigma_w = self.sigmas[i][self.cliques[i].lmi.n_in :]
        return clipped_value(self.lams[i]) / (self.c2 * sigma_w * sigma_w)

    def d(self, i: int) -> np.ndarray:
        return clipped_value(self.ds[i]) / (self.c2 * self.sigmas[i][: self.cliques[i].lmi.n_in] ** 2)

    def slack_matrices(self) -> list[np.ndarray]:
        """Z = S^-1 Z' S^-1 / c^2 on each pair's shared coordinates."""
        out = []
        for pair, z in zip(self.pairs, self.zs):
            sigma = self.sigmas[pair.i][pair.loc_i]
            Z = symmetric_from_triangle(np.asarray(z.value, dtype=np.float64), pair.loc_i.size)
            out.append(Z / (self.c2 * np.outer(sigma, sigma)))
        return out


# --------------------------------------------------------------------------- slack pairs


def _overlapping_pairs(index: Sequence[np.ndarray]) -> list[_Pair]:
    """Pairs of tiles that share coordinates of z, minus the pairs a third tile makes redundant."""
    pairs = []
    for i in range(len(index)):
        for j in range(i + 1, len(index)):
            _, loc_i, loc_j = np.intersect1d(index[i], index[j], assume_unique=True, return_indices=True)
            if loc_i.size:
                pairs.append(_Pair(i, j, loc_i, loc_j))
    return _prune_pairs(pairs, index)


def _prune_pairs(pairs: list[_Pair], index: Sequence[np.ndarray]) -> list[_Pair]:
    """Drop a pair (i, j) whose shared set S lies inside a third tile k still paired with both.

    No generality is lost: a slack on S x S between i and j equals a slack from i to k
    plus one from k to j (S is inside both shared sets). For every entry (p, q), the
    kept pairs among the tiles containing p and q stay connected, because each removed
    edge is replaced by a path through such tiles, so every zero-sum redistribution of
    that entry is still reachable.
    """
    kept = {(p.i, p.j): p for p in pairs}
    neighbours: dict[int, set[int]] = {}
    for p in pairs:
        neighbours.setdefault(p.i, set()).add(p.j)
        neighbours.setdefault(p.j, set()).add(p.i)
    for pair in sorted(pairs, key=lambda p: p.loc_i.size):
        shared = index[pair.i][pair.loc_i]
        for k in sorted(neighbours[pair.i] & neighbours[pair.j]):
            if np.isin(shared, index[k], assume_unique=True).all():
                del kept[(pair.i, pair.j)]
                neighbours[pair.i].discard(pair.j)
                neighbours[pair.j].discard(pair.i)
                break
    return list(kept.values())


def _check_partition(net: Network, tiles: Sequence[Tile]) -> None:
    rows = np.sort(np.concatenate([t.output_index for t in tiles])) if tiles else np.zeros(0)
    if rows.size != net.n_y or np.any(rows != np.arange(net.n_y)):
        raise ValueError("the tiles' output rows must partition the network's outputs (each row exactly once)")


# --------------------------------------------------------------------------- the SDP


def _tile_constraint(
    i: int,
    lmi: TileLmi,
    lam: cp.Variable | None,
    ds: Sequence[cp.Variable],
    pairs: Sequence[_Pair],
    zs: Sequence[cp.Variable],
) -> cp.Constraint:
    terms: cp.Expression | np.ndarray = (lmi.CD.T @ lmi.CD).toarray().ravel(order="F")
    if lam is not None:
        terms = terms + neuron_map(lmi) @ lam
    if i < len(ds):  # a stage-0 tile: its inputs are pixels of x
        terms = terms - diag_map(lmi.n, np.arange(lmi.n_in)) @ ds[i]
    for pair, z in zip(pairs, zs):
        if i in (pair.i, pair.j):
            loc, sign = (pair.loc_i, 1.0) if i == pair.i else (pair.loc_j, -1.0)
            terms = terms + sign * (slack_map(lmi.n, loc) @ z)
    return lmi_expression(lmi, terms) << 0


def _cover_sum(tiles: Sequence[Tile], ds: Sequence[cp.Variable]) -> cp.Expression:
    """sum_{i: k in K_i} d_i(k), for the covered pixels k."""
    covered = np.unique(np.concatenate([t.input_index for t in tiles]))
    row_of = {int(k): r for r, k in enumerate(covered)}
    total = 0
    for tile, d in zip(tiles, ds):
        rows = np.array([row_of[int(k)] for k in tile.input_index], dtype=np.int64)
        P = sp.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))), shape=(covered.size, rows.size))
        total = total + P @ d
    return total


# --------------------------------------------------------------------------- verification


def _verify_chain(
    cliques: Sequence[_Clique], values: _Unscaled, pairs: Sequence[_Pair]
) -> tuple[list[np.ndarray], list[float]]:
    """Last stage first: rebuild each M_i, hand later stages' shifts down, raise stage 0's d_i."""
    z_mats = values.slack_matrices()
    pending: dict[int, list[float]] = {}  # z index -> shifts handed down to it, not yet absorbed
    n_first = len(values.ds)
    verified: list[np.ndarray] = [np.zeros(0)] * n_first
    raised = [0.0] * len(cliques)
    for i in sorted(range(len(cliques)), key=lambda i: -cliques[i].stage):
        clique = cliques[i]
        slacks = _tile_slacks(i, pairs, z_mats) + _absorbed_shifts(clique, pending)
        stage0 = i < n_first
        d0 = values.d(i) if stage0 else np.zeros(clique.lmi.n_in)
        try:
            s = verify_block(clique.lmi, values.lam(i), slacks, d0, np.ones(clique.lmi.n_in))
        except NotDefinite as exc:
            raise NotDefinite(f"tile {i} (stage {clique.stage}): {exc}") from exc
        raised[i] = s
        if stage0:
            verified[i] = round_up_each(d0 + s)
        else:
            for k in clique.index[: clique.lmi.n_in].tolist():
                pending.setdefault(k, []).append(s)
    if pending:
        raise ValueError(f"{len(pending)} shifted coordinates belong to no earlier tile: the stages do not chain")
    return verified, raised


def _absorbed_shifts(clique: _Clique, pending: dict[int, list[float]]) -> list[Slack]:
    """The later stages' shifts on this tile's neurons, as one diagonal term (each sum rounded up)."""
    n_in = clique.lmi.n_in
    loc = [n_in + p for p, k in enumerate(clique.index[n_in:].tolist()) if k in pending]
    if not loc:
        return []
    values = [round_up(math.fsum(pending.pop(int(clique.index[p])))) for p in loc]
    return [Slack(np.asarray(loc, dtype=np.int64), np.diag(values), 1.0)]


def _tile_slacks(i: int, pairs: Sequence[_Pair], z_mats: Sequence[np.ndarray]) -> list[Slack]:
    out = []
    for pair, Z in zip(pairs, z_mats):
        if pair.i == i:
            out.append(Slack(pair.loc_i, Z, 1.0))
        elif pair.j == i:
            out.append(Slack(pair.loc_j, Z, -1.0))
    return out


def _max_cover_sum(tiles: Sequence[Tile], d: Sequence[np.ndarray]) -> float:
    """max_k sum_{i: k in K_i} d_i(k), each pixel's sum by fsum rounded up (exact upper bound)."""
    per_pixel: dict[int, list[float]] = {}
    for tile, weights in zip(tiles, d):
        for k, value in zip(tile.input_index.tolist(), weights.tolist()):
            per_pixel.setdefault(k, []).append(value)
    return max((round_up(math.fsum(v)) for v in per_pixel.values()), default=0.0)
