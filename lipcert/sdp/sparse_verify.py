"""The float64 proof of −L(λ, ρ̂) ⪰ 0 at any size (MATH.md §3, §5), without a dense n×n.

`prove_rho_sparse` mirrors `verify.prove_rho` step by step (the same first margin, the same
power-of-two Jacobi scaling and its exactness check, the unscaled fallback, the same ×10 margin
growth over PROOF_ATTEMPTS), with two changes:

- the matrix proven is the lifted G(λ, ρ̂) = [[−L₀(λ, ρ̂), Yᵀ], [Y, I]] of `lifted.py`, which is
  PSD exactly when −L(λ, ρ̂) is; its rounding is in the −L₀ block only (Y and I are copies), so
  T, the magnitudes of the summed terms, is L₀'s (no |Y|ᵀ|Y|, which can be dense);
- the Cholesky proof is `sparse_psd.certify_psd_sparse` (a permuted sparse LDLᵀ whose backward
  error involves the factor's row counts, not n).

The argument is the dense one: Ĝ = G + E with E zero outside the −L₀ block and
|E| ≤ γ_k T; for S a diagonal of powers of two, S Ĝ S is exact (checked entry by entry),
||S E S||₂ ≤ γ_k ||S T S||_∞ ≤ δ/2, and a proof that S Ĝ S − δ I ⪰ 0 proves S G S ⪰ 0, hence
−L(λ, ρ̂) ⪰ 0.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from lipcert.linalg import round_up
from lipcert.network.form import Network
from lipcert.sdp.lifted import inner_lmi, lifted_matrix
from lipcert.sdp.sparse_psd import certify_psd_sparse
from lipcert.sdp.verify import (
    PROOF_ATTEMPTS,
    REL_MARGIN,
    REPAIRS,
    Verification,
    _congruence,
    _failed,
    _input_weights,
    _power_of_two_scaling,
    _rounding_terms,
)


def prove_rho_sparse(
    net: Network, lam: np.ndarray, rho_star: float, input_weights: np.ndarray | None = None
) -> float | None:
    """A ρ̂ ≥ ρ* with −L(λ, ρ̂) ⪰ 0 proven in float64 (None if no proof after a few tries)."""
    lam = np.asarray(lam, dtype=np.float64)
    if not np.isfinite(rho_star) or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        return None
    k = net.n_w + net.n_y + 8  # as verify.prove_rho (L₀'s entries have fewer terms: sound)
    pi = _input_weights(net, input_weights)
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


def attempt_sparse(
    net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None, how: str = "verified"
) -> Verification:
    """ρ* by the sparse Schur complement (`schur.py`), then the sparse proof; no repair."""
    from lipcert.sdp.schur import sparse_schur_rho  # schur builds on this module's neighbours

    start = time.perf_counter()
    rho_star = sparse_schur_rho(net, lam, input_weights)
    mid = time.perf_counter()
    if not np.isfinite(rho_star):
        return _failed("not certified: R (the activation block) is not negative definite")
    rho = prove_rho_sparse(net, lam, rho_star, input_weights)
    end = time.perf_counter()
    if rho is None:
        return _failed("not certified: sparse Cholesky proof failed", rho_star)
    return Verification(True, rho, round_up(float(np.sqrt(rho))), how, rho_star, lam, mid - start, end - mid)


def verify_multipliers_sparse(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> Verification:
    """`verify.verify_multipliers` (clip at 0, the same repairs) with the sparse ρ* and proof."""
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.shape != (net.n_w,):
        return _failed(f"not certified: expected {net.n_w} multipliers, got {lam.size}")
    if not np.all(np.isfinite(lam)):
        return _failed("not certified: non-finite multipliers")
    lam = np.maximum(lam, 0.0)
    result = attempt_sparse(net, lam, input_weights)
    if result.certified:
        return result
    scale = float(lam.mean()) if lam.size and lam.mean() > 0 else 1.0
    for factor, shift in REPAIRS:
        attempt = attempt_sparse(
            net, lam * factor + shift * scale, input_weights, f"repaired: λ×{factor:g} + {shift:g}·mean(λ)"
        )
        if attempt.certified:
            return attempt
    return _failed(f"not certified: {result.how.removeprefix('not certified: ')}; repairs failed")
