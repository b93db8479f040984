"""A whole-network LipSDP point for a chain, from a layer-by-layer recursion, verified on the full LMI.

For a chain x → W_0 → φ_1 → W_1 → … → φ_L → W_L (slopes in [α, β], m = (α+β)/2) the
LipSDP LMI is block tridiagonal, and with one scalar multiplier per layer its sequential
Schur complements can be kept positive in closed form. ECLipsE-Fast (Xu & Sivaranjani,
NeurIPS 2024) takes

    λ_i = 1 / (2 m² λ_max(W_i X_{i−1}⁻¹ W_iᵀ)),   X_i = λ_i I − λ_i² m² W_i X_{i−1}⁻¹ W_iᵀ,   X_0 = I,

and c = λ_max(W_Lᵀ W_L X_L⁻¹) as its squared bound. lipcert uses only the *direction* of
those multipliers: per neuron λ = s·λ_i (lipcert's λ is twice LipSDP's T), s just above
c, where the activation block is strictly negative definite. The smallest ρ for them and
its float64 proof come from verify_multipliers on the full LMI (MATH.md §3), so the bound
is sound whatever the recursion does, and it is usually below ECLipsE-Fast's own value
(which fixes ρ = s instead of minimising it).

Why: a depth partition multiplies group bounds, and on deep MLPs that product is loose
(eran 9x200: 729699 as a product of groups; 478923 from this point, in seconds, and less
after rescaling each layer's multipliers against the exact ρ*).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from lipcert.defaults import CHAIN_WIDTH, DESCENT_SECONDS, MAX_SWEEPS, VERIFY_LIMIT
from lipcert.network.form import Network
from lipcert.sdp.schur import NotCertified, schur_rho
from lipcert.sdp.verify import Verification, verify_multipliers

SCALES = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)  # s = c(1 + τ): ρ*(s) is convex in s, and its minimum is near c


def chain_weights(net: Network) -> list[np.ndarray] | None:
    """[W_0, …, W_L] when every layer reads only the one before it (the first reads x), else None."""
    layers = net.layers
    if not layers or net.C.count_nonzero():
        return None
    weights = [_block(net.A, layers[0], (0, net.n_x), net.n_x)]
    if weights[0] is None or net.A[layers[0].stop :].count_nonzero():
        return None
    for previous, layer in zip(layers, layers[1:]):
        weights.append(_block(net.B, layer, (previous.start, previous.stop), net.n_w))
    output = net.D[:, : layers[-1].start].count_nonzero() == 0
    weights.append(net.D[:, layers[-1].start : layers[-1].stop].toarray() if output else None)
    return None if any(w is None for w in weights) else weights


def _block(M: sp.csr_matrix, layer, columns: tuple[int, int], width: int) -> np.ndarray | None:  # noqa: ANN001
    """The rows of `layer` in M restricted to `columns`, or None if they read anything else."""
    rows = M[layer.start : layer.stop]
    lo, hi = columns
    if rows[:, :lo].count_nonzero() or rows[:, hi:width].count_nonzero():
        return None
    return rows[:, lo:hi].toarray()


def recursion_multipliers(net: Network, weights: list[np.ndarray]) -> tuple[np.ndarray, float] | None:
    """Per-neuron λ_i (the recursion's scale) and c, or None if the recursion breaks down numerically."""
    X = np.eye(weights[0].shape[1])
    lam = np.empty(net.n_w)
    for layer, W in zip(net.layers, weights[:-1]):
        m = 0.5 * (layer.alpha + layer.beta)
        try:
            K = W @ la.cho_solve(la.cho_factor(X, lower=True), W.T)
        except la.LinAlgError:
            return None
        K = 0.5 * (K + K.T)
        top = float(la.eigvalsh(K, subset_by_index=[K.shape[0] - 1, K.shape[0] - 1])[0])
        if not np.isfinite(top) or top <= 0 or m <= 0:
            return None
        li = 1.0 / (2.0 * m * m * top)
        X = li * np.eye(W.shape[0]) - li * li * m * m * K
        lam[layer.start : layer.stop] = li
    W = weights[-1]
    try:
        c = float(la.eigvalsh(W @ la.cho_solve(la.cho_factor(X, lower=True), W.T))[-1])
    except la.LinAlgError:
        return None
    return (lam, c) if np.isfinite(c) and c > 0 else None


def chain_point(net: Network) -> np.ndarray | None:
    """The recursion's per-layer multipliers at their best scale s = c(1 + τ); None if not a chain
    (or a layer is wider than CHAIN_WIDTH: the recursion forms dense layer-sized matrices)."""
    if net.lmi_size > VERIFY_LIMIT or any(layer.size > CHAIN_WIDTH for layer in net.layers):
        return None
    weights = chain_weights(net)
    found = recursion_multipliers(net, weights) if weights is not None else None
    if found is None:
        return None
    direction, c = found
    value, tau = min((_rho(net, c * (1.0 + tau) * direction), tau) for tau in SCALES)
    return c * (1.0 + tau) * direction if np.isfinite(value) else None


def sequential_bound(net: Network, seconds: float = DESCENT_SECONDS) -> Verification | None:
    """The verified bound at the recursion's multipliers, improved layer by layer; None if not a chain."""
    lam = chain_point(net)
    if lam is None:
        return None
    lam = descend_layer_scales(net, lam, _rho(net, lam), seconds)
    return verify_multipliers(net, lam)


def descend_layer_scales(
    net: Network, lam: np.ndarray, value: float, seconds: float, blocks: list[slice] | None = None
) -> np.ndarray:
    """Coordinate search on one factor per block of neurons (default: per layer), minimising ρ*(λ)
    (convex in λ: a max of linear maps).

    The recursion picks each layer's multiplier greedily, for the layers before it only;
    rescaling layer by layer against the exact ρ* recovers much of what that loses
    (eran 9x200: 478923 at the recursion's point, 387171 after two sweeps). With the blocks
    of a plan's depth groups it finds the relative scale of multipliers stitched from them.
    """
    deadline = time.perf_counter() + seconds
    blocks = blocks if blocks is not None else [slice(layer.start, layer.stop) for layer in net.layers]
    step = 2.0
    for _ in range(MAX_SWEEPS):
        if step <= 1.01 or time.perf_counter() >= deadline:
            break
        improved = False
        for block in blocks:
            for factor in (1.0 / step, step):
                trial = lam.copy()
                trial[block] *= factor
                if (rho := _rho(net, trial)) < value * (1.0 - 1e-9):
                    lam, value, improved = trial, rho, True
                    break
            if time.perf_counter() >= deadline:
                break
        step = step if improved else float(np.sqrt(step))
    return lam


def _rho(net: Network, lam: np.ndarray) -> float:
    try:
        return schur_rho(net, lam)
    except NotCertified:  # the activation block is not ≺ 0 at these multipliers
        return float("inf")
