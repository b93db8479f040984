"""Certified linear algebra in float64: PSD certificates and spectral-norm bounds.

A Cholesky factorisation that completes in floating point proves positive
semidefiniteness once its backward error is accounted for (Demmel 1989): the computed
factor R satisfies R^T R = H + E with |E| <= gamma_{n+1} |R^T| |R|, hence
||E||_2 <= gamma_{n+1} ||R||_F^2. Factoring H - s I with s above that bound proves H >= 0.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from lipcert.defaults import DENSE_GRAM_LIMIT, SINGLE_THREAD_BELOW

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2


def gamma(k: int) -> float:
    """Higham's gamma_k = k u / (1 - k u), the standard rounding-error constant."""
    ku = k * UNIT_ROUNDOFF
    return ku / (1.0 - ku)


def certify_psd(H: np.ndarray) -> bool:
    """True only if H (dense, symmetric, float64) is proven positive semidefinite.

    False means "not proven", not "indefinite".
    """
    n = H.shape[0]
    if n == 0:
        return True
    if not np.all(np.isfinite(H)):
        return False
    diag = np.diag(H)
    if np.any(diag < 0):
        return False
    shift = 2.0 * gamma(n + 1) * float(diag.sum()) + np.finfo(np.float64).tiny
    try:
        R = la.cholesky(H - shift * np.eye(n), lower=False, check_finite=False)
    except la.LinAlgError:
        return False
    backward_error = gamma(n + 1) * float(np.sum(R * R)) * (1.0 + 1e-6)
    return shift >= backward_error


def round_up(value: float) -> float:
    """The next float above value, so that a final conversion cannot round a bound down."""
    return float(np.nextafter(value, np.inf))


def _gram(M: sp.spmatrix | np.ndarray) -> tuple[np.ndarray, float]:
    """Dense Gram matrix of M's smaller side and a bound on its rounding error (2-norm)."""
    M = sp.csr_matrix(M, dtype=np.float64)
    G = (M @ M.T) if M.shape[0] <= M.shape[1] else (M.T @ M)
    inner = max(M.shape)
    err = gamma(inner) * float(M.multiply(M).sum())  # || |M|^T |M| ||_2 <= ||M||_F^2
    return np.asarray(G.toarray()), err


def largest_eigenvalue_estimate(G: np.ndarray) -> float:
    """An estimate (not a bound) of lambda_max of a symmetric matrix."""
    n = G.shape[0]
    if n <= 400:
        return float(la.eigvalsh(G, subset_by_index=[n - 1, n - 1])[0])
    # A fixed start vector: ARPACK's own changes from call to call within a process, so the
    # estimate, and with it the certified bound, would depend on what the process ran before.
    v0 = np.random.default_rng(0).standard_normal(n)
    value = spla.eigsh(G, k=1, which="LA", return_eigenvectors=False, tol=1e-10, v0=v0)
    return float(value[0])


def certified_lambda_max(G: np.ndarray, err: float = 0.0) -> float:
    """An upper bound on lambda_max(G_true) where ||G - G_true||_2 <= err.

    Lanczos gives an estimate t; a Cholesky certificate of t I - G proves it.
    """
    n = G.shape[0]
    if n == 0:
        return 0.0
    scale = max(float(np.abs(np.diag(G)).max()), np.finfo(np.float64).tiny)
    t = largest_eigenvalue_estimate(G)
    t = t + 1e-9 * abs(t) + 1e-12 * scale
    for _ in range(60):
        if certify_psd(t * np.eye(n) - G):
            return round_up(t + err)
        t = t + max(abs(t), scale) * 1e-6 * 4.0**_
    raise ArithmeticError("could not certify an eigenvalue bound")


_NORMS: dict[bytes, float] = {}  # content digest -> certified norm, for the matrices a run sees again


def spectral_norm_upper(M: sp.spmatrix | np.ndarray) -> float:
    """A certified upper bound on ||M||_2 (largest singular value).

    Remembered by the matrix's content (shape, pattern and values after sorting): a deterministic
    function, so a repeat gives the same bits. The report's per-group naive bounds ask for the maps
    the whole network's naive bound just certified (resnet_2b: 15 s of Gram matrices again).
    """
    M = sp.csr_matrix(M, dtype=np.float64)
    if not M.has_canonical_format:
        M = M.copy()  # not the caller's arrays
        M.sum_duplicates()
    digest = hashlib.blake2b(repr(M.shape).encode(), digest_size=20)
    for part in (M.indptr, M.indices, M.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    key = digest.digest()
    if key not in _NORMS:
        if len(_NORMS) >= 256:
            _NORMS.pop(next(iter(_NORMS)))
        _NORMS[key] = _spectral_norm_upper(M)
    return _NORMS[key]


def _spectral_norm_upper(M: sp.csr_matrix) -> float:
    if M.nnz == 0:
        return 0.0
    if min(M.shape) > DENSE_GRAM_LIMIT:
        return _holder_bound(M)
    G, err = _gram(M)
    return round_up(np.sqrt(certified_lambda_max(G, err)))


def _holder_bound(M: sp.csr_matrix) -> float:
    """||M||_2 <= sqrt(||M||_1 ||M||_inf): sound everywhere, loose; used only for huge maps."""
    absM = abs(M)
    one = float(absM.sum(axis=0).max())
    inf = float(absM.sum(axis=1).max())
    return round_up(np.sqrt(one * inf) * (1.0 + gamma(max(M.shape))))


def spectral_norm_lower(M: sp.spmatrix | np.ndarray, seed: int = 0) -> float:
    """A power-iteration (Lanczos) estimate of ||M||_2. It is a LOWER estimate only."""
    M = sp.csr_matrix(M, dtype=np.float64)
    if M.nnz == 0:
        return 0.0
    if min(M.shape) <= 2:
        return float(np.linalg.norm(M.toarray(), 2))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(M.shape))
    s = spla.svds(M, k=1, return_singular_vectors=False, v0=v0)
    return float(s[0])


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
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
