"""Plans built from the network alone: split_plan (--split RxC), auto_plan (a block budget), whole_plan
(--split 1x1), and couple_across_groups (`coupled` over several depth groups: one chordal block)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from lipcert.defaults import CHORDAL_LIMIT, DEFAULT_MAX_BLOCK_SIZE, MAX_CLIQUE
from lipcert.errors import BadInputError
from lipcert.network.form import Network
from lipcert.partition.block_sizes import GroupSizer, block_size, plan_block_sizes, tile_block_sizes
from lipcert.partition.decompose import block_decomposition
from lipcert.partition.depth import depth_group, output_map, output_map_refusal
from lipcert.partition.geometry import depth_units, is_spatial, require_layers, span_output_shape
from lipcert.partition.grids import grid_misfit, shape_text
from lipcert.partition.plan_types import (
    OUTPUT_GROUP,
    GroupPlan,
    Plan,
    Tiling,
    group_from_tiling,
    tiling_text,
)
from lipcert.sdp.chordal import chordal_tree
from lipcert.vocabulary import Combine, Method

Run = tuple[int, int]  # depth units a..b (inclusive) forming one group
Cost = tuple[int, ...]  # summed element-wise along a plan; smaller is better


@dataclass(frozen=True)
class _Choice:
    """The tiling picked for one candidate group and its largest block."""

    tiling: Tiling
    largest: int
    fits: bool


# --------------------------------------------------------------------------- split_plan


def split_plan(
    net: Network,
    rows: int,
    cols: int,
    *,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    use_output_group: bool = False,
    method: Method = Method.NEURON,
    combine: Combine = Combine.AUTO,
    compress: bool = True,
) -> Plan:
    """--split RxC: the grid on every group's spatial output, depth units merged within the budget.

    Each group outputs a (C, H, W) map cut by the RxC grid, or a 1-D vector as one block
    (parts 1); spatial and 1-D depth units are never merged together. Consecutive units of
    the same kind merge into one group while every block of the merged group stays within
    max_block_size: fewest groups (deeper groups are tighter), then the smallest largest
    block. When the last activation layer is spatial and y is not, the plan ends with the
    output group, so the grid cuts that layer's map too (unless use_output_group is False:
    then the group ending at the last layer outputs y, as one block). A unit over the
    budget on its own stays a group, with a warning.
    """
    require_layers(net)
    _check_budget_value(max_block_size)
    grid = (rows, cols)
    units = depth_units(net)
    tail = use_output_group and _split_uses_output_group(net)
    shapes = [span_output_shape(net, last, tail) for _, last in units]
    _check_grid_fits(net, units, shapes, grid)
    tilings: list[Tiling] = [grid if is_spatial(shape) else (1,) for shape in shapes]
    runs: dict[Run, _Choice] = {}
    for b in range(len(units)):
        for a in range(b, -1, -1):
            if len(tilings[a]) != len(tilings[b]):
                break  # a spatial unit and a 1-D unit never share a group
            largest = GroupSizer(net, units[a][0], units[b][1], compress, tail).largest(tilings[b])
            choice = _Choice(tilings[b], largest, largest <= max_block_size)
            if choice.fits or a == b:
                runs[a, b] = choice
            if not choice.fits:
                break  # earlier starts only widen the cones
    costs = {run: (int(not c.fits), 1, c.largest) for run, c in runs.items()}
    path, _ = _cheapest_cover(len(units), costs)
    groups, notes = [], []
    for a, b in path:
        group = _run_group(net, units, a, b, runs[a, b].tiling)
        groups.append(group)
        if not runs[a, b].fits:
            notes.append(_split_over_budget_note(group, runs[a, b], max_block_size))
    if tail:
        groups.append(OUTPUT_GROUP)
        if (largest := _output_group_block(net, compress)) > max_block_size:
            notes.append(f"the output group is one block of {largest}, above max_block_size {max_block_size}")
    if all(group.grid is None for group in groups):
        notes.insert(0, f"--split {rows}x{cols} applies to no group: no group has a (C, H, W) output")
    return Plan(tuple(groups), method=method, combine=combine, warnings=tuple(notes))


def _split_uses_output_group(net: Network) -> bool:
    """The output group lets the grid cut the last layer: when that layer is spatial and y is not."""
    spatial_last = is_spatial(net.layers[-1].shape) and not is_spatial(net.output_shape)
    return spatial_last and output_map_refusal(net) is None


def _check_grid_fits(net: Network, units: list[Run], shapes: list[tuple[int, ...]], grid: tuple[int, int]) -> None:
    spatial = [(unit, shape) for unit, shape in zip(units, shapes) if is_spatial(shape)]
    for (_, last), shape in spatial:
        if (reason := grid_misfit(grid, shape)) is not None:
            rows, cols = min(s[1] for _, s in spatial), min(s[2] for _, s in spatial)
            raise BadInputError(
                f"--split {grid[0]}x{grid[1]} does not fit the output {shape_text(shape[1:])} of "
                f"{net.layers[last].name!r}: {reason} (the grid cuts every spatial output; "
                f"this network accepts --split up to {rows}x{cols})"
            )


def _split_over_budget_note(group: GroupPlan, choice: _Choice, budget: int) -> str:
    what = f"{tiling_text(choice.tiling)} gives" if choice.tiling != (1,) else "as one block it has"
    return f"group {group.label}: {what} blocks up to {choice.largest}, above max_block_size {budget}"


# --------------------------------------------------------------------------- auto_plan


def auto_plan(
    net: Network,
    max_block_size: int,
    *,
    method: Method = Method.NEURON,
    combine: Combine = Combine.AUTO,
    compress: bool = True,
    chordal: bool = True,
) -> Plan:
    """The dynamic partition: fewest groups, then fewest tiles, every block <= max_block_size.

    With chordal, the whole network as one block comes first when it is over the budget but
    its chordal cliques fit (blocks.block_decomposition): that block is the full LipSDP.

    Groups are runs of depth units (depth_units); each candidate group gets the coarsest
    tiling whose largest block fits. A unit that fits under no tiling keeps the tiling
    with its smallest largest block, and the plan records a warning. When the output may
    be cut off the last layer (output_map_refusal), the plan may also end with the output
    group; being one more group, it is chosen only when it leaves fewer groups over budget.
    """
    require_layers(net)
    _check_budget_value(max_block_size)
    if chordal and method == Method.NEURON and (whole := _chordal_whole(net, max_block_size, compress)):
        return Plan((whole,), method=method, combine=combine)
    units = depth_units(net)
    last_unit = len(units) - 1
    choices = _candidate_groups(net, units, max_block_size, compress, range(len(units)), False)
    tail_choices: dict[Run, _Choice] = {}
    tail_costs: dict[Run, Cost] = {}
    tail_block = 0
    if output_map_refusal(net) is None:
        tail_block = _output_group_block(net, compress)
        tail_cost = (int(tail_block > max_block_size), 1, 1)
        tail_choices = _candidate_groups(net, units, max_block_size, compress, [last_unit], True)
        tail_costs = {run: _add(_auto_cost(c), tail_cost) for run, c in tail_choices.items()}
    path, tail = _cheapest_cover(len(units), {run: _auto_cost(c) for run, c in choices.items()}, tail_costs)
    groups, notes = [], []
    for a, b in path:
        choice = tail_choices[a, b] if tail and b == last_unit else choices[a, b]
        group = _run_group(net, units, a, b, choice.tiling)
        groups.append(group)
        if not choice.fits:
            notes.append(_over_budget_note(group, choice, max_block_size))
    if tail:
        groups.append(OUTPUT_GROUP)
        if tail_block > max_block_size:
            notes.append(f"the output group is one block of {tail_block}, above the budget {max_block_size}")
    return Plan(tuple(groups), method=method, combine=combine, warnings=tuple(notes))


def _chordal_whole(net: Network, budget: int, compress: bool) -> GroupPlan | None:
    """The whole network as one group, if it is over the budget as one block but its cliques fit."""
    last = len(net.layers) - 1
    whole = depth_group(net, 0, last)
    if block_size(whole, compress) <= budget or block_decomposition(whole, budget) is None:
        return None
    tiling: Tiling = (1, 1) if is_spatial(span_output_shape(net, last)) else (1,)
    return group_from_tiling(net.layers[0].name, net.layers[last].name, tiling)


def _auto_cost(choice: _Choice) -> Cost:
    return (int(not choice.fits), 1, math.prod(choice.tiling))


def _over_budget_note(group: GroupPlan, choice: _Choice, budget: int) -> str:
    return (
        f"group {group.label}: no tiling keeps its blocks within {budget}; "
        f"{tiling_text(choice.tiling)} gives blocks up to {choice.largest}"
    )


def _candidate_groups(
    net: Network, units: list[Run], budget: int, compress: bool, ends: range | list[int], to_activations: bool
) -> dict[Run, _Choice]:
    """Tilings of every run of units a..b (b in ends) worth trying.

    A run is extended backwards only while it fits: a longer run has wider cones, so once
    the finest tiling overflows, longer runs ending at the same unit would too.
    """
    choices = {}
    for b in ends:
        for a in range(b, -1, -1):
            sizer = GroupSizer(net, units[a][0], units[b][1], compress, to_activations)
            choice = _choose_tiling(sizer, budget)
            if choice.fits or a == b:
                choices[a, b] = choice
            if not choice.fits:
                break
    return choices


# --------------------------------------------------------------------------- whole_plan, couple_across_groups


def whole_plan(net: Network) -> Plan:
    """--split 1x1: the full LipSDP, the whole network as one block."""
    if not net.layers:
        raise BadInputError("the model has no activation layers: it is linear; use --method naive")
    return Plan((GroupPlan(net.layers[0].name, net.layers[-1].name, parts=1),))


def couple_across_groups(net: Network, plan: Plan, max_block_size: int) -> tuple[Plan, int | None]:
    """`coupled` over several depth groups: the whole network as one SDP over chordal cliques.

    The product of group bounds loses what the cuts ignore (105.4 against the full 70.3 on
    digits_chain at --split 2x2). The full LMI's chordal extension couples the groups exactly
    (lipcert.sdp.chordal); its cliques are merged up to the plan's largest block, so an SCS
    iteration costs about what the plan's blocks cost. Returns the plan to run and the merge
    target, or the plan unchanged (groups multiply) when the full LMI is too large to verify or
    its cliques do not fit max_block_size.
    """
    if plan.combine != Combine.COUPLED or plan.method != Method.NEURON or len(plan.groups) < 2:
        return plan, None
    why = None
    limit = min(max_block_size, MAX_CLIQUE)
    if net.lmi_size > CHORDAL_LIMIT:
        why = f"the full LMI ({net.lmi_size}) is above {CHORDAL_LIMIT}, the largest the chordal path takes"
    elif (largest := chordal_tree(net).largest) > limit:
        why = f"its chordal extension has a clique of {largest}, above {limit} (chordal solves use cliques up to that)"
    if why is not None:
        note = f"coupled: the depth groups multiply, because {why}"
        return replace(plan, warnings=(*plan.warnings, note)), None
    target = max(min(max(int(max(sizes)) for sizes in plan_block_sizes(net, plan)), limit), largest)
    note = (
        f"coupled: the {len(plan.groups)} depth groups are solved as one SDP over the cliques of the full "
        f"LMI's chordal extension, merged up to {target} (the plan's largest block); it equals the full LipSDP"
    )
    whole = replace(whole_plan(net), method=plan.method, combine=plan.combine, solver=plan.solver)
    return replace(whole, warnings=(*plan.warnings, note)), target


# --------------------------------------------------------------------------- shared


def _check_budget_value(max_block_size: int) -> None:
    if max_block_size < 1:
        raise BadInputError(f"max_block_size must be >= 1, found {max_block_size}")


def _run_group(net: Network, units: list[Run], a: int, b: int, tiling: Tiling) -> GroupPlan:
    return group_from_tiling(net.layers[units[a][0]].name, net.layers[units[b][1]].name, tiling)


def _output_group_block(net: Network, compress: bool) -> int:
    """LMI side of the output group's single block."""
    return int(tile_block_sizes(output_map(net), [np.arange(net.n_y)], compress)[0])


def _add(a: Cost, b: Cost) -> Cost:
    return tuple(x + y for x, y in zip(a, b))


def _cheapest_cover(
    n_units: int, costs: dict[Run, Cost], tail_costs: dict[Run, Cost] | None = None
) -> tuple[list[Run], bool]:
    """Runs covering units 0..n-1 with the least summed cost (a shortest path over run ends).

    tail_costs are alternative last runs (ending at unit n-1) followed by the output
    group, their cost including it. Returns the runs and whether the output group follows.
    """
    best: list[tuple[Cost, list[Run]] | None] = [None] * (n_units + 1)
    best[0] = ((0, 0, 0), [])

    def extend(run: Run, cost: Cost, current: tuple[Cost, list[Run]] | None) -> tuple[Cost, list[Run]] | None:
        start = best[run[0]]
        if start is None:
            return current
        total = _add(start[0], cost)
        return (total, [*start[1], run]) if current is None or total < current[0] else current

    for b in range(n_units):
        for run, cost in _ending_at(costs, b):
            best[b + 1] = extend(run, cost, best[b + 1])
    plain = best[n_units]
    with_tail = None
    for run, cost in _ending_at(tail_costs or {}, n_units - 1):
        with_tail = extend(run, cost, with_tail)
    assert plain is not None or with_tail is not None  # every unit has its own run
    if with_tail is not None and (plain is None or with_tail[0] < plain[0]):
        return with_tail[1], True
    return plain[1], False


def _ending_at(costs: dict[Run, Cost], b: int) -> list[tuple[Run, Cost]]:
    return [(run, cost) for run, cost in costs.items() if run[1] == b]


# --------------------------------------------------------------------------- one group's tiling


def _choose_tiling(sizer: GroupSizer, budget: int) -> _Choice:
    return _coarsest_grid(sizer, budget) if is_spatial(sizer.shape) else _fewest_parts(sizer, budget)


def _closest_miss(sizer: GroupSizer) -> _Choice:
    """No tiling fits: the one tried with the smallest largest block."""
    tiling, largest = sizer.smallest_seen()
    return _Choice(tiling, largest, False)


def _split_counts(extent: int) -> list[int]:
    """Fewest pieces for each achievable largest piece, ascending: other counts add tiles for nothing."""
    return sorted({math.ceil(extent / piece) for piece in range(1, extent + 1)})


def _coarsest_grid(sizer: GroupSizer, budget: int) -> _Choice:
    if (whole := sizer.largest((1, 1))) <= budget:
        return _Choice((1, 1), whole, True)
    _, height, width = sizer.shape
    if sizer.largest((height, width)) > budget:
        return _closest_miss(sizer)
    grid = _fewest_tiles_grid(sizer, budget, _split_counts(height), _split_counts(width))
    return _Choice(grid, sizer.largest(grid), True)


def _fewest_tiles_grid(
    sizer: GroupSizer, budget: int, rows_options: list[int], cols_options: list[int]
) -> tuple[int, int]:
    """The fitting grid with fewest tiles, then smallest largest block; the finest grid must fit.

    Finer rows never need more columns, so one walk down the staircase finds every
    (rows, fewest columns) pair that fits: O(len(rows) + len(cols)) evaluations.
    """
    best: tuple[int, int, tuple[int, int]] | None = None
    col = len(cols_options) - 1
    for rows in rows_options:
        if best is not None and rows > best[0]:
            break
        if sizer.largest((rows, cols_options[col])) > budget:
            continue
        while col > 0 and sizer.largest((rows, cols_options[col - 1])) <= budget:
            col -= 1
        grid = (rows, cols_options[col])
        candidate = (rows * grid[1], sizer.largest(grid), grid)
        if best is None or candidate < best:
            best = candidate
    assert best is not None  # the finest grid fits, and the walk reaches it
    return best[2]


def _fewest_parts(sizer: GroupSizer, budget: int) -> _Choice:
    if (whole := sizer.largest((1,))) <= budget:
        return _Choice((1,), whole, True)
    options = _split_counts(math.prod(sizer.shape))[1:]
    if not options or sizer.largest((options[-1],)) > budget:
        return _closest_miss(sizer)
    lo, hi = 0, len(options) - 1  # options[hi] fits; bisect for the fewest parts that do
    while lo < hi:
        mid = (lo + hi) // 2
        if sizer.largest((options[mid],)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return _Choice((options[hi],), sizer.largest((options[hi],)), True)
