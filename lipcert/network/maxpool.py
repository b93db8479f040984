"""MaxPool as exact network form: windows, then a pairwise tree of max(a, b) = b + ReLU(a - b).

A window of k inputs needs k - 1 ReLU neurons in ceil(log2 k) levels: at each level the
candidates of a window are paired in order, (c0, c1), (c2, c3), ..., and an odd last one
is carried to the next level. Padded positions are -inf for a max, so they are simply
absent from their window; windows differ in size at the borders (and with ceil_mode).

The windows are computed from the pool's attributes, then checked against the pool
itself at random inputs, so a geometry mistake is refused rather than certified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from lipcert.errors import UnsupportedModelError
from lipcert.network.ops import MAXPOOL_LABELS


@dataclass(frozen=True)
class PoolParts:
    pool: nn.Module  # nn.MaxPool1d/2d/3d
    pad: nn.Module | None  # onnx2torch's OnnxPadStatic(-inf) for asymmetric ONNX pads


@dataclass(frozen=True)
class Windows:
    index: np.ndarray  # (n_out, K) flat input index of each window position
    valid: np.ndarray  # (n_out, K) False where the position is padding
    n_in: int  # elements of the pool's input


def maxpool_parts(module: nn.Module) -> PoolParts | None:
    """The pool (and its -inf padding) when the module is a max pool, else None."""
    if type(module).__name__ in MAXPOOL_LABELS:
        return PoolParts(module, None)
    if isinstance(module, nn.Sequential) and len(module) == 2:
        pad, pool = module[0], module[1]
        if type(pad).__name__ == "OnnxPadStatic" and type(pool).__name__ in MAXPOOL_LABELS:
            return PoolParts(pool, pad)
    return None


def _tuple(value: int | tuple[int, ...], rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank


def _extra_pads(name: str, pad: nn.Module | None, rank: int, ndim: int) -> tuple[int, ...]:
    """Begin pads per spatial axis from an OnnxPadStatic (torch order: last axis first)."""
    if pad is None:
        return (0,) * rank
    pads = [int(p) for p in pad.pads]
    if pad.mode != "constant" or not (math.isinf(pad.constant_value) and pad.constant_value < 0):
        raise UnsupportedModelError(f"node '{name}' (MaxPool): its padding is not -inf constant padding")
    pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)]  # axis -1 first
    if any(p != (0, 0) for p in pairs[rank:]) or any(b < 0 or e < 0 for b, e in pairs):
        raise UnsupportedModelError(f"node '{name}' (MaxPool): padding of non-spatial axes or negative pads")
    pairs = pairs + [(0, 0)] * (rank - len(pairs))
    return tuple(pairs[rank - 1 - d][0] for d in range(rank))


def pool_windows(name: str, module: nn.Module, parts: PoolParts, in_shape: tuple[int, ...]) -> tuple[Windows, tuple]:
    """Every output's window (flat input indices, batch of 1), and the output shape."""
    pool, rank = parts.pool, len(in_shape) - 2
    if getattr(pool, "return_indices", False):
        raise UnsupportedModelError(f"node '{name}' (MaxPool): its indices output is not supported")
    with torch.no_grad():
        out_shape = tuple(module(torch.zeros(in_shape, dtype=torch.float64)).shape)
    kernel, stride = _tuple(pool.kernel_size, rank), _tuple(pool.stride or pool.kernel_size, rank)
    padding, dilation = _tuple(pool.padding, rank), _tuple(pool.dilation, rank)
    offset = np.add(padding, _extra_pads(name, parts.pad, rank, len(in_shape)))
    spatial_in, spatial_out = in_shape[2:], out_shape[2:]
    # Per axis d: position j*s - offset + t*dilation of output j and kernel offset t.
    grids = np.meshgrid(*[np.arange(o) for o in spatial_out], *[np.arange(k) for k in kernel], indexing="ij")
    outs, taps = grids[:rank], grids[rank:]
    pos = [outs[d] * stride[d] - offset[d] + taps[d] * dilation[d] for d in range(rank)]
    valid = np.ones(pos[0].shape, dtype=bool)
    flat = np.zeros(pos[0].shape, dtype=np.int64)
    for d in range(rank):
        valid &= (pos[d] >= 0) & (pos[d] < spatial_in[d])
        flat = flat * spatial_in[d] + np.clip(pos[d], 0, spatial_in[d] - 1)
    n_spatial_out, n_taps, n_spatial_in = int(np.prod(spatial_out)), int(np.prod(kernel)), int(np.prod(spatial_in))
    flat, valid = flat.reshape(n_spatial_out, n_taps), valid.reshape(n_spatial_out, n_taps)
    channels = in_shape[1]
    index = (np.arange(channels)[:, None, None] * n_spatial_in + flat[None]).reshape(-1, n_taps)
    valid = np.broadcast_to(valid[None], (channels, *valid.shape)).reshape(-1, n_taps)
    windows = Windows(index, valid, channels * n_spatial_in)
    if not windows.valid.any(axis=1).all():
        raise UnsupportedModelError(f"node '{name}' (MaxPool): a window covers padding only (its output is -inf)")
    _check_windows(name, module, windows, in_shape)
    return windows, out_shape


def _check_windows(name: str, module: nn.Module, windows: Windows, in_shape: tuple[int, ...]) -> None:
    """The maximum over the computed windows must equal the pool's output, exactly."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(in_shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            expected = module(x).reshape(-1).numpy()
        values = np.where(windows.valid, x.reshape(-1).numpy()[windows.index], -np.inf)
        if not np.array_equal(values.max(axis=1), expected):
            raise UnsupportedModelError(
                f"node '{name}' (MaxPool): lipcert's windows do not reproduce the pool (please report it)"
            )


@dataclass(frozen=True)
class MaxTree:
    gather: sp.csr_matrix  # (candidates, n_in): each window's inputs, window by window
    levels: list[tuple[sp.csr_matrix, sp.csr_matrix]]  # per level: (pick_a, pick_b), next x current


def window_max_tree(windows: Windows) -> MaxTree:
    """The pairing of every window's candidates, level by level (all windows in parallel)."""
    owner, col = np.nonzero(windows.valid)
    inputs = windows.index[owner, col]
    gather = sp.csr_matrix((np.ones(inputs.size), (np.arange(inputs.size), inputs)), shape=(inputs.size, windows.n_in))
    levels = []
    while True:
        counts = np.bincount(owner, minlength=windows.index.shape[0])
        if counts.max() <= 1:
            break
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(owner.size) - first[owner]
        is_a = (rank % 2 == 0) & (rank + 1 < counts[owner])
        carried = (rank % 2 == 0) & ~is_a
        a = np.flatnonzero(is_a)
        keep = np.sort(np.concatenate([a, np.flatnonzero(carried)]))  # next candidates, in order
        n_next, n_now = keep.size, owner.size
        is_pair = is_a[keep]
        rows = np.arange(n_next)
        pick_a = sp.csr_matrix((np.ones(is_pair.sum()), (rows[is_pair], keep[is_pair])), shape=(n_next, n_now))
        b = np.where(is_pair, keep + 1, keep)  # a pair's b, or the carried candidate itself
        pick_b = sp.csr_matrix((np.ones(n_next), (rows, b)), shape=(n_next, n_now))
        levels.append((pick_a, pick_b))
        owner = owner[keep]
    return MaxTree(gather.tocsr(), levels)


def overlap_constant(windows: Windows) -> float:
    """L of the pool alone: sqrt of the largest number of windows sharing one input (1 when disjoint)."""
    shared = np.bincount(windows.index[windows.valid])
    return float(np.sqrt(shared.max()))
