"""The naive bound: products of certified operator norms, propagated through the form.

For layer k, v_k = A_k x + sum_{j<k} B_kj w_j, so (triangle inequality and composition)

    L(v_k) <= ||A_k|| + sum_j ||B_kj|| L(w_j),      L(w_k) <= max(|alpha_k|, |beta_k|) L(v_k),
    L(y)   <= ||C||   + sum_j ||D_j||  L(w_j).

On a chain this is the product of the layers' spectral norms; on a residual block
x + g(x) it is 1 + L(g). Every operation rounds up, so the result is a certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp

from lipcert.linalg import round_up, spectral_norm_upper
from lipcert.network.form import Network


@dataclass(frozen=True)
class NaiveBound:
    bound: float
    layer_bounds: tuple[float, ...]  # certified L(w_k) per layer


def naive_bound(net: Network) -> float:
    return naive_details(net).bound


def naive_details(net: Network) -> NaiveBound:
    lips: list[float] = []
    for k, layer in enumerate(net.layers):
        rows = slice(layer.start, layer.stop)
        pre = _reads(net.A[rows], net.B[rows], net, k)
        slope = max(abs(layer.alpha), abs(layer.beta))
        pre_bound = _sum_up(norm * lip for norm, lip in _terms(pre, lips))
        lips.append(round_up(slope * pre_bound))
    out = _reads(net.C, net.D, net, len(net.layers))
    return NaiveBound(_sum_up(norm * lip for norm, lip in _terms(out, lips)), tuple(lips))


def _reads(x_part: sp.csr_matrix, w_part: sp.csr_matrix, net: Network, upto: int) -> list[sp.csr_matrix]:
    """The blocks a set of rows reads: from x, then from each earlier layer."""
    w_part = sp.csc_matrix(w_part)
    return [x_part] + [w_part[:, layer.start : layer.stop] for layer in net.layers[:upto]]


def _terms(blocks: list[sp.spmatrix], lips: list[float]) -> list[tuple[float, float]]:
    sources = [1.0, *lips]  # L(x) = 1
    return [(spectral_norm_upper(b), src) for b, src in zip(blocks, sources) if b.nnz]


def _sum_up(values) -> float:  # noqa: ANN001 - any iterable of floats
    total = 0.0
    for value in values:
        total = round_up(total + round_up(value))
    return total
