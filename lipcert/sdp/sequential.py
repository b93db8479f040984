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
from lipcert.linalg import largest_eigenvalue_estimate
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


def recursion_multipliers(
    net: Network, weights: list[np.ndarray], width: int = CHAIN_WIDTH
) -> tuple[np.ndarray, float] | None:
    """Per-neuron λ_i (the recursion's scale) and c, or None if the recursion breaks down numerically
    (or two consecutive layers, the input counting as one, are wider than `width`).

    X_i is formed (dense) for layers of at most `width` neurons. A wider layer's X_i = λ_i(I − a K_i),
    a = λ_i m², K_i = W_i X_{i−1}⁻¹ W_iᵀ, is never formed: by Woodbury,
    X_i⁻¹ = (I + a W_i M⁻¹ W_iᵀ)/λ_i with M = X_{i−1} − a W_iᵀW_i of the previous layer's side, and
    λ_max(K_i) = λ_max(L⁻¹ W_iᵀW_i L⁻ᵀ) with X_{i−1} = LLᵀ. oval21 cifar_wide's 4096-neuron first
    layer (over 3072 inputs) is such a layer: its recursion point starts the descent at √ρ* 6.0
    instead of the layer profile's 10.3.
    """
    state = _Identity(weights[0].shape[1])
    lam = np.empty(net.n_w)
    try:
        for layer, W in zip(net.layers, weights[:-1]):
            m = 0.5 * (layer.alpha + layer.beta)
            if m <= 0:
                return None
            if W.shape[0] <= width:
                K = state.gram(W)
                li = 1.0 / (2.0 * m * m * _top(K))
                state = _Dense(li * np.eye(W.shape[0]) - li * li * m * m * K)
            elif isinstance(state, _Implicit) or W.shape[1] > width:
                return None
            else:
                X = state.matrix()
                G = (sp.csr_matrix(W).T @ sp.csr_matrix(W)).toarray()  # W_iᵀW_i, of the previous side
                chol = la.cholesky(X, lower=True)
                inner = la.solve_triangular(chol, la.solve_triangular(chol, G, lower=True).T, lower=True)
                li = 1.0 / (2.0 * m * m * _top(0.5 * (inner + inner.T)))
                a = li * m * m
                state = _Implicit(li, a, W, la.cho_factor(X - a * G, lower=True))
            lam[layer.start : layer.stop] = li
        c = _top(state.gram(weights[-1]))
    except (la.LinAlgError, ValueError):
        return None
    return (lam, c) if np.isfinite(c) and c > 0 else None


def _top(K: np.ndarray) -> float:
    """λ_max of a symmetric K, positive and finite, else ValueError (the recursion breaks down)."""
    n = K.shape[0]
    top = float(la.eigvalsh(K, subset_by_index=[n - 1, n - 1])[0]) if n <= 400 else largest_eigenvalue_estimate(K)
    if not np.isfinite(top) or top <= 0:
        raise ValueError("the recursion broke down")
    return top


class _Identity:
    """X_{−1} = I (before the first layer)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def matrix(self) -> np.ndarray:
        return np.eye(self.n)

    def gram(self, W: np.ndarray) -> np.ndarray:
        return W @ W.T


class _Dense:
    """X_i formed: W X_i⁻¹ Wᵀ by a Cholesky solve."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X

    def matrix(self) -> np.ndarray:
        return self.X

    def gram(self, W: np.ndarray) -> np.ndarray:
        K = W @ la.cho_solve(la.cho_factor(self.X, lower=True), W.T)
        return 0.5 * (K + K.T)


class _Implicit:
    """A wide layer's X_i = λ(I − a W X_{i−1}⁻¹ Wᵀ), held by Woodbury: X_i⁻¹ = (I + a W M⁻¹ Wᵀ)/λ."""

    def __init__(self, scale: float, a: float, W: np.ndarray, m_factor: tuple[np.ndarray, bool]) -> None:
        self.scale, self.a, self.W, self.m_factor = scale, a, W, m_factor

    def gram(self, V: np.ndarray) -> np.ndarray:
        VW = V @ self.W
        K = (V @ V.T + self.a * VW @ la.cho_solve(self.m_factor, VW.T)) / self.scale
        return 0.5 * (K + K.T)


def chain_point(net: Network) -> np.ndarray | None:
    """The recursion's per-layer multipliers at their best scale s = c(1 + τ); None if not a chain
    (or two consecutive layers are wider than CHAIN_WIDTH: the recursion forms dense matrices of
    the narrower side, see recursion_multipliers)."""
    if net.lmi_size > VERIFY_LIMIT:
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
