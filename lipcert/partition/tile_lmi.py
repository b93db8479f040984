"""One block's LipSDP matrix over its local z = (x, w), its float64 verification, and the SCS loop.

These pieces serve every mode that builds its own LMIs from tiles (lipcert.partition.coupled):
the matrix of one tile as affine maps of its multipliers for cvxpy, its dense float64
assembly with an entrywise rounding bound, and the verification that proves a shifted
tile matrix negative semidefinite (MATH.md §3).

Verification: nothing the solver returns is trusted. Its multipliers (clipped at 0) and
slacks are taken as exact numbers; the block's matrix is rebuilt in float64 with an
entrywise bound on its assembly rounding, its input weights are raised to the smallest
value a Schur complement estimates (d + s w), and the negated matrix is proven PSD by
`certify_psd` with that rounding radius subtracted.

weighted_lipsdp solves one block on its own with input term -rho diag(w): w = 1 is plain
LipSDP-Neuron (the paper's and the overlap combination, and the full network as a single
tile), w = pi_i is the partition-of-unity tile (mode (c)). Weights enter the LMI directly
rather than by rescaling the block's input columns, which would round the weights of the
network the bound is about.
"""

from __future__ import annotations

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
from lipcert.partition.tiles import extract_tile

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


# --------------------------------------------------------------------------- LMI pieces


@dataclass(frozen=True)
class TileLmi:
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


def tile_lmi(net: Network, with_output: bool = True) -> TileLmi:
    """The block's LMI data; without its output term when its output feeds a later depth group."""
    CD = sp.hstack([net.C, net.D], format="csr")
    if not with_output:
        CD = sp.csr_matrix((0, net.n_x + net.n_w))
    AB = sp.hstack([net.A, net.B], format="csr")
    CD.eliminate_zeros()
    AB.eliminate_zeros()
    alpha, beta = net.alpha, net.beta
    return TileLmi(net.n_x, net.n_w, CD, AB, alpha * beta, (alpha + beta) / 2.0)


def neuron_map(lmi: TileLmi) -> sp.csr_matrix:
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


def diag_map(n: int, positions: np.ndarray) -> sp.csr_matrix:
    """vec_F(sum_k v_k e_{p_k} e_{p_k}^T) = map @ v."""
    k = np.arange(positions.size)
    return sp.csr_matrix((np.ones(k.size), (positions + positions * n, k)), shape=(n * n, k.size))


def slack_map(n: int, loc: np.ndarray) -> sp.csr_matrix:
    """vec_F of the symmetric matrix with upper-triangle entries z placed at rows/cols loc."""
    a, b = np.triu_indices(loc.size)
    k = np.arange(a.size)
    rows = np.concatenate([loc[a] + loc[b] * n, (loc[b] + loc[a] * n)[a != b]])
    cols = np.concatenate([k, k[a != b]])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n * n, a.size))


def symmetric_from_triangle(z: np.ndarray, size: int) -> np.ndarray:
    Z = np.zeros((size, size))
    a, b = np.triu_indices(size)
    Z[a, b] = z
    Z[b, a] = z
    return Z


# --------------------------------------------------------------------------- numeric assembly


@dataclass(frozen=True)
class Slack:
    loc: np.ndarray  # local positions in the tile
    Z: np.ndarray  # symmetric values (the same floats go to both tiles of the pair)
    sign: float


def assemble(lmi: TileLmi, lam: np.ndarray, slacks: Sequence[Slack], absolute: bool = False) -> np.ndarray:
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


def _assembly_terms(lmi: TileLmi, n_slacks: int) -> int:
    """N such that |fl(G) - G| <= gamma_N |G|_abs entrywise (products, then the few sums)."""
    return lmi.CD.shape[0] + lmi.n_w + n_slacks + 16


# --------------------------------------------------------------------------- verification


class NotDefinite(Exception):
    """The neuron block of a tile's matrix is not proven negative definite."""


def verify_block(lmi: TileLmi, lam: np.ndarray, slacks: Sequence[Slack], d0: np.ndarray, w: np.ndarray) -> float:
    """Smallest certified s >= 0 with (exact) G - diag(d0 + s w) <= 0, G rebuilt from lam and slacks."""
    G = assemble(lmi, lam, slacks)
    G_abs = assemble(lmi, lam, slacks, absolute=True)
    g_radius = gamma(_assembly_terms(lmi, len(slacks))) * float(G_abs.sum(axis=1).max())
    s_est = _schur_shift(G, d0, w, lmi.n_in)
    scale = max(float(np.abs(np.diag(G)).max(initial=0.0)), float(np.max(d0, initial=0.0)), 1e-300)
    margin = 1e-12 * max(scale, s_est)
    for _ in range(40):
        s = s_est + margin
        if _certify_input_shift(G, g_radius, d0, s, w, lmi.n_in):
            return s
        margin *= 4.0
    raise NotDefinite("no input weight makes the tile's matrix provably negative semidefinite")


def _schur_shift(G: np.ndarray, d0: np.ndarray, w: np.ndarray, n_in: int) -> float:
    """Float estimate of the smallest s >= 0 with G - diag(d0 + s w) <= 0 (Schur complement on R)."""
    P = G[:n_in, :n_in] - np.diag(d0)
    if G.shape[0] > n_in:
        try:
            L = la.cholesky(-G[n_in:, n_in:], lower=True)
        except la.LinAlgError as exc:
            raise NotDefinite("the neuron block is not negative definite") from exc
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


def round_up_each(values: np.ndarray) -> np.ndarray:
    """The next float up, entrywise: a strict upper bound for each value."""
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
class Run(Generic[_Verified]):
    value: _Verified
    status: str
    eps: float
    solve_seconds: float
    verify_seconds: float


def solve_verified(problem: cp.Problem, settings: SdpSettings, verify: Callable[[], _Verified]) -> Run[_Verified]:
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
        except NotDefinite as exc:
            failure = exc
        else:
            return Run(value, status, eps, solve_seconds, verify_seconds + time.perf_counter() - start)
        finally:
            verify_seconds += time.perf_counter() - start
    raise SolverError(f"not verified after {settings.retries + 1} solves down to eps={eps:g}: {failure}")


def lmi_expression(lmi: TileLmi, terms: cp.Expression) -> cp.Expression:
    """The block's matrix as an n x n cvxpy expression from its vectorised affine terms."""
    return cp.reshape(terms, (lmi.n, lmi.n), order="F")


def clipped_value(variable: cp.Variable) -> np.ndarray:
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
    lmi = tile_lmi(core.net)
    lam, rho = cp.Variable(lmi.n_w, nonneg=True), cp.Variable(nonneg=True)
    output = (lmi.CD.T @ lmi.CD).toarray().ravel(order="F")
    terms = output + neuron_map(lmi) @ lam - rho * (diag_map(lmi.n, np.arange(lmi.n_in)) @ w)
    problem = cp.Problem(cp.Minimize(rho), [lmi_expression(lmi, terms) << 0])
    zero = np.zeros(lmi.n_in)
    run = solve_verified(problem, settings, lambda: verify_block(lmi, clipped_value(lam), (), zero, w))
    return WeightedCertificate(
        rho=run.value,
        bound=combine_pou([run.value]),
        solver_rho=float(rho.value),
        status=run.status,
        eps=run.eps,
        solve_seconds=run.solve_seconds,
        verify_seconds=run.verify_seconds,
    )
