"""Mode (d) of MATH.md §4: one SDP over all tiles, one small PSD constraint per tile.

Notation. z = (dx, dw) over the whole network; tile i owns the output rows Y_i (the
tiles partition y), its receptive cone N_i (neurons) and pixels K_i, so it lives on
the coordinates I_i = K_i u N_i of z. The full LipSDP matrix is

    M(rho, lam) = sum_r [C D]_r^T [C D]_r + sum_j lam_j S_j - rho Ex^T Ex.

Decomposition. Each tile i gets its own multipliers lam_ij >= 0 for j in N_i, input
weights d_i >= 0 on K_i, and, for every other tile i' it overlaps, a free symmetric
slack Z_ii' on I_i n I_i' (added to tile i, subtracted from tile i'). Its matrix is

    M_i = sum_{r in Y_i} [C D]_r^T [C D]_r + sum_{j in N_i} lam_ij S_j - diag(d_i) + slacks,

and the SDP asks M_i <= 0 for every i and sum_{i: k in K_i} d_i(k) <= rho for every k.

Soundness. Every term of M_i is supported on I_i: the output rows of Y_i read only
K_i and N_i (definition of the cone), and S_j reads only neuron j and what j reads,
which for j in N_i is in I_i (the cone is closed under B, its pixels are K_i).
Embedded into z, the slacks cancel pairwise, so with lam_j := sum_{i: j in N_i} lam_ij
(>= 0, a valid LipSDP multiplier) and D(k) := sum_{i: k in K_i} d_i(k) <= rho,

    sum_i M_i = M(0, lam) - diag(D)  and  M(rho, lam) = sum_i M_i - diag(rho - D) <= 0.

Hence ||dy||^2 <= rho ||dx||^2 and L <= sqrt(rho). "Each tile has its own multipliers"
and "split lam_j among the tiles containing it" are the same parametrisation: only the
sum enters M, and it is nonnegative because each part is. (A part could even be
negative, the difference being a slack, but the free slacks already span that.)

Verification: nothing the solver returns is trusted. Its multipliers (clipped at 0)
and slacks are taken as exact numbers; each tile's matrix is rebuilt in float64 with
an entrywise bound on its assembly rounding, its input weights are raised to the
smallest value a Schur complement estimates (d_i + s_i), and -M_i is proven PSD by
`certify_psd` with that rounding radius subtracted. rho is then max_k sum_i d_i(k),
summed with fsum and rounded up. Each tile is checked on its own, so a tile that
fails to verify names itself.

The same machinery solves one tile on its own with input term -rho diag(w): w = 1 is
plain LipSDP-Neuron (the paper's and the overlap combination, and the full network as
a single tile), w = pi_i is the partition-of-unity tile (mode (c)). Weights enter the
LMI directly rather than by rescaling the tile's input columns, which would round the
weights of the network the bound is about.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import cvxpy as cp
import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from lipcert.errors import SolverError
from lipcert.linalg import UNIT_ROUNDOFF, certify_psd, gamma, round_up
from lipcert.network.form import Network
from lipcert.partition.combine import combine_pou
from lipcert.partition.tiles import Tile, extract_tile

_SOLVED = ("optimal", "optimal_inaccurate")


@dataclass(frozen=True)
class SdpSettings:
    """SCS settings. Loose tolerances are safe (results are verified) but loosen the bound."""

    eps: float = 1e-6
    max_iters: int = 100_000
    slacks: bool = True  # coupled mode only: the pairwise overlap slacks
    retries: int = 2  # re-solves, each 10x tighter, when a neuron block fails verification
    verbose: bool = False


@dataclass(frozen=True)
class WeightedCertificate:
    """Verified: ||dy||^2 <= rho * sum_k weights_k dx_k^2 for the block."""

    rho: float
    bound: float  # sqrt(rho) rounded up: the Lipschitz bound when the weights are 1
    solver_rho: float  # SCS's objective, for diagnostics only (not a bound)
    status: str
    eps: float  # the SCS tolerance of the solve that verified
    solve_seconds: float
    verify_seconds: float


@dataclass(frozen=True)
class CoupledCertificate:
    """Verified: ||dy||^2 <= rho ||dx||^2 for the whole network, so L <= bound."""

    bound: float
    rho: float
    solver_rho: float
    input_weights: tuple[np.ndarray, ...]  # verified d_i, aligned with each tile's input_index
    multipliers: tuple[np.ndarray, ...]  # lam_i (clipped at 0), aligned with each tile's neuron_index
    raised_by: tuple[float, ...]  # how far verification raised each tile's d_i
    status: str
    eps: float
    n_variables: int
    solve_seconds: float
    verify_seconds: float


# --------------------------------------------------------------------------- LMI pieces


@dataclass(frozen=True)
class _Lmi:
    """One block's LMI data over its local z = (x, w) (inputs first)."""

    n_in: int
    n_w: int
    CD: sp.csr_matrix  # [C D]: the output term is CD^T CD
    AB: sp.csr_matrix  # [A B]: row j is the pre-activation map a_j
    c1: np.ndarray  # alpha_j beta_j
    c2: np.ndarray  # (alpha_j + beta_j) / 2

    @property
    def n(self) -> int:
        return self.n_in + self.n_w


def _lmi(net: Network) -> _Lmi:
    CD = sp.hstack([net.C, net.D], format="csr")
    AB = sp.hstack([net.A, net.B], format="csr")
    CD.eliminate_zeros()
    AB.eliminate_zeros()
    alpha, beta = net.alpha, net.beta
    return _Lmi(net.n_x, net.n_w, CD, AB, alpha * beta, (alpha + beta) / 2.0)


def _neuron_map(lmi: _Lmi) -> sp.csr_matrix:
    """vec_F(sum_j lam_j S_j) = map @ lam, where S_j = -c1 a^T a + c2 (a^T e + e^T a) - e^T e."""
    n, coo = lmi.n, lmi.AB.tocoo()
    j, p, a = coo.row, coo.col, coo.data
    wj = lmi.n_in + np.arange(lmi.n_w)
    rows = [p + (lmi.n_in + j) * n, (lmi.n_in + j) + p * n, wj + wj * n]
    vals = [lmi.c2[j] * a, lmi.c2[j] * a, -np.ones(lmi.n_w)]
    cols = [j, j, np.arange(lmi.n_w)]
    for k in np.flatnonzero(lmi.c1):
        row = lmi.AB.getrow(k)
        pp, qq = np.meshgrid(row.indices, row.indices, indexing="ij")
        rows.append((pp + qq * n).ravel())
        vals.append((-lmi.c1[k] * np.outer(row.data, row.data)).ravel())
        cols.append(np.full(pp.size, k))
    shape = (n * n, lmi.n_w)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def _diag_map(n: int, positions: np.ndarray) -> sp.csr_matrix:
    """vec_F(sum_k v_k e_{p_k} e_{p_k}^T) = map @ v."""
    k = np.arange(positions.size)
    return sp.csr_matrix((np.ones(k.size), (positions + positions * n, k)), shape=(n * n, k.size))


def _slack_map(n: int, loc: np.ndarray) -> sp.csr_matrix:
    """vec_F of the symmetric matrix with upper-triangle entries z placed at rows/cols loc."""
    a, b = np.triu_indices(loc.size)
    k = np.arange(a.size)
    rows = np.concatenate([loc[a] + loc[b] * n, (loc[b] + loc[a] * n)[a != b]])
    cols = np.concatenate([k, k[a != b]])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n * n, a.size))


def _symmetric(z: np.ndarray, size: int) -> np.ndarray:
    Z = np.zeros((size, size))
    a, b = np.triu_indices(size)
    Z[a, b] = z
    Z[b, a] = z
    return Z


# --------------------------------------------------------------------------- numeric assembly


@dataclass(frozen=True)
class _Slack:
    loc: np.ndarray  # local positions in the tile
    Z: np.ndarray  # symmetric values (the same floats go to both tiles of the pair)
    sign: float


def _assemble(lmi: _Lmi, lam: np.ndarray, slacks: Sequence[_Slack], absolute: bool = False) -> np.ndarray:
    """Dense sum_r CD_r^T CD_r + sum_j lam_j S_j + slacks (no input term), upper triangle mirrored.

    With absolute=True, every factor is replaced by its absolute value: the result
    bounds the entrywise rounding error of the plain assembly (times gamma_N).
    """
    f = np.abs if absolute else (lambda v: v)
    CD = abs(lmi.CD) if absolute else lmi.CD
    AB = abs(lmi.AB) if absolute else lmi.AB
    G = (CD.T @ CD).toarray()
    G += (AB.T @ sp.diags(f(-lam * lmi.c1)) @ AB).toarray()
    cross = (AB.T @ sp.diags(f(lam * lmi.c2))).toarray()
    G[:, lmi.n_in :] += cross
    G[lmi.n_in :, :] += cross.T
    w = np.arange(lmi.n_in, lmi.n)
    G[w, w] += np.abs(lam) if absolute else -lam
    for slack in slacks:
        G[np.ix_(slack.loc, slack.loc)] += f(slack.sign * slack.Z)
    upper = np.triu(G)
    return upper + np.triu(G, 1).T


def _assembly_terms(lmi: _Lmi, n_slacks: int) -> int:
    """N such that |fl(G) - G| <= gamma_N |G|_abs entrywise (products, then the few sums)."""
    return lmi.CD.shape[0] + lmi.n_w + n_slacks + 16


# --------------------------------------------------------------------------- verification


class _NotDefinite(Exception):
    """The neuron block of a tile's matrix is not proven negative definite."""


def _verify_block(lmi: _Lmi, lam: np.ndarray, slacks: Sequence[_Slack], d0: np.ndarray, w: np.ndarray) -> float:
    """Smallest certified s >= 0 with (exact) G - diag(d0 + s w) <= 0, G rebuilt from lam and slacks."""
    G = _assemble(lmi, lam, slacks)
    G_abs = _assemble(lmi, lam, slacks, absolute=True)
    g_radius = gamma(_assembly_terms(lmi, len(slacks))) * float(G_abs.sum(axis=1).max())
    s_est = _schur_shift(G, d0, w, lmi.n_in)
    scale = max(float(np.abs(np.diag(G)).max(initial=0.0)), float(np.max(d0, initial=0.0)), 1e-300)
    margin = 1e-12 * max(scale, s_est)
    for _ in range(40):
        s = s_est + margin
        if _certify_input_shift(G, g_radius, d0, s, w, lmi.n_in):
            return s
        margin *= 4.0
    raise _NotDefinite("no input weight makes the tile's matrix provably negative semidefinite")


def _schur_shift(G: np.ndarray, d0: np.ndarray, w: np.ndarray, n_in: int) -> float:
    """Float estimate of the smallest s >= 0 with G - diag(d0 + s w) <= 0 (Schur complement on R)."""
    P = G[:n_in, :n_in] - np.diag(d0)
    if G.shape[0] > n_in:
        try:
            L = la.cholesky(-G[n_in:, n_in:], lower=True)
        except la.LinAlgError as exc:
            raise _NotDefinite("the neuron block is not negative definite") from exc
        X = la.solve_triangular(L, G[n_in:, :n_in], lower=True)
        P = P + X.T @ X
    if n_in == 0:
        return 0.0
    scale = 1.0 / np.sqrt(w)
    top = float(la.eigvalsh(scale[:, None] * P * scale[None, :], subset_by_index=[n_in - 1, n_in - 1])[0])
    return max(top, 0.0)


def _certify_input_shift(G: np.ndarray, g_radius: float, d0: np.ndarray, s: float, w: np.ndarray, n_in: int) -> bool:
    """Prove diag(d0 + s w) - G_exact >= 0, where ||fl(G) - G_exact||_2 <= g_radius.

    H = fl(diag(d0 + s w) - G - e I) is certified PSD; e covers g_radius plus the
    rounding of forming H, so the exact matrix is >= H + (e - those errors) I >= 0.
    """
    d = d0 + s * w
    form_err = gamma(4) * (float(np.abs(G).sum(axis=1).max()) + float(np.max(np.abs(d), initial=0.0)))
    e = round_up(2.0 * (g_radius + form_err) + 4.0 * UNIT_ROUNDOFF * g_radius)
    H = -G
    idx = np.arange(n_in)
    H[idx, idx] += d
    H[np.diag_indices_from(H)] -= e
    return certify_psd(H)


def _up(values: np.ndarray) -> np.ndarray:
    return np.nextafter(values, np.inf)


# --------------------------------------------------------------------------- solving


def _solve(problem: cp.Problem, eps: float, settings: SdpSettings, warm: bool) -> tuple[str, float]:
    """Run SCS; warnings about inaccuracy are expected (we verify) and silenced here only."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem.solve(
            solver=cp.SCS,
            eps_abs=eps,
            eps_rel=eps,
            max_iters=settings.max_iters,
            verbose=settings.verbose,
            warm_start=warm,
        )
    if problem.status not in _SOLVED:
        raise SolverError(f"SCS ended with status {problem.status!r}; no multipliers to verify")
    return str(problem.status), time.perf_counter() - start


_Verified = TypeVar("_Verified")


@dataclass(frozen=True)
class _Run(Generic[_Verified]):
    value: _Verified
    status: str
    eps: float
    solve_seconds: float
    verify_seconds: float


def _solve_verified(problem: cp.Problem, settings: SdpSettings, verify: Callable[[], _Verified]) -> _Run[_Verified]:
    """Solve, then verify; when a neuron block fails, solve again 10x tighter from the last point.

    Verification inverts each neuron block, so it needs it negative definite. A loose
    answer can leave it barely indefinite (typical on deep, badly scaled blocks, where
    the multipliers span orders of magnitude); a tighter solve repairs that.
    """
    solve_seconds = verify_seconds = 0.0
    for attempt in range(settings.retries + 1):
        eps = settings.eps * 10.0**-attempt
        status, seconds = _solve(problem, eps, settings, warm=attempt > 0)
        solve_seconds += seconds
        start = time.perf_counter()
        try:
            value = verify()
        except _NotDefinite as exc:
            failure = exc
        else:
            return _Run(value, status, eps, solve_seconds, verify_seconds + time.perf_counter() - start)
        finally:
            verify_seconds += time.perf_counter() - start
    raise SolverError(f"not verified after {settings.retries + 1} solves down to eps={eps:g}: {failure}")


def _lmi_expression(lmi: _Lmi, terms: cp.Expression) -> cp.Expression:
    """The block's matrix as an n x n cvxpy expression from its vectorised affine terms."""
    return cp.reshape(terms, (lmi.n, lmi.n), order="F")


def _value(variable: cp.Variable) -> np.ndarray:
    """A variable's value as float64, clipped at 0 (the multipliers and weights must be >= 0)."""
    return np.maximum(np.asarray(variable.value, dtype=np.float64).ravel(), 0.0)


def weighted_lipsdp(
    net: Network, weights: np.ndarray | None = None, settings: SdpSettings | None = None
) -> WeightedCertificate:
    """LipSDP-Neuron of one block with input term -rho diag(weights) (default: all ones), verified.

    The block is first reduced to the cone of its outputs and the pixels that cone
    reads: exact (unread neurons and pixels change nothing) and it removes neurons whose
    zero rows would make the neuron block singular.
    """
    settings = settings or SdpSettings()
    w = np.ones(net.n_x) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (net.n_x,) or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be {net.n_x} positive finite numbers")
    core = extract_tile(net, np.arange(net.n_y))
    w = w[core.input_index]
    lmi = _lmi(core.net)
    lam, rho = cp.Variable(lmi.n_w, nonneg=True), cp.Variable(nonneg=True)
    output = (lmi.CD.T @ lmi.CD).toarray().ravel(order="F")
    terms = output + _neuron_map(lmi) @ lam - rho * (_diag_map(lmi.n, np.arange(lmi.n_in)) @ w)
    problem = cp.Problem(cp.Minimize(rho), [_lmi_expression(lmi, terms) << 0])
    zero = np.zeros(lmi.n_in)
    run = _solve_verified(problem, settings, lambda: _verify_block(lmi, _value(lam), (), zero, w))
    return WeightedCertificate(
        rho=run.value,
        bound=combine_pou([run.value]),
        solver_rho=float(rho.value),
        status=run.status,
        eps=run.eps,
        solve_seconds=run.solve_seconds,
        verify_seconds=run.verify_seconds,
    )


# --------------------------------------------------------------------------- coupled mode


@dataclass(frozen=True)
class _Pair:
    i: int
    j: int
    loc_i: np.ndarray
    loc_j: np.ndarray


def _global_index(tile: Tile, n_x: int) -> np.ndarray:
    """The tile's local z = (x_K, w_N) as indices into the network's z = (x, w); ascending."""
    return np.concatenate([tile.input_index, n_x + tile.neuron_index]).astype(np.int64)


def _overlapping_pairs(tiles: Sequence[Tile], n_x: int) -> list[_Pair]:
    """Pairs of tiles that share coordinates of z, minus the pairs a third tile makes redundant."""
    index = [_global_index(t, n_x) for t in tiles]
    pairs = []
    for i in range(len(tiles)):
        for j in range(i + 1, len(tiles)):
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


def coupled_lipsdp(net: Network, tiles: Sequence[Tile], settings: SdpSettings | None = None) -> CoupledCertificate:
    """One SDP with a PSD constraint per tile (mode (d)); verified in float64, see the module docstring."""
    settings = settings or SdpSettings()
    _check_partition(net, tiles)
    lmis = [_lmi(t.net) for t in tiles]
    pairs = _overlapping_pairs(tiles, net.n_x) if settings.slacks else []
    lams = [cp.Variable(m.n_w, nonneg=True) for m in lmis]
    ds = [cp.Variable(m.n_in, nonneg=True) for m in lmis]
    zs = [cp.Variable(p.loc_i.size * (p.loc_i.size + 1) // 2) for p in pairs]
    rho = cp.Variable(nonneg=True)
    constraints = [_tile_constraint(i, lmis[i], lams[i], ds[i], pairs, zs) for i in range(len(tiles))]
    constraints.append(_cover_sum(tiles, ds, net.n_x) <= rho)
    problem = cp.Problem(cp.Minimize(rho), constraints)
    run = _solve_verified(problem, settings, lambda: _verify_coupled(lmis, lams, ds, pairs, zs))
    d_verified, raised = run.value
    rho_verified = _max_cover_sum(tiles, d_verified)
    return CoupledCertificate(
        bound=combine_pou([rho_verified]),
        rho=rho_verified,
        solver_rho=float(rho.value),
        input_weights=tuple(d_verified),
        multipliers=tuple(_value(lam) for lam in lams),
        raised_by=tuple(raised),
        status=run.status,
        eps=run.eps,
        n_variables=int(sum(v.size for v in [*lams, *ds, *zs]) + 1),
        solve_seconds=run.solve_seconds,
        verify_seconds=run.verify_seconds,
    )


def _tile_constraint(
    i: int,
    lmi: _Lmi,
    lam: cp.Variable,
    d: cp.Variable,
    pairs: Sequence[_Pair],
    zs: Sequence[cp.Variable],
) -> cp.Constraint:
    output = (lmi.CD.T @ lmi.CD).toarray().ravel(order="F")
    terms = output + _neuron_map(lmi) @ lam - _diag_map(lmi.n, np.arange(lmi.n_in)) @ d
    for pair, z in zip(pairs, zs):
        if i in (pair.i, pair.j):
            loc, sign = (pair.loc_i, 1.0) if i == pair.i else (pair.loc_j, -1.0)
            terms = terms + sign * (_slack_map(lmi.n, loc) @ z)
    return _lmi_expression(lmi, terms) << 0


def _cover_sum(tiles: Sequence[Tile], ds: Sequence[cp.Variable], n_x: int) -> cp.Expression:
    """sum_{i: k in K_i} d_i(k), for the covered pixels k."""
    covered = np.unique(np.concatenate([t.input_index for t in tiles]))
    row_of = np.full(n_x, -1)
    row_of[covered] = np.arange(covered.size)
    total = 0
    for tile, d in zip(tiles, ds):
        k = tile.input_index
        P = sp.csr_matrix((np.ones(k.size), (row_of[k], np.arange(k.size))), shape=(covered.size, k.size))
        total = total + P @ d
    return total


def _verify_coupled(
    lmis: Sequence[_Lmi],
    lams: Sequence[cp.Variable],
    ds: Sequence[cp.Variable],
    pairs: Sequence[_Pair],
    zs: Sequence[cp.Variable],
) -> tuple[list[np.ndarray], list[float]]:
    """Per tile: rebuild M_i from the solver's values, raise d_i until -M_i is proven PSD."""
    z_mats = [_symmetric(np.asarray(z.value, dtype=np.float64), p.loc_i.size) for p, z in zip(pairs, zs)]
    verified, raised = [], []
    for i, lmi in enumerate(lmis):
        d0 = _value(ds[i])
        try:
            s = _verify_block(lmi, _value(lams[i]), _tile_slacks(i, pairs, z_mats), d0, np.ones(lmi.n_in))
        except _NotDefinite as exc:
            raise _NotDefinite(f"tile {i}: {exc}") from exc
        verified.append(_up(d0 + s))
        raised.append(s)
    return verified, raised


def _tile_slacks(i: int, pairs: Sequence[_Pair], z_mats: Sequence[np.ndarray]) -> list[_Slack]:
    out = []
    for pair, Z in zip(pairs, z_mats):
        if pair.i == i:
            out.append(_Slack(pair.loc_i, Z, 1.0))
        elif pair.j == i:
            out.append(_Slack(pair.loc_j, Z, -1.0))
    return out


def _max_cover_sum(tiles: Sequence[Tile], d: Sequence[np.ndarray]) -> float:
    """max_k sum_{i: k in K_i} d_i(k), each pixel's sum by fsum rounded up (exact upper bound)."""
    per_pixel: dict[int, list[float]] = {}
    for tile, weights in zip(tiles, d):
        for k, value in zip(tile.input_index.tolist(), weights.tolist()):
            per_pixel.setdefault(k, []).append(value)
    return max((round_up(math.fsum(v)) for v in per_pixel.values()), default=0.0)
