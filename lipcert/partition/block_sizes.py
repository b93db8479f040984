"""LMI block sizes of a plan's tiles, computed from sparsity patterns without extracting any tile.

A tile's LMI has side |K_i| + |N_i| (pixels read plus cone neurons). A group solved as
one block (a single tile) is a plain LipSDP, whose inputs the solver compresses to
rank([A; C]) <= rows of [A; C] that read the input (sdp.lipsdp.compress_inputs), so its
effective side is min(|K|, those rows) + |N|. Tiles of a multi-tile group are not
compressed: the coupled SDP shares per-pixel input weights between tiles, which a change
of input coordinates would break.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.partition.depth import depth_group
from lipcert.partition.geometry import group_network, group_tiles, output_tiles, span_output_shape
from lipcert.partition.plan_types import Plan, Tiling


def block_size(block: Network, compress: bool = True) -> int:
    """LMI side of one block; with compress, inputs count as min(n_x, rows of [A; C] reading x)."""
    if not compress:
        return block.n_x + block.n_w
    reads_x = sp.vstack([block.A, block.C], format="csr")
    reads_x.eliminate_zeros()
    live = int(np.count_nonzero(np.diff(reads_x.indptr)))
    return min(block.n_x, live) + block.n_w


def tile_block_sizes(group: Network, tiles: Sequence[np.ndarray], compress: bool = True) -> np.ndarray:
    """LMI side of each tile of a depth group, equal to block_size(extract_tile(group, t).net).

    Inputs count as compressed only when the group is one tile (see the module docstring).
    """
    return _tile_sizes(_pattern(group), tiles, compress and len(tiles) == 1)


def plan_block_sizes(net: Network, plan: Plan, compress: bool = True) -> list[np.ndarray]:
    """Per group, the LMI side of each of its tiles (of group_network(net, group, plan))."""
    return [
        tile_block_sizes(group_network(net, group, plan), group_tiles(net, group, plan), compress)
        for group in plan.groups
    ]


class GroupSizer:
    """Largest block of one candidate group (layers first..last) per tiling, cached.

    Each evaluation costs sparse products, and auto_plan's search asks for the same
    tilings repeatedly. to_activations: the group is followed by the output group (it
    matters only when `last` is the final layer; see depth.depth_group).
    """

    def __init__(self, net: Network, first: int, last: int, compress: bool, to_activations: bool = False) -> None:
        self.shape = span_output_shape(net, last, to_activations)
        self._pattern = _pattern(depth_group(net, first, last, to_activations=to_activations))
        self._compress = compress
        self._cache: dict[Tiling, int] = {}

    def largest(self, tiling: Tiling) -> int:
        if tiling not in self._cache:
            tiles = output_tiles(self.shape, tiling)
            sizes = _tile_sizes(self._pattern, tiles, self._compress and len(tiles) == 1)
            self._cache[tiling] = int(sizes.max())
        return self._cache[tiling]

    def smallest_seen(self) -> tuple[Tiling, int]:
        """Of the tilings tried, the one with the smallest largest block (coarser on ties), and that block."""
        tiling = min(self._cache, key=lambda t: (self._cache[t], math.prod(t)))
        return tiling, self._cache[tiling]


# --------------------------------------------------------------------------- sparsity patterns


@dataclass(frozen=True)
class _Pattern:
    """0/1 sparsity of a depth group: sizes every tile at once without extracting it."""

    A: sp.csr_matrix
    C: sp.csr_matrix
    D: sp.csr_matrix
    B_rows: tuple[sp.csr_matrix, ...]  # B's rows of each layer, last layer first
    bounds: tuple[tuple[int, int], ...]  # (start, stop) of each layer, last layer first
    a_live: np.ndarray  # 1.0 where a neuron reads x
    c_live: np.ndarray  # 1.0 where an output reads x
    block_triangular: bool  # no neuron reads its own layer: one backward sweep closes a cone


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.data = (out.data != 0).astype(np.float64)
    out.eliminate_zeros()
    return out


def _pattern(net: Network) -> _Pattern:
    A, B, C, D = (_binary(m) for m in (net.A, net.B, net.C, net.D))
    bounds = tuple((layer.start, layer.stop) for layer in reversed(net.layers))
    own_layer = sum(B[lo:hi, lo:hi].nnz for lo, hi in bounds)
    return _Pattern(
        A=A,
        C=C,
        D=D,
        B_rows=tuple(B[lo:hi] for lo, hi in bounds),
        bounds=bounds,
        a_live=(np.diff(A.indptr) > 0).astype(np.float64),
        c_live=(np.diff(C.indptr) > 0).astype(np.float64),
        block_triangular=own_layer == 0,
    )


def _indicator(tiles: Sequence[np.ndarray], n: int) -> sp.csr_matrix:
    rows = np.concatenate([np.full(len(t), i) for i, t in enumerate(tiles)])
    cols = np.concatenate([np.asarray(t, dtype=np.int64) for t in tiles])
    return sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(tiles), n))


def _close_cones(pat: _Pattern, reached: sp.csr_matrix) -> sp.csr_matrix:
    """Add to each row every neuron its neurons read, transitively (the receptive cone)."""
    while True:
        before = reached.nnz
        for (lo, hi), rows in zip(pat.bounds, pat.B_rows):
            layer_part = reached[:, lo:hi]
            if layer_part.nnz:
                reached = _binary(reached + layer_part @ rows)
        # Layers are swept last to first, so one sweep suffices unless a layer reads itself.
        if pat.block_triangular or reached.nnz == before:
            return reached


def _tile_sizes(pat: _Pattern, tiles: Sequence[np.ndarray], compress: bool) -> np.ndarray:
    T = _indicator(tiles, pat.D.shape[0])
    cones = _close_cones(pat, _binary(T @ pat.D))
    n_neurons = np.diff(cones.indptr)
    n_pixels = np.diff(_binary(cones @ pat.A + T @ pat.C).indptr)
    if not compress:
        return n_neurons + n_pixels
    live = np.rint(cones @ pat.a_live + T @ pat.c_live).astype(np.int64)
    return n_neurons + np.minimum(n_pixels, live)
