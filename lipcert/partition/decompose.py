"""The planner's chordal decision: which blocks are solved over the cliques of their LMI, and how big.

A block above the budget as one PSD constraint can still be solved exactly when the cliques
of its LMI's chordal extension fit (lipcert.sdp.chordal); the plan, its sizes and its
refusals must know that before anything is solved. Decisions are cached per block (interior
tiles repeat, and the minimum-degree ordering costs up to seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from lipcert.defaults import CHORDAL_LIMIT, CHORDAL_MIN, COUPLED_BUDGET, MAX_CLIQUE, MAX_SLACKS, MERGE_TARGET, MIN_GAIN
from lipcert.network.form import Network
from lipcert.partition.block_sizes import block_size, plan_block_sizes
from lipcert.partition.geometry import group_network
from lipcert.partition.plan_types import GroupPlan, Plan
from lipcert.partition.tiles import block_key
from lipcert.sdp.chordal import chordal_tree, clique_lower_bound, merge_cliques


@dataclass(frozen=True)
class ChordalChoice:
    target: int  # the merge target to build the model with
    largest: int  # the largest clique after merging
    n_cliques: int


def chordal_choice(net: Network, max_block_size: int, solved_side: int | None = None) -> ChordalChoice | None:
    """Whether to solve this block over chordal cliques, and with which merge target.

    solved_side: the side one PSD constraint would have (after input compression); defaults
    to the full LMI side. None when the full LMI is too large to verify, when no clique fits
    max_block_size, or when one constraint fits the budget and the decomposition would not
    make an SCS iteration MIN_GAIN times cheaper.
    """
    n = net.lmi_size
    one = solved_side if solved_side is not None else n
    if n > CHORDAL_LIMIT or one <= CHORDAL_MIN or net.n_w == 0 or net.n_x == 0:
        return None
    if clique_lower_bound(net) > min(max_block_size, MAX_CLIQUE):
        return None  # some clique is too big whatever the ordering: no need to compute one
    tree = chordal_tree(net)
    if tree.largest > min(max_block_size, MAX_CLIQUE):
        return None
    target = min(max_block_size, MAX_CLIQUE, max(MERGE_TARGET, tree.largest))
    merged = merge_cliques(tree, target)
    if sum(sep.size * (sep.size + 1) // 2 for sep in merged.separators) > MAX_SLACKS:
        return None
    if merged.cost > COUPLED_BUDGET * float(max_block_size) ** 3:
        return None  # as many big cliques as a coupled group SCS cannot finish (eran 9x200: 7 of 600)
    if one <= max_block_size and merged.cost * MIN_GAIN > float(one) ** 3:
        return None  # one constraint fits and is about as cheap; above the budget it is not allowed
    return ChordalChoice(target, merged.largest, len(merged.cliques))


_DECISIONS: dict[tuple[str, int], ChordalChoice | None] = {}


def block_decomposition(block: Network, max_block_size: int, key: str | None = None) -> ChordalChoice | None:
    """How a block is solved: over chordal cliques (when that pays and fits), else None (one constraint).

    `key`: the block's block_key, when the caller has it already.
    """
    key = key if key is not None else block_key(block)
    if (key, max_block_size) not in _DECISIONS:
        _DECISIONS[key, max_block_size] = chordal_choice(block, max_block_size, block_size(block))
    return _DECISIONS[key, max_block_size]


def solved_block_sizes(net: Network, plan: Plan, max_block_size: int | None) -> list[int]:
    """Per group, the side of the largest PSD constraint SCS will see.

    That is the largest block's LMI side, except for a one-block group above max_block_size
    that is solved over chordal cliques which fit it (block_decomposition): then the largest
    clique. max_block_size None: no chordal solves.
    """
    out = []
    for group, sizes in zip(plan.groups, plan_block_sizes(net, plan)):
        side = int(max(sizes))
        if max_block_size is not None and side > max_block_size:
            choice = _group_decomposition(net, plan, group, max_block_size)
            side = choice.largest if choice is not None else side
        out.append(side)
    return out


def _group_decomposition(net: Network, plan: Plan, group: GroupPlan, max_block_size: int) -> ChordalChoice | None:
    """A one-block group's chordal solve, as prepare_groups will decide it (LipSDP-Neuron only)."""
    if group.n_tiles != 1 or plan.method != "lipsdp-neuron":
        return None
    return block_decomposition(group_network(net, group, plan), max_block_size)
