"""LipSDP-Neuron and LipSDP-Layer for any network in the (A, B, C, D) form (MATH.md §2).

Over z = (Δx, Δw), with M = [A B] (so Δv = M z) and E_w z = Δw, the LMI is

    L(λ, ρ) = [C D]ᵀ[C D] − ρ Eₓᵀ diag(π) Eₓ + Σ_j λ_j S_j  ⪯ 0,
    S_j     = sym of (Δw_j − α_j Δv_j)(β_j Δv_j − Δw_j)
            = −α_jβ_j m_j m_jᵀ + (α_j+β_j)/2 (m_j e_jᵀ + e_j m_jᵀ) − e_j e_jᵀ,

m_j the j-th row of M and e_j the j-th row of E_w; π = 1 unless input weights are given.
If it holds, ||Δy||² ≤ ρ Σ_k π_k Δx_k². This is lipcert's one LMI assembly: the same sparse
terms (multiplier_terms) serve the numeric matrix (verification), the coefficient matrix of the
cvxpy model (one column per multiplier) and its decompositions into chordal cliques and coupled
tiles (lipcert.sdp.model), so none of them can disagree. The networks the solver sees
(balanced, inputs compressed or weighted) are built here too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from lipcert.network.form import Network
from lipcert.vocabulary import Method


def multiplier_groups(net: Network, method: Method) -> np.ndarray:
    """Index of the multiplier that neuron j uses: itself (Neuron) or its layer (Layer)."""
    method = Method(method)
    if method is Method.NEURON:
        return np.arange(net.n_w)
    if method is Method.LAYER:
        groups = np.empty(net.n_w, dtype=np.int64)
        for k, layer in enumerate(net.layers):
            groups[layer.start : layer.stop] = k
        return groups
    raise ValueError(f"{method} has no LipSDP multipliers; expected {Method.NEURON} or {Method.LAYER}")


def expand_multipliers(net: Network, method: Method, lam: np.ndarray) -> np.ndarray:
    """Per-neuron multipliers from the solver's variables (one per neuron or per layer)."""
    return np.asarray(lam, dtype=np.float64)[multiplier_groups(net, method)]


def stacked_maps(net: Network) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """M = [A B] (pre-activations) and Y = [C D] (outputs) as maps of z = (x, w)."""
    M = sp.hstack([net.A, net.B], format="csr", dtype=np.float64)
    Y = sp.hstack([net.C, net.D], format="csr", dtype=np.float64)
    return M, Y


def _coo(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> sp.coo_matrix:
    return sp.coo_matrix((vals, (rows, cols)), shape=(n, n))


def _pair_entries(M: sp.csr_matrix, rows_used: np.ndarray) -> tuple[np.ndarray, ...]:
    """All pairs (p, q) of nonzeros sharing a row of M, for the rows in rows_used.

    Returns (row j, column p, column q, M_jp M_jq): the entries of Σ_j m_j m_jᵀ.
    """
    sub = M[rows_used]
    counts = np.diff(sub.indptr)
    nz_row = np.repeat(np.arange(sub.shape[0]), counts)
    reps = counts[nz_row]  # each nonzero pairs with every nonzero of its row
    first = np.repeat(np.arange(sub.nnz), reps)
    offsets = np.arange(first.size) - np.repeat(np.cumsum(reps) - reps, reps)
    second = sub.indptr[nz_row[first]] + offsets
    j = rows_used[nz_row[first]]
    return j, sub.indices[first], sub.indices[second], sub.data[first] * sub.data[second]


def multiplier_terms(net: Network, absolute: bool) -> tuple[np.ndarray, ...]:
    """Entries (neuron j, row, col, value) of the S_j, so that Σ_j λ_j S_j = Σ λ_j value.

    With absolute=True every value is replaced by its magnitude: the matrix Σ λ_j |S_j|
    bounds the rounding error of forming Σ λ_j S_j (see verify.py).
    """
    M, _ = stacked_maps(net)
    n_x = net.n_x
    ab, apb = net.alpha * net.beta, net.alpha + net.beta
    coo = M.tocoo()
    # (α+β)/2 (m_j e_jᵀ + e_j m_jᵀ): the cross term, placed in both triangles.
    cross_j = np.concatenate([coo.row, coo.row])
    cross_r = np.concatenate([coo.col, n_x + coo.row])
    cross_c = np.concatenate([n_x + coo.row, coo.col])
    cross_v = np.tile(0.5 * apb[coo.row] * coo.data, 2)
    # −e_j e_jᵀ
    diag_j = np.arange(net.n_w)
    diag_rc = n_x + diag_j
    diag_v = -np.ones(net.n_w)
    # −α_jβ_j m_j m_jᵀ: zero for ReLU, tanh, sigmoid (α = 0), so only build it where needed.
    quad_j, quad_r, quad_c, quad_v = _pair_entries(M, np.flatnonzero(ab != 0.0))
    quad_v = -ab[quad_j] * quad_v
    js = np.concatenate([cross_j, diag_j, quad_j])
    rs = np.concatenate([cross_r, diag_rc, quad_r])
    cs = np.concatenate([cross_c, diag_rc, quad_c])
    vs = np.concatenate([cross_v, diag_v, quad_v])
    return js, rs, cs, (np.abs(vs) if absolute else vs)


def input_diagonal(net: Network, input_weights: np.ndarray | None) -> np.ndarray:
    if input_weights is None:
        return np.ones(net.n_x)
    pi = np.asarray(input_weights, dtype=np.float64)
    if pi.shape != (net.n_x,) or not np.all(np.isfinite(pi)) or np.any(pi <= 0):
        raise ValueError(f"input_weights must be {net.n_x} positive finite numbers (one per input)")
    return pi


def lmi_matrix(
    net: Network,
    lam: np.ndarray,
    rho: float,
    input_weights: np.ndarray | None = None,
    absolute: bool = False,
) -> sp.csr_matrix:
    """L(λ, ρ) over z = (x, w) for per-neuron multipliers λ (MATH.md §2), float64 sparse.

    absolute=True returns |[C D]|ᵀ|[C D]| + ρ diag(π) + Σ λ_j |S_j| (λ ≥ 0 assumed), the
    entrywise magnitude of the terms, used to bound the rounding in forming L.
    """
    lam = np.asarray(lam, dtype=np.float64)
    n = net.lmi_size
    _, Y = stacked_maps(net)
    if absolute:
        Y = abs(Y)
    js, rs, cs, vs = multiplier_terms(net, absolute)
    multipliers = _coo(rs, cs, lam[js] * vs, n).tocsr()
    pi = input_diagonal(net, input_weights)
    sign = 1.0 if absolute else -1.0
    input_term = sp.diags(np.concatenate([sign * rho * pi, np.zeros(net.n_w)]), format="csr")
    return (Y.T @ Y + multipliers + input_term).tocsr()


@dataclass(frozen=True)
class DenseAssembly:
    """L(λ, 0) as a dense array for many λ: the fixed term [C D]ᵀ[C D] once, then one sparse
    product per λ for the multiplier terms (the same multiplier_terms as lmi_matrix).

    For estimates only (ρ*(λ) and its gradients in the descent, several hundred per certificate,
    where assembling lmi_matrix was half the time of a dense evaluation on mnistfc 256x2): its sums
    are ordered differently, so it equals lmi_matrix up to rounding. Proofs form L with lmi_matrix,
    whose summation their rounding margins count.
    """

    base: np.ndarray  # [C D]ᵀ[C D], dense n × n
    positions: np.ndarray  # flat indices of the entries the multiplier terms touch
    coefficients: sp.csr_matrix  # (positions, n_w): the entries' values are coefficients @ λ

    @classmethod
    def of(cls, net: Network, order: np.ndarray | None = None) -> DenseAssembly:
        """order: a permutation of the LMI's indices; matrix(λ) is then L(λ, 0)[order][:, order]."""
        n = net.lmi_size
        _, Y = stacked_maps(net)
        js, rs, cs, vs = multiplier_terms(net, absolute=False)
        base = np.asarray((Y.T @ Y).toarray(), dtype=np.float64)
        if order is not None:
            where_is = np.empty(n, dtype=np.int64)
            where_is[order] = np.arange(n)
            rs, cs, base = where_is[rs], where_is[cs], base[np.ix_(order, order)]
        positions, where = np.unique(rs * n + cs, return_inverse=True)
        coefficients = sp.csr_matrix((vs, (where, js)), shape=(positions.size, net.n_w))  # duplicates summed
        return cls(np.ascontiguousarray(base), positions, coefficients)

    def matrix(self, lam: np.ndarray) -> np.ndarray:
        H = self.base.copy()
        H.flat[self.positions] += self.coefficients @ np.asarray(lam, dtype=np.float64)
        return H


def coefficient_matrix(net: Network, method: Method) -> sp.csc_matrix:
    """F with vec(Σ_j λ_j S_j) = F @ λ (column-major vec), one column per multiplier."""
    n = net.lmi_size
    groups = multiplier_groups(net, method)
    js, rs, cs, vs = multiplier_terms(net, absolute=False)
    n_mult = int(groups.max()) + 1 if groups.size else 0
    F = sp.coo_matrix((vs, (rs + cs * n, groups[js])), shape=(n * n, n_mult))
    return F.tocsc()  # sums duplicates: a layer's column is the sum of its neurons' S_j


def lmi_pattern(net: Network) -> sp.csr_matrix:
    """The symmetric 0/1 pattern of L(λ, ρ) for generic λ, ρ (diagonal included)."""
    M, Y = stacked_maps(net)
    F = coefficient_matrix(net, Method.NEURON).tocoo()
    n = net.lmi_size
    rows, cols = F.row % n, F.row // n
    multipliers = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    pattern = abs(Y).T @ abs(Y) + multipliers + sp.identity(n)
    pattern = (pattern + pattern.T).tocsr()
    pattern.data[:] = 1.0
    return pattern


def slack_map(n: int, loc: np.ndarray) -> sp.csr_matrix:
    """vec_F of the n x n symmetric matrix whose upper-triangle entries z sit at rows/cols loc.

    The free symmetric slacks of a decomposed LMI (chordal separators, overlapping tiles): added to
    one part and subtracted from another, they cancel in the sum.
    """
    a, b = np.triu_indices(loc.size)
    k = np.arange(a.size)
    rows = np.concatenate([loc[a] + loc[b] * n, (loc[b] + loc[a] * n)[a != b]])
    cols = np.concatenate([k, k[a != b]])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n * n, a.size))


def scale_inputs(net: Network, weights: np.ndarray) -> Network:
    """The network x' ↦ f(diag(π)^{-1/2} x'): its LMI with −ρ I is the weighted one with −ρ diag(π).

    The scaled weights are rounded; use it to solve, and verify with input_weights on
    the original network (verify.py) where the weighting is exact.
    """
    pi = input_diagonal(net, weights)
    scale = sp.diags(1.0 / np.sqrt(pi))
    return replace(net, A=(net.A @ scale).tocsr(), C=(net.C @ scale).tocsr(), ops=())


def compress_inputs(net: Network) -> Network:
    """Replace the x-columns K = [A; C] by K' with K'K'ᵀ = KKᵀ and rank(K) columns (MATH.md §2).

    The LMI depends on x only through KΔx and ||Δx||², and min ||Δx|| subject to
    KΔx = u is the same for K and K', so the SDP value is unchanged. Used for the solve
    only: verification runs in the original coordinates.
    """
    K = sp.vstack([net.A, net.C], format="csr", dtype=np.float64)
    live = np.flatnonzero(np.diff(K.indptr))  # rows of K that read the input at all
    if live.size >= net.n_x:
        return net
    K_live = K[live].toarray()
    eigval, eigvec = la.eigh(K_live @ K_live.T)
    keep = eigval > max(float(eigval.max(initial=0.0)), 1e-300) * 1e-14
    factor = eigvec[:, keep] * np.sqrt(eigval[keep])  # U Σ, so factor factorᵀ = K Kᵀ
    compressed = np.zeros((K.shape[0], factor.shape[1]))
    compressed[live] = factor
    n_w = net.n_w
    return replace(
        net,
        A=sp.csr_matrix(compressed[:n_w]),
        C=sp.csr_matrix(compressed[n_w:]),
        input_shape=(factor.shape[1],),
        ops=(),
    )


def _norm_estimate(M: sp.csr_matrix) -> float:
    """A cheap spectral-norm estimate; used for scaling only, never as a bound."""
    if M.nnz == 0:
        return 0.0
    if min(M.shape) <= 64:
        return float(np.linalg.norm(M.toarray(), 2))
    return float(spla.svds(M, k=1, return_singular_vectors=False, rng=np.random.default_rng(0))[0])


def _reads_estimate(net: Network, x_part: sp.csr_matrix, w_part: sp.csr_matrix, d: np.ndarray) -> float:
    """Lipschitz estimate of rows reading x and earlier layers (whose estimates are in d)."""
    w_part = sp.csc_matrix(w_part)
    total = _norm_estimate(sp.csr_matrix(x_part))
    for layer in net.layers:
        block = w_part[:, layer.start : layer.stop]
        if block.nnz:
            total += _norm_estimate(sp.csr_matrix(block)) * d[layer.start]
    return total


def balance(net: Network) -> tuple[Network, np.ndarray, float]:
    """An equivalent network whose layers all have Lipschitz estimate ~1, for the solver.

    Scaling neuron j by d_j (v' = v/d, w' = w/d, φ'(t) = φ(d t)/d: same slope bounds) and
    the output by c is a congruence of the LMI: λ_j = λ'_j / (c² d_j²), ρ = ρ'/c². The SDP
    value is unchanged, but SCS (which cannot rescale inside a PSD cone) sees entries of
    similar size and converges in fewer iterations. Returns (net', d per neuron, c).
    net' keeps the activation names, but its activations are the rescaled ones: it is
    for building the SDP, not for evaluating the network.
    """
    d = np.ones(net.n_w)
    for layer in net.layers:
        rows = slice(layer.start, layer.stop)
        est = _reads_estimate(net, net.A[rows], net.B[rows], d)
        d[rows] = max(abs(layer.alpha), abs(layer.beta)) * est if est > 0 else 1.0
    out = _reads_estimate(net, net.C, net.D, d)
    c = 1.0 / out if out > 0 else 1.0
    d_inv = sp.diags(1.0 / d)
    d_mat = sp.diags(d)
    scaled = replace(
        net,
        A=(d_inv @ net.A).tocsr(),
        B=(d_inv @ net.B @ d_mat).tocsr(),
        C=(c * net.C).tocsr(),
        D=(c * net.D @ d_mat).tocsr(),
        bias_v=net.bias_v / d,
        bias_y=c * net.bias_y,
        ops=(),
    )
    return scaled, d, c


def scale_outputs(net: Network, factor: float) -> Network:
    """The network factor·f: its LipSDP ρ and multipliers are factor² times f's."""
    return replace(net, C=(factor * net.C).tocsr(), D=(factor * net.D).tocsr(), bias_y=factor * net.bias_y)


def linear_lower_estimate(net: Network, samples: int = 6, seed: int = 0) -> float:
    """max ||J(s)||₂ over a few slope vectors s ∈ {α_j, β_j}ⁿ (all β, all α, random vertices).

    J(s) = C + D diag(s)(A + B J_w) is the Jacobian of the network with each activation
    replaced by the line of slope s_j, which satisfies every slope constraint; so each
    ||J(s)|| is at most the LipSDP value's square root. An estimate used for scaling only.
    """
    rng = np.random.default_rng(seed)
    alpha, beta = net.alpha, net.beta
    vertices = [beta, alpha] + [np.where(rng.random(net.n_w) < 0.5, alpha, beta) for _ in range(samples)]
    A, B, C, D = (m.tocsr() for m in (net.A, net.B, net.C, net.D))
    best = 0.0
    for slopes in vertices:
        dw = np.zeros((net.n_w, net.n_x))
        for layer in net.layers:
            rows = slice(layer.start, layer.stop)
            dw[rows] = slopes[rows, None] * (A[rows].toarray() + B[rows] @ dw)
        jac = C.toarray() + D @ dw
        if jac.size:
            best = max(best, float(np.linalg.norm(jac, 2)))
    return best
