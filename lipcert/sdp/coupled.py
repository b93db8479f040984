"""Mode (d) of MATH.md §4: one group's tiles in one SDP, one small PSD constraint per tile.

Notation. z = (dx, dw) over the group's network. Tile i lives on the coordinates I_i of z: its
input pixels K_i and its receptive cone N_i; its output rows Y_i partition y with the other
tiles'. The full LMI is L(λ, ρ) = Σ_r [C D]_rᵀ[C D]_r + Σ_j λ_j S_j − ρ EₓᵀEₓ (lipsdp).

Decomposition. Each tile gets its own multipliers λ_ij ≥ 0 for j in N_i, input weights
d_i ≥ 0 on K_i and, for every tile i' it shares coordinates with, a free symmetric slack
Z_ii' on I_i ∩ I_i' (added to tile i, subtracted from tile i'). Its matrix is

    M_i = Σ_{r ∈ Y_i} [C D]_rᵀ[C D]_r + Σ_{j ∈ N_i} λ_ij S_j − diag(d_i) + slacks,

and the SDP asks M_i ⪯ 0 for every i and Σ_{i: k ∈ K_i} d_i(k) ≤ ρ for every pixel k.

Soundness. Every S_j and output term lives on the coordinates of the tile that holds it, so
Σ_i M_i = L(λ, ρ) + (ρ I − D) with λ_j = Σ_{i ∋ j} λ_ij, D = diag(Σ_i d_i) ⪯ ρ I on x, the
slacks cancelling. So if every M_i ⪯ 0, then L(λ, ρ) ⪯ 0. That is only the reason the SDP's
value is an upper bound of the full LipSDP; the bound itself comes from the stitched λ, verified
on the group's full LMI by lipcert.sdp.verify like any other block (ρ*(λ) is exact for that λ,
hence never above the tiles' ρ).

When the tiles' overlap pattern is chordal the SDP equals the full LipSDP; the slacks are what
makes it so (MATH.md §4: 1.328 without them against 1.163 with them, the full value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.network.subnet import subnetwork
from lipcert.sdp.lipsdp import multiplier_terms, slack_map, stacked_maps
from lipcert.sdp.parts import Parts, PsdPart
from lipcert.vocabulary import Method


class TileIndex(Protocol):
    """Where one tile sits in its group's network (lipcert.partition.tiles.Tile is one)."""

    output_index: np.ndarray  # its rows of y
    input_index: np.ndarray  # the pixels it reads, ascending
    neuron_index: np.ndarray  # its receptive cone, ascending


@dataclass(frozen=True)
class Pair:
    """Two tiles sharing coordinates: their positions of the shared ones, in each tile's own order."""

    i: int
    j: int
    loc_i: np.ndarray
    loc_j: np.ndarray


@dataclass(frozen=True)
class TileSpec:
    output_index: np.ndarray
    input_index: np.ndarray
    neuron_index: np.ndarray


def live_part(net: Network, tiles: Sequence[TileIndex]) -> tuple[Network, list[TileIndex], np.ndarray]:
    """The network without the neurons no tile's output depends on, the tiles re-indexed into it,
    and the kept neurons' indices.

    Such neurons (e.g. a border row a strided convolution never reads) change nothing of y, so
    both networks have the same Lipschitz constant; but no tile gives them a multiplier, and a
    zero multiplier would leave the activation block of the verified LMI singular.
    """
    live = np.unique(np.concatenate([np.asarray(t.neuron_index, dtype=np.int64) for t in tiles]))
    if live.size == net.n_w:
        return net, list(tiles), live
    sub = subnetwork(net, np.arange(net.n_x), live, np.arange(net.n_y))
    specs = [TileSpec(t.output_index, t.input_index, np.searchsorted(live, t.neuron_index)) for t in tiles]
    return sub, specs, live


def coordinates(net: Network, tile: TileIndex) -> np.ndarray:
    """The z indices of a tile's local coordinates: its pixels, then its neurons (each ascending)."""
    return np.concatenate([np.asarray(tile.input_index), net.n_x + np.asarray(tile.neuron_index)]).astype(np.int64)


def coupled_parts(net: Network, method: Method, tiles: Sequence[TileIndex], slacks: bool = True) -> Parts:
    """One PSD part −M_i ⪰ 0 per tile over θ = (λ_1, …, λ_m, d_1, …, d_m, slacks, ρ), see the docstring."""
    if Method(method) is not Method.NEURON:
        raise ValueError("coupled tiles split per-neuron multipliers: only lipsdp-neuron")
    check_partition(net, tiles)
    index = [coordinates(net, t) for t in tiles]
    pairs = overlapping_pairs(index) if slacks else []
    n_lam = [int(np.asarray(t.neuron_index).size) for t in tiles]
    n_in = [int(np.asarray(t.input_index).size) for t in tiles]
    n_slack = [p.loc_i.size * (p.loc_i.size + 1) // 2 for p in pairs]
    lam_at = np.concatenate([[0], np.cumsum(n_lam)]).astype(np.int64)
    d_at = lam_at[-1] + np.concatenate([[0], np.cumsum(n_in)]).astype(np.int64)
    z_at = d_at[-1] + np.concatenate([[0], np.cumsum(n_slack)]).astype(np.int64)
    n_theta = int(z_at[-1]) + 1
    terms = multiplier_terms(net, absolute=False)
    _, Y = stacked_maps(net)
    parts = []
    for i, tile in enumerate(tiles):
        G = _tile_terms(net, tile, index[i], terms, int(lam_at[i]), int(d_at[i]), n_theta)
        for p, at in zip(pairs, z_at[:-1]):
            if i in (p.i, p.j):
                loc, sign = (p.loc_i, -1.0) if i == p.i else (p.loc_j, 1.0)  # Z enters M_i with +1: −M_i gets −1
                G = G + _placed(sign * slack_map(index[i].size, loc), int(at), n_theta)
        g = -_output_term(Y, tile, index[i]).ravel(order="F")
        parts.append(PsdPart(G.tocsr(), g, int(index[i].size)))
    lam_map = _stitching(net, tiles, lam_at, n_theta)
    return Parts(
        tuple(parts),
        n_theta,
        int(d_at[-1]),  # multipliers and input weights are ≥ 0; slacks are free
        lam_map,
        linear=_cover_rows(net, tiles, d_at, n_theta),
        sizes=tuple(int(ix.size) for ix in index),
    )


def _tile_terms(
    net: Network, tile: TileIndex, index: np.ndarray, terms: tuple, lam_at: int, d_at: int, n_theta: int
) -> sp.csr_matrix:
    """vec(−(Σ_j λ_ij S_j − diag(d_i))) as a map of θ, in the tile's local coordinates."""
    js, rs, cs, vs = terms
    neurons = np.asarray(tile.neuron_index, dtype=np.int64)
    owned = np.zeros(net.n_w, dtype=bool)
    owned[neurons] = True
    mine = owned[js]
    local = np.full(net.lmi_size, -1, dtype=np.int64)
    local[index] = np.arange(index.size)
    lr, lc = local[rs[mine]], local[cs[mine]]
    if np.any(lr < 0) or np.any(lc < 0):
        raise ValueError("a neuron of the tile reads a coordinate outside the tile: the cone is not closed")
    m = index.size
    cols = lam_at + np.searchsorted(neurons, js[mine])
    k = np.arange(np.asarray(tile.input_index).size)
    rows = np.concatenate([lr + lc * m, k + k * m])
    cols = np.concatenate([cols, d_at + k])
    vals = np.concatenate([-vs[mine], np.ones(k.size)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(m * m, n_theta))


def _output_term(Y: sp.csr_matrix, tile: TileIndex, index: np.ndarray) -> np.ndarray:
    """Σ_{r ∈ Y_i} [C D]_rᵀ[C D]_r restricted to the tile's coordinates (dense, m x m)."""
    rows = Y[np.asarray(tile.output_index, dtype=np.int64)][:, index]
    return (rows.T @ rows).toarray()


def _placed(block: sp.csr_matrix, start: int, n_theta: int) -> sp.csr_matrix:
    """A block of columns placed at θ[start:...]."""
    coo = block.tocoo()
    return sp.csr_matrix((coo.data, (coo.row, coo.col + start)), shape=(block.shape[0], n_theta))


def _stitching(net: Network, tiles: Sequence[TileIndex], lam_at: np.ndarray, n_theta: int) -> sp.csr_matrix:
    """λ'_j = Σ_{i ∋ j} λ'_ij: the per-neuron multipliers of the whole group."""
    rows = np.concatenate([np.asarray(t.neuron_index, dtype=np.int64) for t in tiles])
    cols = np.concatenate([lam_at[i] + np.arange(np.asarray(t.neuron_index).size) for i, t in enumerate(tiles)])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(net.n_w, n_theta))


def _cover_rows(net: Network, tiles: Sequence[TileIndex], d_at: np.ndarray, n_theta: int) -> sp.csr_matrix:
    """Rows of Σ_{i: k ∈ K_i} d_i(k) − ρ ≤ 0, one per pixel some tile reads."""
    pixels = np.concatenate([np.asarray(t.input_index, dtype=np.int64) for t in tiles])
    cols = np.concatenate([d_at[i] + np.arange(np.asarray(t.input_index).size) for i, t in enumerate(tiles)])
    covered, row = np.unique(pixels, return_inverse=True)
    rows = np.concatenate([row, np.arange(covered.size)])
    cols = np.concatenate([cols, np.full(covered.size, n_theta - 1)])
    vals = np.concatenate([np.ones(row.size), -np.ones(covered.size)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(covered.size, n_theta))


# --------------------------------------------------------------------------- slack pairs


def overlapping_pairs(index: Sequence[np.ndarray]) -> list[Pair]:
    """Pairs of tiles that share coordinates of z, minus the pairs a third tile makes redundant."""
    pairs = []
    for i in range(len(index)):
        for j in range(i + 1, len(index)):
            _, loc_i, loc_j = np.intersect1d(index[i], index[j], assume_unique=True, return_indices=True)
            if loc_i.size:
                pairs.append(Pair(i, j, loc_i, loc_j))
    return _prune_pairs(pairs, index)


def _prune_pairs(pairs: list[Pair], index: Sequence[np.ndarray]) -> list[Pair]:
    """Drop a pair (i, j) whose shared set S lies inside a third tile k still paired with both.

    No generality is lost: a slack on S x S between i and j equals a slack from i to k plus one
    from k to j (S is inside both shared sets). For every entry (p, q), the kept pairs among the
    tiles containing p and q stay connected, because each removed edge is replaced by a path
    through such tiles, so every zero-sum redistribution of that entry is still reachable.
    """
    kept = {(p.i, p.j): p for p in pairs}
    neighbours: dict[int, set[int]] = {}
    for p in pairs:
        neighbours.setdefault(p.i, set()).add(p.j)
        neighbours.setdefault(p.j, set()).add(p.i)
    for pair in sorted(pairs, key=lambda p: p.loc_i.size):
        shared = index[pair.i][pair.loc_i]
        for k in sorted(neighbours[pair.i] & neighbours[pair.j]):
            if np.isin(shared, index[k], assume_unique=True).all():
                del kept[(pair.i, pair.j)]
                neighbours[pair.i].discard(pair.j)
                neighbours[pair.j].discard(pair.i)
                break
    return list(kept.values())


def check_partition(net: Network, tiles: Sequence[TileIndex]) -> None:
    """ValueError unless the tiles' output rows partition the network's outputs."""
    rows = np.sort(np.concatenate([np.asarray(t.output_index) for t in tiles])) if tiles else np.zeros(0)
    if rows.size != net.n_y or np.any(rows != np.arange(net.n_y)):
        raise ValueError("the tiles' output rows must partition the network's outputs (each row exactly once)")
