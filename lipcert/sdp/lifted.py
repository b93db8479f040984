"""The LipSDP matrix with its output term lifted out, so that it stays sparse at any size.

−L(λ, ρ) = K − YᵀY with Y = [C D] and K = −L₀(λ, ρ), L₀ the LMI of the same network with
its outputs removed (C = D = 0), built by the one assembly `lipsdp.lmi_matrix`. YᵀY can be
dense even when Y is sparse: verivital's average pool + Gemm couple 18 432 neurons to each
other (340 M entries), while Y has 184 k. The lifted matrix over (z, y),

    G(λ, ρ) = [[K, Yᵀ], [Y, I]],

is congruent to diag(K − YᵀY, I) (eliminate y: [[I, −Yᵀ], [0, I]] G [[I, 0], [−Y, I]]), so
G ⪰ 0 ⟺ −L(λ, ρ) ⪰ 0 exactly, and G ≻ 0 on the (w, y) coordinates ⟺ R(λ) ≺ 0. Y and I are
copied, not computed: only K carries rounding, bounded by the magnitudes of L₀'s terms.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.sdp.lipsdp import DenseAssembly, lmi_matrix, multiplier_terms, stacked_maps

T = TypeVar("T")


def without_outputs(net: Network) -> Network:
    """The same neurons with C = D = 0: its LMI is L(λ, ρ) without the [C D]ᵀ[C D] term."""
    return replace(
        net,
        C=sp.csr_matrix(net.C.shape, dtype=np.float64),
        D=sp.csr_matrix(net.D.shape, dtype=np.float64),
        bias_y=np.zeros(net.n_y),
        ops=(),
    )


_CACHE: dict[tuple[int, str], tuple[weakref.ref, object]] = {}  # (id(net), what) -> (weak reference, value)


def per_network(net: Network, what: str, build: Callable[[Network], T]) -> T:
    """build(net), cached per network object and name (by identity: a Network holds arrays and
    does not hash), for a few networks at a time."""
    hit = _CACHE.get((id(net), what))
    if hit is not None and hit[0]() is net:
        return hit[1]
    value = build(net)
    for key in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[key]
    if len(_CACHE) >= 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[(id(net), what)] = (weakref.ref(net), value)
    return value


def _build_parts(net: Network) -> tuple[Network, sp.csr_matrix, sp.csr_matrix]:
    M, Y = stacked_maps(net)
    return without_outputs(net), M, Y


def _parts(net: Network) -> tuple[Network, sp.csr_matrix, sp.csr_matrix]:
    """(network without outputs, M = [A B], Y = [C D])."""
    return per_network(net, "parts", _build_parts)


@dataclass(frozen=True)
class DenseLayout:
    """How schur.py's dense path orders L(λ, 0): inputs, then the n_free neurons that no entry of
    the x–w block Q touches (for any λ), then those it does (J). With J last in the Cholesky of −R,
    Q R⁻¹ Qᵀ needs only the factor's trailing block; on chains J is the first layer.
    inputs_block_zero: no term reaches the x–x block P(λ, 0) (ReLU or tanh wherever x is read, and
    C = 0), so that the complement is a Gram matrix of rank at most |J|."""

    order: np.ndarray
    n_free: int
    inputs_block_zero: bool


def dense_layout(net: Network) -> DenseLayout:
    return per_network(net, "dense layout", _dense_layout)


def ordered_dense_assembly(net: Network) -> DenseAssembly:
    """L(λ, 0)[order][:, order] (dense_layout's order) as a dense array for many λ (the descent's
    estimates), built once per network."""
    return per_network(net, "ordered dense assembly", lambda n: DenseAssembly.of(n, dense_layout(n).order))


def _dense_layout(net: Network) -> DenseLayout:
    _, rs, cs, _ = multiplier_terms(net, absolute=False)
    Y = stacked_maps(net)[1].tocsr()
    n_x = net.n_x
    coupled = np.zeros(net.n_w, dtype=bool)
    for r, c in ((rs, cs), (cs, rs)):
        hit = (r < n_x) & (c >= n_x)
        coupled[c[hit] - n_x] = True
    reads_x = np.unique(Y[:, :n_x].nonzero()[0])  # outputs that read an input: [C D]ᵀ[C D] couples
    coupled[Y[reads_x, n_x:].nonzero()[1]] = True  # those inputs with every neuron they read
    neurons = np.arange(net.n_w)
    order = np.concatenate([np.arange(n_x), n_x + neurons[~coupled], n_x + neurons[coupled]])
    zero = reads_x.size == 0 and not np.any((rs < n_x) & (cs < n_x))
    return DenseLayout(order, int((~coupled).sum()), bool(zero))


def output_map(net: Network) -> sp.csr_matrix:
    return _parts(net)[2]


def pre_activation_map(net: Network) -> sp.csr_matrix:
    return _parts(net)[1]


def inner_lmi(
    net: Network, lam: np.ndarray, rho: float, input_weights: np.ndarray | None = None, absolute: bool = False
) -> sp.csr_matrix:
    """L₀(λ, ρ) (or its term magnitudes): lmi_matrix of the network without outputs."""
    return lmi_matrix(_parts(net)[0], lam, rho, input_weights, absolute=absolute)


def lifted_matrix(net: Network, lam: np.ndarray, rho: float, input_weights: np.ndarray | None = None) -> sp.csc_matrix:
    """G(λ, ρ) = [[−L₀(λ, ρ), Yᵀ], [Y, I]] over (x, w, y), exactly symmetric.

    L₀'s summation of duplicate terms need not be in the same order for (p, q) and (q, p),
    so its upper triangle is taken and mirrored: each entry is one computed sum either way.
    """
    K = -inner_lmi(net, lam, rho, input_weights)
    Y = output_map(net)
    G = sp.bmat([[K, Y.T], [Y, sp.identity(net.n_y, format="csr")]], format="csc")
    return symmetric_from_upper(G)


def symmetric_from_upper(H: sp.spmatrix) -> sp.csc_matrix:
    upper = sp.triu(H, k=0, format="csc")
    strict = sp.triu(H, k=1, format="csc")
    out = (upper + strict.T).tocsc()
    out.sort_indices()
    return out
