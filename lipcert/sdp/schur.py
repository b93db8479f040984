"""ρ*(λ) and its subgradient for any network form and size (MATH.md §5), without a dense n×n.

With L₀ = L(λ, 0) of the network without outputs (lifted.py), split over (x | w) as
[[P₀, Q₀], [Q₀ᵀ, R₀]], and Y = [C D], eliminating (w, y) from the lifted matrix gives

    ρ*(λ) = λ_max(Π^{-1/2} (P₀ + U N⁻¹ Uᵀ) Π^{-1/2}),   N = [[−R₀, Dᵀ], [D, I]],   U = [−Q₀, Cᵀ],

which equals verify.schur_rho's λ_max(Π^{-1/2}(P − Q R⁻¹ Qᵀ)Π^{-1/2}) (block elimination of y:
N⁻¹'s w-block is (−R)⁻¹ = (−R₀ − DᵀD)⁻¹). N ≻ 0 exactly when R ≺ 0, so a sparse LDLᵀ of N
(QDLDL, fill-reducing order) with all pivots positive is the domain test, and each product with
the Schur complement is two sparse products and two triangular solves. The top eigenvalues
come from Lanczos (ARPACK's eigsh, a fixed start vector unless one is given, so that results
are reproducible) on that operator; at most a few hundred inputs, the n_x × n_x complement is
formed by n_x solves and diagonalised exactly instead.

Subgradients (Danskin, as verify.schur_rho_and_gradient): for the i-th top eigenvector e_i,
x = Π^{-1/2} e_i, (w, ·) = N⁻¹(−Uᵀ x) is the maximising w, and ∂θ_i/∂λ_j = (w_j − α_j v_j)(β_j v_j − w_j)
with v = M (x, w). Where θ_1 is simple this is the gradient of ρ*; where the top eigenspace is
multiple, each such vector is an element of the subdifferential, and `descent.py` combines
the top few by a smoothed maximum (see there).

Up to DENSE_LIMIT (LMI side) the dense Schur complement is used, as before the sparse path
existed (its L(λ, 0) assembled by lipsdp.DenseAssembly, equal to lmi_matrix's up to rounding);
above it, the sparse operator. Everything here
is an estimate: lipcert.sdp.verify proves a bound above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from lipcert.defaults import DENSE_LIMIT
from lipcert.linalg import blas_threads
from lipcert.network.form import Network
from lipcert.sdp.lifted import dense_layout, inner_lmi, ordered_dense_assembly, output_map, pre_activation_map

EXPLICIT_INPUTS = 256  # up to this many inputs the sparse path forms the n_x × n_x complement
LANCZOS_TOL = 1e-10  # relative accuracy asked of ARPACK
# LAPACK's driver for the dense complement's top eigenpairs: bisection and inverse iteration
# (dsyevx). Measured on mnist_6x256's complement (784, top 64, clustered), three runs at load 1-1.5:
# dsyevr (scipy's default) 0.06-0.13 s, dsyevx 0.05-0.09 s, all 784 by dsyevd 0.05-0.08 s.
EIGH_DRIVER = "evx"


class NotCertified(Exception):
    """R(λ) is not negative definite (or the complement is not finite): no ρ* for these λ."""


def input_weights_or_ones(net: Network, input_weights: np.ndarray | None) -> np.ndarray:
    return np.ones(net.n_x) if input_weights is None else np.asarray(input_weights, dtype=np.float64)


@dataclass(frozen=True)
class _DenseParts:
    """The dense complement's pieces in lifted.dense_layout's order: the neurons Q never touches
    (n_free) first, so that Qᵀ = [0; Q_Jᵀ] and, with −R = chol cholᵀ, −Q R⁻¹ Qᵀ = Y_Jᵀ Y_J for
    Y_J = chol_J⁻¹ Q_Jᵀ, chol_J the factor's trailing block (the leading rows of chol⁻¹Qᵀ are zero).
    On chains J is the first layer: mnist_6x256 solves with a sixth of R.

    Where P(λ, 0) is structurally zero, S = FᵀF with F = Y_J Π^{-1/2} has rank ≤ |J|, and its top
    eigenpairs come from the |J| × |J| Gram matrix F Fᵀ (θ, v) as (θ, Fᵀv/√θ): on mnist_6x256 a
    256-side eigenproblem instead of 784."""

    P: np.ndarray | None  # P(λ, 0), None where structurally zero
    chol: np.ndarray  # −R (reordered) = chol cholᵀ
    YJ: np.ndarray  # chol_J⁻¹ Q_Jᵀ
    F: np.ndarray  # Y_J Π^{-1/2}
    neurons: np.ndarray  # the reordered neurons' original indices
    n_free: int
    root: np.ndarray  # Π^{-1/2}

    def complement(self) -> np.ndarray:
        """S = Π^{-1/2}(P − Q R⁻¹ Qᵀ)Π^{-1/2}, explicitly (n_x × n_x)."""
        S = self.F.T @ self.F
        if self.P is not None:
            S += self.root[:, None] * self.P * self.root[None, :]
        S = 0.5 * (S + S.T)
        if not np.all(np.isfinite(S)):
            raise NotCertified("non-finite Schur complement (R nearly singular)")
        return S

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k largest eigenvalues of S (descending) and unit eigenvectors (n_x × k)."""
        n_x, rank = self.F.shape[1], self.F.shape[0]
        if self.P is None and rank < n_x and k <= rank:
            G = self.F @ self.F.T
            G = 0.5 * (G + G.T)
            if np.all(np.isfinite(G)):
                values, small = la.eigh(G, subset_by_index=[rank - k, rank - 1], driver=EIGH_DRIVER)
                if values[0] > 0:
                    vectors = (self.F.T @ small) / np.sqrt(values)[None, :]
                    return values[::-1], vectors[:, ::-1]
        values, vectors = la.eigh(self.complement(), subset_by_index=[n_x - k, n_x - 1], driver=EIGH_DRIVER)
        return values[::-1], vectors[:, ::-1]

    def maximisers(self, X: np.ndarray) -> np.ndarray:
        """W = −R⁻¹Qᵀ X (original neuron order) for input columns X."""
        rhs = np.zeros((self.chol.shape[0], X.shape[1]))
        rhs[self.n_free :] = self.YJ @ X
        W = np.empty_like(rhs)
        W[self.neurons] = la.solve_triangular(self.chol.T, rhs, lower=False, check_finite=False)
        return W


def _schur_parts(net: Network, lam: np.ndarray, input_weights: np.ndarray | None) -> _DenseParts:
    layout = dense_layout(net)
    H = ordered_dense_assembly(net).matrix(lam)
    n_x, n_free = net.n_x, layout.n_free
    if not np.all(np.isfinite(H)):
        raise NotCertified("non-finite LMI entries")
    try:
        chol = la.cholesky(-H[n_x:, n_x:], lower=True, check_finite=False)
    except la.LinAlgError as exc:
        raise NotCertified("R (the activation block) is not negative definite") from exc
    YJ = la.solve_triangular(chol[n_free:, n_free:], H[:n_x, n_x + n_free :].T, lower=True, check_finite=False)
    root = 1.0 / np.sqrt(input_weights_or_ones(net, input_weights))
    P = None if layout.inputs_block_zero else H[:n_x, :n_x].copy()
    F = YJ * root[None, :]
    if not np.all(np.isfinite(F)):
        raise NotCertified("non-finite Schur complement (R nearly singular)")
    return _DenseParts(P, chol, YJ, F, layout.order[n_x:] - n_x, n_free, root)


def _dense_rho(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> float:
    """ρ* from the dense Schur complement; NotCertified if R is not ≺ 0."""
    return max(float(_schur_parts(net, lam, input_weights).top(1)[0][0]), 0.0)


def _dense_rho_and_gradient(net: Network, lam: np.ndarray) -> tuple[float, np.ndarray]:
    """ρ*(λ) and a Danskin subgradient from the dense complement; (inf, zeros) if R is not ≺ 0.

    ρ*(λ) = max over unit u and all w of zᵀ L(λ, 0) z with z = (u, w), attained at the
    top eigenvector u of S and w = −R⁻¹Qᵀu; L is linear in λ, so (Danskin) the
    derivative in λ_j is zᵀ S_j z = (w_j − α_j v_j)(β_j v_j − w_j) with v = M z.
    """
    try:
        parts = _schur_parts(net, lam, None)
    except NotCertified:
        return float("inf"), np.zeros_like(lam)
    value, vec = parts.top(1)
    u = vec[:, 0]
    w = parts.maximisers(u[:, None])[:, 0]
    v = pre_activation_map(net) @ np.concatenate([u, w])
    return float(value[0]), (w - net.alpha * v) * (net.beta * v - w)


@dataclass(frozen=True)
class SchurEigen:
    """The top eigenpairs of the Schur complement at λ, with each one's Danskin gradient in λ."""

    values: np.ndarray  # (k,) descending; values[0] = ρ*(λ), an estimate (not a bound)
    gradients: np.ndarray  # (k, n_w): row i is ∂θ_i/∂λ at the i-th eigenvector
    vectors: np.ndarray  # (n_x, k) unit eigenvectors of the scaled complement

    @property
    def rho(self) -> float:
        return float(self.values[0])

    @property
    def gradient(self) -> np.ndarray:
        return self.gradients[0]


class SchurOperator:
    """The factorised lifted activation block and the Schur complement as an operator."""

    def __init__(self, net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> None:
        import qdldl

        n_x = net.n_x
        L0 = inner_lmi(net, lam, 0.0, input_weights=None).tocsr()
        self.net = net
        self.P0 = L0[:n_x, :n_x].tocsr()
        Q0 = L0[:n_x, n_x:].tocsr()
        R0 = L0[n_x:, n_x:].tocsr()
        Y = output_map(net)
        C, D = Y[:, :n_x].tocsr(), Y[:, n_x:].tocsr()
        N = sp.bmat([[-R0, D.T], [D, sp.identity(net.n_y, format="csr")]], format="csc")
        N.sort_indices()
        self.U = sp.hstack([-Q0, C.T], format="csr")
        self.Ut = self.U.T.tocsr()
        self.root = 1.0 / np.sqrt(input_weights_or_ones(net, input_weights))
        self.ok = False
        if not (np.all(np.isfinite(N.data)) and np.all(np.isfinite(self.U.data))):
            return
        try:
            self.solver = qdldl.Solver(N)
            _, d, _ = self.solver.factors()
        except (RuntimeError, ValueError):
            return
        self.ok = bool(np.all(d > 0) and np.all(np.isfinite(d)))

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.solver.solve(np.ascontiguousarray(b, dtype=np.float64))

    def matvec(self, v: np.ndarray) -> np.ndarray:
        x = self.root * np.ravel(v)
        return self.root * (self.P0 @ x + self.U @ self.solve(self.Ut @ x))

    def explicit(self) -> np.ndarray:
        """The n_x × n_x scaled complement, column by column (small n_x only)."""
        n_x = self.net.n_x
        S = np.empty((n_x, n_x))
        for i in range(n_x):
            e = np.zeros(n_x)
            e[i] = 1.0
            S[:, i] = self.matvec(e)
        return 0.5 * (S + S.T)

    def maximiser(self, e: np.ndarray) -> np.ndarray:
        """z = (x, w) maximising zᵀL(λ, 0)z for x = Π^{-1/2} e."""
        x = self.root * e
        w = self.solve(-(self.Ut @ x))[: self.net.n_w]
        return np.concatenate([x, w])


def _gradients(net: Network, Z: np.ndarray) -> np.ndarray:
    """Rows (w_j − α_j v_j)(β_j v_j − w_j) for each column z = (x, w) of Z."""
    M = pre_activation_map(net)
    V = M @ Z
    W = Z[net.n_x :]
    grads = (W - net.alpha[:, None] * V) * (net.beta[:, None] * V - W)
    return grads.T.copy()


def _sparse_eigen(
    net: Network, lam: np.ndarray, k: int, input_weights: np.ndarray | None, v0: np.ndarray | None, tol: float
) -> SchurEigen | None:
    op = SchurOperator(net, lam, input_weights)
    if not op.ok:
        return None
    n_x = net.n_x
    k = max(1, min(k, n_x))
    if n_x <= EXPLICIT_INPUTS or k >= n_x - 1:
        S = op.explicit()
        if not np.all(np.isfinite(S)):
            return None
        values, vectors = la.eigh(S, subset_by_index=[n_x - k, n_x - 1])
    else:
        start = np.random.default_rng(0).standard_normal(n_x) if v0 is None else np.asarray(v0, dtype=np.float64)
        linop = spla.LinearOperator((n_x, n_x), matvec=op.matvec, dtype=np.float64)
        ncv = min(n_x, max(2 * k + 1, 20))
        values, vectors = spla.eigsh(linop, k=k, which="LA", v0=start, tol=tol, ncv=ncv, maxiter=100 * n_x)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    if not np.all(np.isfinite(values)):
        return None
    Z = np.column_stack([op.maximiser(vectors[:, i]) for i in range(k)])
    return SchurEigen(values, _gradients(net, Z), vectors)


def _dense_eigen(net: Network, lam: np.ndarray, k: int, input_weights: np.ndarray | None) -> SchurEigen | None:
    """verify._schur_parts' dense complement, its top k eigenpairs and gradients."""
    try:
        parts = _schur_parts(net, lam, input_weights)
    except NotCertified:
        return None
    n_x = net.n_x
    k = max(1, min(k, n_x))
    values, vectors = parts.top(k)
    X = parts.root[:, None] * vectors
    W = parts.maximisers(X)
    return SchurEigen(values, _gradients(net, np.vstack([X, W])), vectors)


def schur_eigen(
    net: Network,
    lam: np.ndarray,
    k: int = 1,
    input_weights: np.ndarray | None = None,
    v0: np.ndarray | None = None,
    tol: float = LANCZOS_TOL,
    dense: bool | None = None,
) -> SchurEigen | None:
    """The top k eigenpairs of the Schur complement at λ and their gradients; None if R is not ≺ 0.

    dense=None picks the dense complement up to DENSE_LIMIT, the sparse operator above.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if net.n_x == 0 or lam.shape != (net.n_w,) or not np.all(np.isfinite(lam)):
        return None
    use_dense = net.lmi_size <= DENSE_LIMIT if dense is None else dense
    with blas_threads(net.lmi_size):
        if use_dense:
            return _dense_eigen(net, lam, k, input_weights)
        return _sparse_eigen(net, lam, k, input_weights, v0, tol)


def schur_rho(
    net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None, sparse: bool | None = None
) -> float:
    """ρ* = λ_max(Π^{-1/2}(P − Q R⁻¹ Qᵀ)Π^{-1/2}) at any size; NotCertified if R is not ≺ 0.

    Float64 estimate only: lipcert.sdp.verify certifies a value above it. sparse: None picks
    the dense complement up to DENSE_LIMIT and the sparse operator above; True/False force one.
    """
    if net.n_x == 0:
        return 0.0
    if not (net.lmi_size > DENSE_LIMIT if sparse is None else sparse):
        return _dense_rho(net, lam, input_weights)
    value = sparse_schur_rho(net, lam, input_weights)
    if not np.isfinite(value):
        raise NotCertified("R (the activation block) is not negative definite")
    return value


def sparse_schur_rho(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> float:
    """ρ*(λ) by the sparse operator at any size (+inf when R is not ≺ 0); an estimate, not a bound."""
    if net.n_x == 0:
        return 0.0
    found = schur_eigen(net, lam, 1, input_weights, dense=False)
    return float("inf") if found is None else max(found.rho, 0.0)


def rho_and_gradient(net: Network, lam: np.ndarray) -> tuple[float, np.ndarray]:
    """ρ*(λ) and a subgradient at any size: (inf, zeros) when R is not ≺ 0."""
    if net.lmi_size <= DENSE_LIMIT:
        return _dense_rho_and_gradient(net, lam)
    found = schur_eigen(net, lam, 1, None)
    if found is None:
        return float("inf"), np.zeros(net.n_w)
    return found.rho, found.gradient
