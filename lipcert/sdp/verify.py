"""Turn a solver's multipliers into a proven bound, in float64 (MATH.md §3).

For fixed λ ≥ 0 the LMI is L(λ, ρ) = [[P − ρ Π, Q], [Qᵀ, R]] with the inputs first
(Π = diag(π), the identity unless input weights are given). If R ≺ 0 the smallest
feasible ρ is ρ* = λ_max(Π^{-1/2} (P − Q R⁻¹ Qᵀ) Π^{-1/2}) (Schur complement). ρ* is
only an estimate; the bound comes from a Cholesky proof that −L(λ, ρ̂) ⪰ 0 for a
slightly larger ρ̂, on the full matrix in the original coordinates, with a margin that
covers the rounding made in forming that matrix.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from lipcert.defaults import SINGLE_THREAD_BELOW
from lipcert.linalg import certify_psd, gamma, largest_eigenvalue_estimate, round_up
from lipcert.network.form import Network
from lipcert.sdp.lipsdp import lmi_matrix, stacked_maps

REL_MARGIN = 1e-9  # ρ̂ = ρ*(1 + REL_MARGIN) + absolute margin, before any increase
PROOF_ATTEMPTS = 8  # the margin grows ×10 per failed proof
# (factor on λ, addition as a fraction of mean λ): tried in order when R is not ≺ 0
REPAIRS = ((1.0 + 1e-6, 0.0), (1.0, 1e-6), (1.0 + 1e-3, 1e-4), (1.01, 1e-2), (1.1, 1e-1))


@dataclass(frozen=True)
class Verification:
    certified: bool
    rho: float  # proven: −L(λ, rho) ⪰ 0 (inf when not certified)
    bound: float  # round_up(sqrt(rho)): the certified Lipschitz bound (inf when not certified)
    how: str  # "verified", "repaired: <what>", or "not certified: <why>"
    rho_estimate: float  # ρ* from the Schur complement: an estimate, not a bound
    multipliers: np.ndarray | None  # the per-neuron λ actually certified
    schur_seconds: float
    proof_seconds: float
    polish_seconds: float = 0.0  # set by the caller that polished the multipliers first

    @property
    def seconds(self) -> float:
        return self.schur_seconds + self.proof_seconds + self.polish_seconds


class NotCertified(Exception):
    pass


@contextlib.contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """One BLAS thread for small dense work.

    Measured here: with the 2 cores shared (other processes, parallel blocks), a
    multi-threaded OpenBLAS Cholesky of side 200–800 took 0.1–1 s instead of ~10 ms,
    waiting for a second core; single-threaded it does not wait.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it, BLAS keeps its default threads
        yield
        return
    if n >= SINGLE_THREAD_BELOW:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def verify_multipliers(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> Verification:
    """The smallest ρ proven for these per-neuron multipliers, repairing them if needed."""
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.shape != (net.n_w,):
        return _failed(f"not certified: expected {net.n_w} multipliers, got {lam.size}")
    if not np.all(np.isfinite(lam)):
        return _failed("not certified: non-finite multipliers")
    lam = np.maximum(lam, 0.0)
    with _blas_threads(net.lmi_size):
        return _verify(net, lam, input_weights)


def _verify(net: Network, lam: np.ndarray, input_weights: np.ndarray | None) -> Verification:
    result = _attempt(net, lam, input_weights, "verified")
    if result.certified:
        return result
    scale = float(lam.mean()) if lam.size and lam.mean() > 0 else 1.0
    for factor, shift in REPAIRS:
        repaired = lam * factor + shift * scale
        how = f"repaired: λ×{factor:g} + {shift:g}·mean(λ)"
        attempt = _attempt(net, repaired, input_weights, how)
        if attempt.certified:
            return attempt
    return _failed(f"not certified: {result.how.removeprefix('not certified: ')}; repairs failed")


def _failed(how: str, rho_estimate: float = float("nan")) -> Verification:
    return Verification(False, float("inf"), float("inf"), how, rho_estimate, None, 0.0, 0.0)


def _attempt(net: Network, lam: np.ndarray, input_weights: np.ndarray | None, how: str) -> Verification:
    start = time.perf_counter()
    try:
        rho_star = schur_rho(net, lam, input_weights)
    except NotCertified as exc:
        return _failed(f"not certified: {exc}")
    mid = time.perf_counter()
    rho = prove_rho(net, lam, rho_star, input_weights)
    end = time.perf_counter()
    if rho is None:
        return _failed("not certified: Cholesky proof failed", rho_star)
    bound = round_up(float(np.sqrt(rho)))
    return Verification(True, rho, bound, how, rho_star, lam, mid - start, end - mid)


def _input_weights(net: Network, input_weights: np.ndarray | None) -> np.ndarray:
    return np.ones(net.n_x) if input_weights is None else np.asarray(input_weights, dtype=np.float64)


def _schur_parts(
    net: Network, lam: np.ndarray, input_weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, chol, Y): S = Π^{-1/2}(P − Q R⁻¹ Qᵀ)Π^{-1/2}, −R = chol cholᵀ, Y = chol⁻¹ Qᵀ."""
    H = lmi_matrix(net, lam, 0.0).toarray()
    n_x = net.n_x
    P, Q, R = H[:n_x, :n_x], H[:n_x, n_x:], H[n_x:, n_x:]
    if not np.all(np.isfinite(H)):
        raise NotCertified("non-finite LMI entries")
    try:
        chol = la.cholesky(-R, lower=True, check_finite=False)
    except la.LinAlgError as exc:
        raise NotCertified("R (the activation block) is not negative definite") from exc
    Y = la.solve_triangular(chol, Q.T, lower=True, check_finite=False)  # −Q R⁻¹ Qᵀ = YᵀY
    root = 1.0 / np.sqrt(_input_weights(net, input_weights))
    S = root[:, None] * (P + Y.T @ Y) * root[None, :]
    S = 0.5 * (S + S.T)
    if not np.all(np.isfinite(S)):
        raise NotCertified("non-finite Schur complement (R nearly singular)")
    return S, chol, Y


def schur_rho(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> float:
    """ρ* = λ_max(Π^{-1/2}(P − Q R⁻¹ Qᵀ)Π^{-1/2}), or NotCertified if R is not ≺ 0.

    Float64 estimate only: prove_rho certifies a value above it.
    """
    if net.n_x == 0:
        return 0.0
    S, _, _ = _schur_parts(net, lam, input_weights)
    return max(largest_eigenvalue_estimate(S), 0.0)


def schur_rho_and_gradient(net: Network, lam: np.ndarray) -> tuple[float, np.ndarray]:
    """ρ*(λ) and a subgradient in λ (per neuron); inf and None-like zeros if R is not ≺ 0.

    ρ*(λ) = max over unit u and all w of zᵀ L(λ, 0) z with z = (u, w), attained at the
    top eigenvector u of S and w = −R⁻¹Qᵀu; L is linear in λ, so (Danskin) the
    derivative in λ_j is zᵀ S_j z = (w_j − α_j v_j)(β_j v_j − w_j) with v = M z.
    """
    try:
        S, chol, Y = _schur_parts(net, lam, None)
    except NotCertified:
        return float("inf"), np.zeros_like(lam)
    n_x = net.n_x
    value, vec = la.eigh(S, subset_by_index=[n_x - 1, n_x - 1])
    u = vec[:, 0]
    w = la.solve_triangular(chol.T, Y @ u, lower=False, check_finite=False)
    M, _ = stacked_maps(net)
    v = M @ np.concatenate([u, w])
    return float(value[0]), (w - net.alpha * v) * (net.beta * v - w)


def polish_multipliers(net: Network, lam: np.ndarray, groups: np.ndarray, steps: int = 10) -> np.ndarray:
    """Improve the solver's multipliers by projected gradient descent on the convex ρ*(λ).

    First-order solvers leave R nearly singular, where ρ*(λ) is steep: a few descent
    steps from there recover most of the gap between the verified and the optimal ρ,
    at the cost of a few Schur complements. λ has one entry per group (neuron or layer);
    the result is an estimate like its input, and must still be verified.
    """
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    with _blas_threads(net.lmi_size):
        return _descend(net, lam, groups, steps)


def _descend(net: Network, lam: np.ndarray, groups: np.ndarray, steps: int) -> np.ndarray:
    rho, grad = _group_gradient(net, lam, groups)
    if not np.isfinite(rho) or net.n_x == 0:
        return lam
    step = 1e-2 * np.linalg.norm(lam) / max(float(np.linalg.norm(grad)), 1e-300)
    for _ in range(steps):
        while True:
            trial = np.maximum(lam - step * grad, 0.0)
            trial_rho, trial_grad = _group_gradient(net, trial, groups)
            if trial_rho < rho:
                break
            step *= 0.25
            if step * float(np.linalg.norm(grad)) < 1e-12 * float(np.linalg.norm(lam)):
                return lam
        improvement = (rho - trial_rho) / max(abs(rho), 1e-300)
        lam, rho, grad, step = trial, trial_rho, trial_grad, 2.0 * step
        if improvement < 1e-7:
            break
    return lam


def _group_gradient(net: Network, lam: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    rho, grad = schur_rho_and_gradient(net, lam[groups])
    return rho, np.bincount(groups, weights=grad, minlength=lam.size)


def prove_rho(net: Network, lam: np.ndarray, rho_star: float, input_weights: np.ndarray | None = None) -> float | None:
    """A ρ̂ ≥ ρ* with −L(λ, ρ̂) ⪰ 0 proven in float64 (None if no proof after a few tries).

    The float matrix H = fl(−L) differs from the exact −L by E with
    |E| ≤ γ_k T entrywise, T = |[C D]|ᵀ|[C D]| + ρ̂ Π + Σ λ_j |S_j| the magnitudes of the
    summed terms and k bounding the number of roundings in any entry (each entry is a
    sum of at most n_w + n_y + 3 terms, each a product rounded at most 5 times). For a
    diagonal S of powers of two, SHS is formed exactly, |SES| ≤ γ_k STS, and
    ||SES||₂ ≤ γ_k ||STS||_∞ (STS symmetric and nonnegative). Proving SHS − δ I ⪰ 0 with
    δ ≥ that bound proves S(−L)S ⪰ 0, hence −L ⪰ 0 exactly. S is the power of two nearest
    diag(T)^(-1/2) (Jacobi scaling, near-optimal among diagonal scalings by van der Sluis):
    a deep chain's LMI spans many orders of magnitude (eran 9x200: ρ ~ 1e11 against
    multipliers ~ 1), and there one δ in the original units is larger than the smallest
    eigenvalues it must prove. S = I (the unscaled proof) is tried when the scaled one fails.
    """
    k = net.n_w + net.n_y + 8
    pi = np.concatenate([_input_weights(net, input_weights), np.zeros(net.n_w)])
    margin = REL_MARGIN * max(abs(rho_star), 1e-300)
    # The proof needs roughly (δ + certify_psd's shift) more on the x-block than ρ*:
    # start there rather than discover it by failing.
    rho_hat = round_up(rho_star + margin)
    T = lmi_matrix(net, lam, rho_hat, input_weights, absolute=True)
    scale = _power_of_two_scaling(T.diagonal())
    delta, chol_shift = _rounding_terms(_congruence(T, scale), k)
    x_weight = float((pi[: net.n_x] * scale[: net.n_x] ** 2).min(initial=1.0))
    margin = max(margin, 2.0 * (delta + chol_shift) / x_weight)
    for _ in range(PROOF_ATTEMPTS):
        rho_hat = round_up(rho_star + margin)
        H = -lmi_matrix(net, lam, rho_hat, input_weights).toarray()
        T = lmi_matrix(net, lam, rho_hat, input_weights, absolute=True)
        for scale in (_power_of_two_scaling(T.diagonal()), None):  # None: the unscaled proof
            if _proven(H, T, scale, k):
                return rho_hat
        margin *= 10.0
    return None


def _proven(H: np.ndarray, T: sp.spmatrix, scale: np.ndarray | None, k: int) -> bool:
    """Whether S H S − δ I ⪰ 0 is proven, δ bounding ||S(H − (−L))S||₂ (S = diag(scale), or I)."""
    if scale is not None:
        Hs = scale[:, None] * H * scale[None, :]
        if not np.array_equal(Hs / scale[:, None] / scale[None, :], H):
            return False  # an entry under- or overflowed, so SHS is not exact
        H, T = Hs, _congruence(T, scale)
    else:
        H = H.copy()
    delta, _ = _rounding_terms(T, k)
    H[np.diag_indices_from(H)] -= delta
    return certify_psd(H)


def _congruence(T: sp.spmatrix, scale: np.ndarray) -> sp.spmatrix:
    """S T S for S = diag(scale), powers of two: every entry is one exact product."""
    S = sp.diags(scale)
    return S @ T @ S


def _power_of_two_scaling(diagonal: np.ndarray) -> np.ndarray:
    """2^e nearest diag^(-1/2) per entry (1 where the diagonal is 0): multiplying by it is exact."""
    d = np.abs(np.asarray(diagonal, dtype=np.float64))
    positive = d > 0
    e = np.zeros(d.shape)
    e[positive] = -np.round(0.5 * np.log2(d[positive]))
    return np.ldexp(1.0, np.clip(e, -500, 500).astype(int))


def _rounding_terms(T: sp.spmatrix, k: int) -> tuple[float, float]:
    """(δ, s) for the magnitudes T of a matrix's summed terms: the bound on its rounding error
    (2-norm) and the shift certify_psd will apply."""
    # 2×: also covers the rounding of T itself and of subtracting δ on the diagonal.
    delta = 2.0 * gamma(k) * float(abs(T).sum(axis=1).max()) + np.finfo(np.float64).tiny
    trace = float(np.abs(T.diagonal()).sum()) + delta * T.shape[0]
    return delta, 2.0 * gamma(T.shape[0] + 1) * trace
