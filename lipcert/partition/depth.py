"""Depth partition (MATH.md §4): cut the network between layers and bound each group.

A cut before layer k is valid when everything after it (layers >= k and the output)
reads only the activations of layer k-1 and later ones. Then f = g_2 o g_1 with
g_1: x -> w_{k-1}, and L(f) <= L(g_1) L(g_2). The test reads the sparsity of A, B, C
and D, so a residual connection that jumps over k (or an output that reads x)
makes k invalid whatever the architecture looks like.

The same test at k = len(layers) says whether the output y can be cut off the last
activation layer: y = D_last w_last (C = 0, D reads no earlier layer). Then the output
map is a group of its own (output_map, no neurons, L = ||D_last||), and the group that
ends at the last layer outputs that layer's activations (depth_group(..., to_activations=True)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Layer, Network


@dataclass(frozen=True)
class _Reads:
    """What each layer, and the output, reads: the input x, and the earliest layer."""

    layer_reads_x: np.ndarray  # bool, per layer
    layer_earliest: np.ndarray  # int, per layer: earliest layer read through B (len(layers) = none)
    output_reads_x: bool
    output_earliest: int


def valid_cuts(net: Network) -> list[int]:
    """Layer indices k (0 < k < len(layers)) before which the network can be cut in depth."""
    reads = _reads(net)
    return [k for k in range(1, len(net.layers)) if _cut_violation(net, reads, k) is None]


def depth_group(net: Network, first: int, last: int, *, to_activations: bool = False) -> Network:
    """The sub-network of layers first..last (inclusive).

    Its input is x when first == 0, else the activations of layer first-1. Its output is
    the activations of layer `last` (an exact selector) unless `last` is the final layer,
    whose group also carries the output map y = C x + D w restricted to the group. With
    to_activations, a group ending at the final layer outputs that layer's activations
    too; the output map is then output_map(net), and the cut after the final layer must be
    valid (output_map_refusal), else ValueError.
    """
    n_layers = len(net.layers)
    if not 0 <= first <= last < n_layers:
        raise ValueError(f"need 0 <= first <= last < {n_layers}, found first={first}, last={last}")
    reads = _reads(net)
    for cut in (first, last + 1):
        if 0 < cut < n_layers and (reason := _cut_violation(net, reads, cut)) is not None:
            raise ValueError(f"cannot cut before layer {cut} ({net.layers[cut].name!r}): {reason}")
    ends_in_y = last == n_layers - 1 and not to_activations
    if last == n_layers - 1 and to_activations and (reason := _output_refusal(net, reads)) is not None:
        raise ValueError(f"cannot cut the output map off the last layer: {reason}")
    return _group(net, first, last, ends_in_y)


def output_map_refusal(net: Network) -> str | None:
    """Why y cannot be a group of its own (it must read only the last activation layer), or None."""
    if not net.layers:
        return "the network has no activation layers"
    return _output_refusal(net, _reads(net))


def output_map(net: Network) -> Network:
    """The output group: y = D_last w_last + bias_y, from the last layer's activations, no neurons.

    Its Lipschitz constant is exactly ||D_last||. ValueError when output_map_refusal(net) says why not.
    """
    if (reason := output_map_refusal(net)) is not None:
        raise ValueError(f"cannot cut the output map off the last layer: {reason}")
    source = net.layers[-1]
    return Network(
        A=sp.csr_matrix((0, source.size)),
        B=sp.csr_matrix((0, 0)),
        C=sp.csr_matrix(sp.csr_matrix(net.D)[:, source.start : source.stop]),
        D=sp.csr_matrix((net.n_y, 0)),
        bias_v=np.zeros(0),
        bias_y=np.asarray(net.bias_y),
        layers=(),
        input_shape=tuple(source.shape),
        output_shape=tuple(net.output_shape),
    )


def _output_refusal(net: Network, reads: _Reads) -> str | None:
    last = len(net.layers) - 1
    if reads.output_reads_x:
        return "the output reads the network input x"
    if reads.output_earliest < last:
        src = reads.output_earliest
        return (
            f"the output reads layer {src} ({net.layers[src].name!r}), not only the last layer "
            f"{last} ({net.layers[last].name!r})"
        )
    return None


def _group(net: Network, first: int, last: int, ends_in_y: bool) -> Network:
    lo, hi = net.layers[first].start, net.layers[last].stop
    A, B, C, D = (sp.csr_matrix(m) for m in (net.A, net.B, net.C, net.D))
    source = None if first == 0 else net.layers[first - 1]
    group_A = A[lo:hi] if source is None else B[lo:hi, source.start : source.stop]
    input_shape = net.input_shape if source is None else source.shape
    if ends_in_y:
        group_C = C if source is None else D[:, source.start : source.stop]
        group_D, bias_y, output_shape = D[:, lo:hi], np.asarray(net.bias_y), net.output_shape
    else:
        out = net.layers[last]
        group_C = sp.csr_matrix((out.size, group_A.shape[1]))
        group_D = _selector(out.size, out.start - lo, hi - lo)
        bias_y, output_shape = np.zeros(out.size), out.shape
    return Network(
        A=sp.csr_matrix(group_A),
        B=sp.csr_matrix(B[lo:hi, lo:hi]),
        C=sp.csr_matrix(group_C),
        D=group_D,
        bias_v=np.asarray(net.bias_v)[lo:hi],
        bias_y=bias_y,
        layers=_shift_layers(net.layers[first : last + 1], lo),
        input_shape=tuple(input_shape),
        output_shape=tuple(output_shape),
    )


def _selector(size: int, offset: int, n_w: int) -> sp.csr_matrix:
    """The 0/1 matrix reading neurons offset..offset+size of a group with n_w neurons."""
    rows = np.arange(size)
    return sp.csr_matrix((np.ones(size), (rows, rows + offset)), shape=(size, n_w))


def _shift_layers(layers: tuple[Layer, ...], offset: int) -> tuple[Layer, ...]:
    return tuple(dataclasses.replace(lay, start=lay.start - offset, stop=lay.stop - offset) for lay in layers)


def _layer_of(net: Network, neurons: np.ndarray) -> np.ndarray:
    stops = np.array([layer.stop for layer in net.layers], dtype=np.int64)
    return np.searchsorted(stops, neurons, side="right")


def _reads(net: Network) -> _Reads:
    n_layers = len(net.layers)
    A, B, C, D = (sp.coo_matrix(m) for m in (net.A, net.B, net.C, net.D))
    reads_x = np.zeros(n_layers, dtype=bool)
    reads_x[_layer_of(net, A.row[A.data != 0])] = True
    earliest = np.full(n_layers, n_layers, dtype=np.int64)
    live = B.data != 0
    np.minimum.at(earliest, _layer_of(net, B.row[live]), _layer_of(net, B.col[live]))
    out_cols = D.col[D.data != 0]
    out_earliest = int(_layer_of(net, out_cols).min()) if out_cols.size else n_layers
    return _Reads(reads_x, earliest, bool(np.any(C.data != 0)), out_earliest)


def _cut_violation(net: Network, reads: _Reads, k: int) -> str | None:
    """Why the cut before layer k is invalid (naming the culprit), or None if it is valid."""
    for j in range(k, len(net.layers)):
        name = net.layers[j].name
        if reads.layer_reads_x[j]:
            return f"layer {j} ({name!r}) reads the network input x"
        if reads.layer_earliest[j] < k - 1:
            src = int(reads.layer_earliest[j])
            return f"layer {j} ({name!r}) reads layer {src} ({net.layers[src].name!r}), which is before the cut"
    if reads.output_reads_x:
        return "the output reads the network input x"
    if reads.output_earliest < k - 1:
        src = reads.output_earliest
        return f"the output reads layer {src} ({net.layers[src].name!r}), which is before the cut"
    return None
