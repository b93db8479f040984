"""Width partition (MATH.md §4): cut a network's output into tiles and extract each tile.

A tile is the sub-network that computes a chosen set of output rows. It keeps the
neurons those rows depend on (their receptive cone, found by walking D then B
backwards) and the input pixels that cone reads. Everything is read off the sparsity
of the form's matrices, so it is exact for any stride, padding, dilation, groups and
residual branch: no convolution geometry is assumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.network.subnet import subnetwork


@dataclass(frozen=True)
class Tile:
    """One width block: `net` maps x[input_index] to y[output_index] exactly.

    `neuron_index` are the cone's neurons, as indices into the parent's w, in the
    order the tile stores them (ascending, which keeps B strictly lower triangular).
    """

    net: Network
    output_index: np.ndarray
    input_index: np.ndarray
    neuron_index: np.ndarray


def range_tiles(n: int, parts: int) -> list[np.ndarray]:
    """Split n outputs into `parts` contiguous, near-equal index ranges."""
    if not 1 <= parts <= n:
        raise ValueError(f"cannot split {n} outputs into {parts} parts: parts must be in [1, {n}]")
    return [np.asarray(chunk, dtype=np.int64) for chunk in np.array_split(np.arange(n), parts)]


def spatial_tiles(shape: tuple[int, ...], rows: int, cols: int) -> list[np.ndarray]:
    """Cut a (C, H, W) output into a rows x cols grid of contiguous spatial tiles.

    Each tile holds every channel at its positions, as flat indices c*H*W + h*W + w
    (torch's C-order flatten), ascending. Tiles are listed row-major over the grid.
    """
    if len(shape) != 3:
        raise ValueError(f"spatial tiles need a (C, H, W) output, found shape {tuple(shape)}")
    channels, height, width = (int(s) for s in shape)
    _check_grid("rows", rows, height)
    _check_grid("cols", cols, width)
    grid = np.arange(channels * height * width).reshape(channels, height, width)
    h_parts = np.array_split(np.arange(height), rows)
    w_parts = np.array_split(np.arange(width), cols)
    return [grid[:, h[0] : h[-1] + 1, w[0] : w[-1] + 1].ravel() for h in h_parts for w in w_parts]


def _check_grid(axis: str, parts: int, extent: int) -> None:
    if not 1 <= parts <= extent:
        raise ValueError(f"{axis}={parts} is out of range: the output has extent {extent}, so use 1..{extent}")


def receptive_cone(net: Network, output_rows: np.ndarray) -> np.ndarray:
    """The neurons that output_rows depend on, ascending: reachable through D, then B transitively."""
    B, D = _csr(net.B), _csr(net.D)
    mask = np.zeros(net.n_w, dtype=bool)
    frontier = _nonzero_columns(D[output_rows])
    mask[frontier] = True
    while frontier.size:
        reached = _nonzero_columns(B[frontier])
        frontier = reached[~mask[reached]]
        mask[frontier] = True
    return np.flatnonzero(mask)


def extract_tile(net: Network, output_rows: Sequence[int] | np.ndarray) -> Tile:
    """The exact sub-network computing y[output_rows] from the input pixels it reads."""
    rows = _checked_rows(net, output_rows)
    cone = receptive_cone(net, rows)
    pixels = np.union1d(_nonzero_columns(_csr(net.A)[cone]), _nonzero_columns(_csr(net.C)[rows])).astype(np.int64)
    return Tile(net=subnetwork(net, pixels, cone, rows), output_index=rows, input_index=pixels, neuron_index=cone)


def _checked_rows(net: Network, output_rows: Sequence[int] | np.ndarray) -> np.ndarray:
    rows = np.asarray(output_rows, dtype=np.int64).ravel()
    if rows.size == 0:
        raise ValueError("a tile needs at least one output row")
    if rows.min() < 0 or rows.max() >= net.n_y:
        raise ValueError(f"output rows must lie in [0, {net.n_y}), found [{rows.min()}, {rows.max()}]")
    if np.unique(rows).size != rows.size:
        raise ValueError("output rows of a tile must be distinct")
    return rows


def _csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix(matrix)


def _nonzero_columns(matrix: sp.spmatrix) -> np.ndarray:
    """Columns holding a nonzero value (explicitly stored zeros do not count)."""
    coo = sp.coo_matrix(matrix)
    return np.unique(coo.col[coo.data != 0]).astype(np.int64)


def block_key(net: Network) -> str:
    """A sha256 of everything a Lipschitz bound of the block depends on.

    Two blocks with the same key have the same matrices A, B, C, D and slope bounds,
    hence the same LipSDP: interior tiles of a convolution (same shape, same stride
    phase) collide on purpose and are solved once. Biases are left out because they
    do not change a Lipschitz constant.
    """
    digest = hashlib.sha256()
    for name, matrix in (("A", net.A), ("B", net.B), ("C", net.C), ("D", net.D)):
        digest.update(name.encode())
        _hash_csr(digest, matrix)
    digest.update(np.ascontiguousarray(net.alpha, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(net.beta, dtype="<f8").tobytes())
    return digest.hexdigest()


def _hash_csr(digest: hashlib._Hash, matrix: sp.spmatrix) -> None:
    """Feed a canonical CSR (summed duplicates, no stored zeros, sorted indices) to the hash."""
    csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    digest.update(np.asarray(csr.shape, dtype="<i8").tobytes())
    digest.update(csr.indptr.astype("<i8").tobytes())
    digest.update(csr.indices.astype("<i8").tobytes())
    # +0.0 turns a stored -0.0 into 0.0; eliminate_zeros has already removed both.
    digest.update((csr.data + 0.0).astype("<f8").tobytes())
