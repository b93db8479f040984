"""LipSDP-Neuron of a whole network, solved over the cliques of a chordal extension of its LMI.

The LMI L(λ, ρ) of MATH.md §2 is sparse: z_p and z_q interact only when a neuron reads
the other coordinate, when both feed one output, or through one neuron's pre-activation
(α β ≠ 0). Eliminating the coordinates in some order and adding the fill gives a chordal
pattern E ⊇ pattern(L) whose maximal cliques C_1..C_m form a tree with the running
intersection property. Agler's theorem: a matrix with chordal pattern E is ⪯ 0 iff it
is a sum Σ_c E_cᵀ X_c E_c of matrices X_c ⪯ 0 supported on the cliques. So

    min ρ  s.t.  X_c = P_c(L(λ, ρ)) + Σ_{tree edges e ∋ c} ±Z_e ⪯ 0  for every clique c,

where P_c keeps the entries of L assigned to clique c (each entry to one clique that
contains it) and Z_e is a free symmetric matrix on the separator of tree edge e (added
to the child, subtracted from the parent), has exactly the value of the full LipSDP,
with PSD constraints the size of the cliques instead of the whole LMI. Convolutions keep
the cliques small (a neuron reads a few pixels); a dense layer makes everything it
reads one clique.

Soundness does not rest on the decomposition: the multipliers λ the solver returns are
polished and verified on the full LMI in float64 (lipcert.sdp.verify), exactly as for a
single-block solve. That costs one dense factorization of the full LMI, so the method
is for networks whose full LMI can be factorized once (up to a few thousand), but not
solved by SCS (hundreds of eigendecompositions of it).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.sdp.lipsdp import coefficient_matrix, lmi_pattern, slack_map, stacked_maps
from lipcert.sdp.parts import Parts, PsdPart, prefix_map
from lipcert.vocabulary import Method


@dataclass(frozen=True)
class CliqueTree:
    """Maximal cliques of a chordal extension, each a sorted array of z indices, and their tree."""

    cliques: tuple[np.ndarray, ...]
    parent: tuple[int, ...]  # -1 for a root
    separators: tuple[np.ndarray, ...]  # clique c's shared coordinates with parent[c] (empty at a root)
    owner: np.ndarray  # per coordinate: the clique that holds the entries it is eliminated with
    position: np.ndarray  # per coordinate: its place in the elimination order

    @property
    def largest(self) -> int:
        return max((c.size for c in self.cliques), default=0)

    @property
    def cost(self) -> float:
        """Σ |C|³: the eigendecomposition work per SCS iteration, up to a constant."""
        return float(sum(float(c.size) ** 3 for c in self.cliques))


# --------------------------------------------------------------------------- the chordal extension


def elimination_order(pattern: sp.csr_matrix) -> np.ndarray:
    """Greedy minimum degree: eliminate the coordinate with the fewest neighbours, fill, repeat.

    Ties go to the lowest index, so the order (and the cliques) are deterministic.
    """
    n = pattern.shape[0]
    adj = [set(pattern.indices[pattern.indptr[v] : pattern.indptr[v + 1]].tolist()) - {v} for v in range(n)]
    heap = [(len(a), v) for v, a in enumerate(adj)]
    heapq.heapify(heap)
    done = np.zeros(n, dtype=bool)
    order = []
    while heap:
        degree, v = heapq.heappop(heap)
        if done[v] or degree != len(adj[v]):
            continue  # a stale entry: v was eliminated, or its degree changed since
        done[v] = True
        order.append(v)
        nbrs = adj[v]
        for u in nbrs:
            adj[u].discard(v)
            adj[u].update(nbrs)
            adj[u].discard(u)
            heapq.heappush(heap, (len(adj[u]), u))
        adj[v] = set()
    return np.asarray(order, dtype=np.int64)


def clique_tree(pattern: sp.csr_matrix, order: np.ndarray) -> CliqueTree:
    """Symbolic elimination in `order`: fill, maximal cliques (supernodes) and the clique tree."""
    n = pattern.shape[0]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    later: list[set[int]] = []
    for v in order.tolist():
        nbrs = pattern.indices[pattern.indptr[v] : pattern.indptr[v + 1]]
        later.append({int(position[u]) for u in nbrs if position[u] > position[v]})
    # Work in positions 0..n-1: the parent of k is its first later neighbour, which inherits k's.
    parent_of = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        if later[k]:
            p = min(later[k])
            parent_of[k] = p
            later[p] |= later[k] - {p}
    return _supernodes(later, parent_of, order, position)


def _supernodes(later: list[set[int]], parent_of: np.ndarray, order: np.ndarray, position: np.ndarray) -> CliqueTree:
    """Merge {k} ∪ later[k] into a child's clique when it is contained in it (a supernode chain).

    A child j of k (parent_of[j] = k) has later[j] ⊆ {k} ∪ later[k] by the fill rule, so
    {k} ∪ later[k] ⊆ {j} ∪ later[j] exactly when |later[j]| = |later[k]| + 1.
    """
    n = len(later)
    clique_of = np.full(n, -1, dtype=np.int64)
    members: list[list[int]] = []
    top: list[int] = []  # the last position merged into each clique
    tops_below: dict[int, list[int]] = {}  # position k -> cliques whose top's parent is k
    for k in range(n):
        absorbing = [c for c in tops_below.pop(k, []) if len(later[top[c]]) == len(later[k]) + 1]
        if absorbing:
            clique = absorbing[0]
            top[clique] = k
        else:
            clique = len(members)
            members.append([k, *sorted(later[k])])
            top.append(k)
        clique_of[k] = clique
        if parent_of[k] >= 0:
            tops_below.setdefault(int(parent_of[k]), []).append(clique)
    parents = [int(clique_of[parent_of[t]]) if parent_of[t] >= 0 else -1 for t in top]
    separators = [np.sort(order[sorted(later[t])]) for t in top]
    cliques = tuple(np.sort(order[np.asarray(m, dtype=np.int64)]) for m in members)
    owner = np.empty(n, dtype=np.int64)
    owner[order] = clique_of
    return CliqueTree(cliques, tuple(parents), tuple(separators), owner, position)


def merge_cliques(tree: CliqueTree, target: int) -> CliqueTree:
    """Merge each clique into its parent while the union stays within `target` coordinates.

    Fewer, larger cliques: fewer slacks for SCS to reconcile (it converges much faster),
    at a cost per iteration that grows as Σ |C|³. The result is still a clique tree of a
    (coarser) chordal cover: a merged clique contains both, and its children's separators.
    """
    members = [set(c.tolist()) for c in tree.cliques]
    parent = list(tree.parent)
    children: dict[int, list[int]] = {}
    for c, p in enumerate(parent):
        children.setdefault(p, []).append(c)
    into = list(range(len(members)))  # where each clique's content went (itself if kept)
    for c in _children_first(parent):
        p = parent[c]
        if p < 0 or len(members[c] | members[p]) > target:
            continue
        members[p] |= members[c]
        into[c] = p
        _adopt(children, parent, c, p)
    _pack_siblings(members, parent, children, into, target)
    return _rebuilt(tree, members, parent, into)


def _adopt(children: dict[int, list[int]], parent: list[int], gone: int, into: int) -> None:
    """The children of a clique merged away become children of the clique it went into."""
    for k in children.pop(gone, []):
        parent[k] = into
        children.setdefault(into, []).append(k)


def _pack_siblings(
    members: list[set[int]], parent: list[int], children: dict[int, list[int]], into: list[int], target: int
) -> None:
    """Merge children of one parent with each other while the union stays within target.

    A dense layer makes every pixel a clique {pixel} ∪ (the layer) under one parent; merged
    only into the parent, most stay separate, each with a slack on the whole layer (millions
    of variables on eran 9x200). Siblings merged keep a clique tree: the union's separator
    with the parent is the union of theirs.
    """
    for p in [q for q in children if q >= 0]:
        if into[p] != p:
            continue
        current = None
        for k in sorted((k for k in children.get(p, []) if into[k] == k), key=lambda k: len(members[k])):
            if current is not None and len(members[current] | members[k]) <= target:
                members[current] |= members[k]
                into[k] = current
                _adopt(children, parent, k, current)
            else:
                current = k


def _children_first(parent: list[int]) -> list[int]:
    """The cliques in an order that puts every clique before its parent (a post-order)."""
    children: dict[int, list[int]] = {}
    for c, p in enumerate(parent):
        children.setdefault(p, []).append(c)
    order: list[int] = []
    stack = [(root, False) for root in reversed(children.get(-1, []))]
    while stack:
        c, expanded = stack.pop()
        if expanded:
            order.append(c)
            continue
        stack.append((c, True))
        stack.extend((k, False) for k in reversed(children.get(c, [])))
    return order


def _rebuilt(tree: CliqueTree, members: list[set[int]], parent: list[int], into: list[int]) -> CliqueTree:
    keep = [c for c in range(len(members)) if into[c] == c]
    new_id = {c: i for i, c in enumerate(keep)}

    def final(c: int) -> int:
        while into[c] != c:
            c = into[c]
        return c

    cliques = tuple(np.asarray(sorted(members[c]), dtype=np.int64) for c in keep)
    parents = tuple(new_id[parent[c]] if parent[c] >= 0 else -1 for c in keep)
    empty = np.zeros(0, dtype=np.int64)
    separators = tuple(np.intersect1d(cliques[i], cliques[p]) if p >= 0 else empty for i, p in enumerate(parents))
    owner = np.asarray([new_id[final(int(c))] for c in tree.owner], dtype=np.int64)
    return CliqueTree(cliques, parents, separators, owner, tree.position)


# --------------------------------------------------------------------------- the decomposed SDP


def clique_lower_bound(net: Network) -> int:
    """A side that the largest clique of every chordal extension of L's pattern reaches, in O(nnz).

    A chordal extension's largest clique has side ≥ treewidth + 1 ≥ δ + 1, δ the pattern's
    minimum degree (a graph of treewidth k has a vertex of degree ≤ k); and an output row's
    term [C D]ᵀ[C D] is dense on supp(Y_i), a clique of the pattern, which some clique of every
    chordal extension contains. Dense MLPs give every input a whole first layer of neighbours
    (mnist_6x256: δ = 256), so the minimum-degree ordering (9 s there) need not run to refuse them.
    """
    pattern = lmi_pattern(net).tocsr()
    degree = np.diff(pattern.indptr) - 1  # the pattern holds its diagonal
    _, Y = stacked_maps(net)
    output = int(np.diff(Y.tocsr().indptr).max(initial=0))
    return max(int(degree.min()) + 1 if degree.size else 0, output)


def chordal_tree(net: Network, target: int = 0) -> CliqueTree:
    """The clique tree of the minimum-degree chordal extension, cliques merged up to `target`."""
    pattern = lmi_pattern(net)
    tree = clique_tree(pattern, elimination_order(pattern))
    return merge_cliques(tree, target) if target else tree


def chordal_parts(net: Network, method: Method, tree: CliqueTree) -> Parts:
    """One PSD part per clique c: −(P_c(L(λ, ρ)) ± slacks) ⪰ 0 (see the module docstring).

    θ = (multipliers, one slack per separator entry of each tree edge, ρ).
    """
    n = net.lmi_size
    F = coefficient_matrix(net, method)
    n_mult = F.shape[1]
    edges = [(c, p, sep) for c, (p, sep) in enumerate(zip(tree.parent, tree.separators)) if p >= 0 and sep.size]
    sizes = [sep.size * (sep.size + 1) // 2 for _, _, sep in edges]
    n_slacks = int(sum(sizes))
    n_theta = n_mult + n_slacks + 1
    # One sparse map G (n² x θ) and constant G0 for the whole LMI, split into cliques by row.
    x_diag = np.arange(net.n_x) * (n + 1)
    rho_col = sp.csc_matrix((-np.ones(net.n_x), (x_diag, np.zeros(net.n_x, dtype=np.int64))), shape=(n * n, 1))
    _, Y = stacked_maps(net)
    const = (Y.T @ Y).tocoo()
    G0 = sp.csc_matrix((const.data, (const.row + const.col * n, np.zeros(const.nnz, dtype=np.int64))), shape=(n * n, 1))
    maps = _clique_maps(tree, n, sp.hstack([F, rho_col, G0], format="coo"))
    offsets = np.concatenate([[n_mult], n_mult + np.cumsum(sizes)]).astype(np.int64)
    slack_blocks: list[list[sp.csr_matrix]] = [[] for _ in tree.cliques]
    for (c, p, sep), start in zip(edges, offsets[:-1]):
        for clique, sign in ((c, 1.0), (p, -1.0)):
            members = tree.cliques[clique]
            loc = np.searchsorted(members, sep)
            slack_blocks[clique].append(_slack_map(members.size, loc, int(start), n_theta, sign))
    parts = []
    for c, members in enumerate(tree.cliques):
        m = members.size
        full = maps[c].tocsc()
        G = sp.hstack([full[:, :n_mult], sp.csc_matrix((m * m, n_slacks)), full[:, n_mult : n_mult + 1]], format="csr")
        for block in slack_blocks[c]:
            G = G + block
        g0 = full[:, n_mult + 1].toarray().ravel()
        parts.append(PsdPart((-G).tocsr(), -g0, m))  # −(G θ + G0) ⪰ 0 reads G θ + G0 ⪯ 0
    sides = tuple(int(c.size) for c in tree.cliques)
    return Parts(tuple(parts), n_theta, n_mult, prefix_map(n_mult, n_theta), sizes=sides)


def _entry_owner(tree: CliqueTree, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each entry (p, q) goes to the clique of whichever of p, q is eliminated first."""
    first = np.where(tree.position[p] <= tree.position[q], p, q)
    return tree.owner[first]


def _clique_maps(tree: CliqueTree, n: int, entries: sp.coo_matrix) -> list[sp.csr_matrix]:
    """Split a map vec_F(full) = entries @ v into one map per clique: vec_F(P_c(full)) = maps[c] @ v."""
    p, q = entries.row % n, entries.row // n
    owner = _entry_owner(tree, p, q)
    maps = []
    local = np.full(n, -1, dtype=np.int64)
    for c, members in enumerate(tree.cliques):
        local[members] = np.arange(members.size)
        mine = owner == c
        lp, lq = local[p[mine]], local[q[mine]]
        if np.any(lp < 0) or np.any(lq < 0):
            raise AssertionError("an LMI entry outside its clique: the extension does not cover the pattern")
        m = members.size
        maps.append(
            sp.csr_matrix((entries.data[mine], (lp + lq * m, entries.col[mine])), shape=(m * m, entries.shape[1]))
        )
        local[members] = -1
    return maps


def _slack_map(m: int, loc: np.ndarray, start: int, n_theta: int, sign: float) -> sp.csr_matrix:
    """±(lipsdp.slack_map on rows/cols loc), its columns placed at θ[start:...]."""
    block = sign * slack_map(m, loc)
    after = n_theta - start - block.shape[1]
    return sp.hstack([sp.csr_matrix((m * m, start)), block, sp.csr_matrix((m * m, after))], format="csr")
