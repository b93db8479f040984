"""Turn multipliers into a proven bound, in float64 (MATH.md §3, §5): lipcert's one verifier.

For fixed λ ≥ 0 the LMI is L(λ, ρ) = [[P − ρ Π, Q], [Qᵀ, R]] with the inputs first
(Π = diag(π), the identity unless input weights are given). If R ≺ 0 the smallest
feasible ρ is ρ* = λ_max(Π^{-1/2} (P − Q R⁻¹ Qᵀ) Π^{-1/2}) (Schur complement, schur.py). ρ* is
only an estimate; the bound comes from a Cholesky proof that −L(λ, ρ̂) ⪰ 0 for a
slightly larger ρ̂, on the full matrix in the original coordinates, with a margin that
covers the rounding made in forming that matrix.

Two forms of the one proof, by size: up to DENSE_LIMIT (LMI side) a dense Cholesky of −L
(prove_rho); above it, the same argument on the lifted matrix [[−L₀, Yᵀ], [Y, I]] (lifted.py,
PSD exactly when −L is, and sparse even where [C D]ᵀ[C D] is dense) with a permuted sparse LDLᵀ
whose rounding bound involves the factor's row counts, not n (sparse_psd.py; prove_rho_sparse).
Neither forms a dense matrix of the other's size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lipcert.defaults import DENSE_LIMIT
from lipcert.linalg import blas_threads, certify_psd, gamma, round_up
from lipcert.network.form import Network
from lipcert.sdp.lifted import inner_lmi, lifted_matrix
from lipcert.sdp.lipsdp import lmi_matrix
from lipcert.sdp.schur import NotCertified, input_weights_or_ones, schur_rho
from lipcert.sdp.sparse_psd import certify_psd_sparse

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


def verify_multipliers(
    net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None, sparse: bool | None = None
) -> Verification:
    """The smallest ρ proven for these per-neuron multipliers, repairing them if needed.

    sparse: the sparse ρ* and proof (None: above DENSE_LIMIT only, as everywhere in lipcert;
    True or False force one path, for comparisons).
    """
    sparse = net.lmi_size > DENSE_LIMIT if sparse is None else sparse
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.shape != (net.n_w,):
        return _failed(f"not certified: expected {net.n_w} multipliers, got {lam.size}")
    if not np.all(np.isfinite(lam)):
        return _failed("not certified: non-finite multipliers")
    lam = np.maximum(lam, 0.0)
    with blas_threads(net.lmi_size):
        return _verify(net, lam, input_weights, sparse)


def _verify(net: Network, lam: np.ndarray, input_weights: np.ndarray | None, sparse: bool) -> Verification:
    result = _attempt(net, lam, input_weights, "verified", sparse)
    if result.certified:
        return result
    scale = float(lam.mean()) if lam.size and lam.mean() > 0 else 1.0
    for factor, shift in REPAIRS:
        repaired = lam * factor + shift * scale
        how = f"repaired: λ×{factor:g} + {shift:g}·mean(λ)"
        attempt = _attempt(net, repaired, input_weights, how, sparse)
        if attempt.certified:
            return attempt
    return _failed(f"not certified: {result.how.removeprefix('not certified: ')}; repairs failed")


def _failed(how: str, rho_estimate: float = float("nan")) -> Verification:
    return Verification(False, float("inf"), float("inf"), how, rho_estimate, None, 0.0, 0.0)


def _attempt(net: Network, lam: np.ndarray, input_weights: np.ndarray | None, how: str, sparse: bool) -> Verification:
    start = time.perf_counter()
    try:
        rho_star = schur_rho(net, lam, input_weights, sparse=sparse)
    except NotCertified as exc:
        return _failed(f"not certified: {exc}")
    mid = time.perf_counter()
    rho = (prove_rho_sparse if sparse else prove_rho)(net, lam, rho_star, input_weights)
    end = time.perf_counter()
    if rho is None:
        return _failed(f"not certified: {'sparse ' if sparse else ''}Cholesky proof failed", rho_star)
    bound = round_up(float(np.sqrt(rho)))
    return Verification(True, rho, bound, how, rho_star, lam, mid - start, end - mid)


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
    pi = np.concatenate([input_weights_or_ones(net, input_weights), np.zeros(net.n_w)])
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


# --------------------------------------------------------------------------- above DENSE_LIMIT


def prove_rho_sparse(
    net: Network, lam: np.ndarray, rho_star: float, input_weights: np.ndarray | None = None
) -> float | None:
    """prove_rho on the lifted matrix with the sparse proof (see the module docstring and below).

    It mirrors prove_rho step by step (the same first margin, power-of-two Jacobi scaling and
    its exactness check, unscaled fallback, ×10 margin growth over PROOF_ATTEMPTS). Ĝ = G + E
    with E zero outside the −L₀ block (Y and I are copies) and |E| ≤ γ_k T, T the magnitudes of
    L₀'s summed terms; for S a diagonal of powers of two, S Ĝ S is exact (checked entry by entry),
    ||S E S||₂ ≤ γ_k ||S T S||_∞ ≤ δ/2, and a proof that S Ĝ S − δ I ⪰ 0 proves S G S ⪰ 0, hence
    −L(λ, ρ̂) ⪰ 0.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if not np.isfinite(rho_star) or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        return None
    k = net.n_w + net.n_y + 8  # as verify.prove_rho (L₀'s entries have fewer terms: sound)
    pi = input_weights_or_ones(net, input_weights)
    margin = REL_MARGIN * max(abs(rho_star), 1e-300)
    rho_hat = round_up(rho_star + margin)
    T = inner_lmi(net, lam, rho_hat, input_weights, absolute=True)
    scale = _lifted_scaling(T, net.n_y)
    delta, chol_shift = _rounding_terms(_congruence(T, scale[: T.shape[0]]), k)
    x_weight = float((pi * scale[: net.n_x] ** 2).min(initial=1.0))
    margin = max(margin, 2.0 * (delta + chol_shift) / x_weight)
    for _ in range(PROOF_ATTEMPTS):
        rho_hat = round_up(rho_star + margin)
        H = lifted_matrix(net, lam, rho_hat, input_weights)
        T = inner_lmi(net, lam, rho_hat, input_weights, absolute=True)
        for scale in (_lifted_scaling(T, net.n_y), None):  # None: the unscaled proof
            if _proven_sparse(H, T, scale, k):
                return rho_hat
        margin *= 10.0
    return None


def _lifted_scaling(T: sp.spmatrix, n_y: int) -> np.ndarray:
    """Powers of two nearest diag^(-1/2) of the lifted magnitudes (the y block's diagonal is 1)."""
    return _power_of_two_scaling(np.concatenate([T.diagonal(), np.ones(n_y)]))


def _proven_sparse(H: sp.csc_matrix, T: sp.spmatrix, scale: np.ndarray | None, k: int) -> bool:
    """Whether S H S − δ I ⪰ 0 is proven, δ bounding ||S(Ĝ − G)S||₂ (S = diag(scale), or I)."""
    n = T.shape[0]
    H = H.tocoo()
    data = H.data
    if scale is not None:
        rows, cols = scale[H.row], scale[H.col]
        scaled = rows * data * cols
        if not np.array_equal(scaled / rows / cols, data):
            return False  # an entry under- or overflowed, so SHS is not exact
        data, T = scaled, _congruence(T, scale[:n])
    delta, _ = _rounding_terms(T, k)
    A = sp.csc_matrix((data, (H.row, H.col)), shape=H.shape)
    A = A - delta * sp.identity(H.shape[0], format="csc")
    return certify_psd_sparse(A)
