"""Plans built from the network alone: split_plan (the CLI's --split RxC) and auto_plan (a block budget)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lipcert.errors import BadInputError
from lipcert.network.form import Network
from lipcert.partition.block_sizes import GroupSizer
from lipcert.partition.geometry import depth_units, group_output_shape, is_spatial, require_layers
from lipcert.partition.grids import grid_misfit, shape_text
from lipcert.partition.plan_types import GroupPlan, Plan, Tiling, group_from_tiling, group_label, tiling_text

# --------------------------------------------------------------------------- split_plan


def split_plan(net: Network, rows: int, cols: int, *, method: str = "lipsdp-neuron", combine: str = "coupled") -> Plan:
    """--split RxC: one group per depth unit, the grid on every spatial output, parts=1 elsewhere."""
    require_layers(net)
    groups = tuple(_split_group(net, first, last, (rows, cols)) for first, last in depth_units(net))
    flat_only = all(group.grid is None for group in groups)
    notes = (f"--split {rows}x{cols} applies to no group: no group has a (C, H, W) output",) if flat_only else ()
    return Plan(groups, method=method, combine=combine, warnings=notes)


def _split_group(net: Network, first: int, last: int, grid: tuple[int, int]) -> GroupPlan:
    """The group of layers first..last: the grid if its output is spatial (and it fits), else parts=1."""
    shape = group_output_shape(net, last)
    names = net.layers[first].name, net.layers[last].name
    if not is_spatial(shape):
        return GroupPlan(*names, parts=1)
    if (reason := grid_misfit(grid, shape)) is not None:
        limit = _largest_split(net)
        raise BadInputError(
            f"--split {grid[0]}x{grid[1]} does not fit group {group_label(*names)} output "
            f"{shape_text(shape[1:])}: {reason} (this network accepts --split up to {limit[0]}x{limit[1]})"
        )
    return GroupPlan(*names, grid=grid)


def _largest_split(net: Network) -> tuple[int, int]:
    shapes = [group_output_shape(net, last) for _, last in depth_units(net)]
    spatial = [s for s in shapes if is_spatial(s)]
    return min(s[1] for s in spatial), min(s[2] for s in spatial)


# --------------------------------------------------------------------------- auto_plan


@dataclass(frozen=True)
class _Choice:
    """The tiling picked for one candidate group and its largest block."""

    tiling: Tiling
    largest: int
    fits: bool


def auto_plan(
    net: Network,
    max_block_size: int,
    *,
    method: str = "lipsdp-neuron",
    combine: str = "coupled",
    compress: bool = True,
) -> Plan:
    """The dynamic partition: fewest groups, then fewest tiles, every block <= max_block_size.

    Groups are runs of depth units (depth_units); each candidate group gets the coarsest
    tiling whose largest block fits. A unit that fits under no tiling keeps the tiling
    with its smallest largest block, and the plan records a warning.
    """
    require_layers(net)
    if max_block_size < 1:
        raise BadInputError(f"max_block_size must be >= 1, found {max_block_size}")
    units = depth_units(net)
    choices = _candidate_groups(net, units, max_block_size, compress)
    groups, notes = [], []
    for a, b in _fewest_groups(len(units), choices):
        choice = choices[a, b]
        first, last = net.layers[units[a][0]].name, net.layers[units[b][1]].name
        group = group_from_tiling(first, last, choice.tiling)
        groups.append(group)
        if not choice.fits:
            notes.append(_over_budget_note(group, choice, max_block_size))
    return Plan(tuple(groups), method=method, combine=combine, warnings=tuple(notes))


def _over_budget_note(group: GroupPlan, choice: _Choice, budget: int) -> str:
    return (
        f"group {group.label}: no tiling keeps its blocks within {budget}; "
        f"{tiling_text(choice.tiling)} gives blocks up to {choice.largest}"
    )


def _candidate_groups(
    net: Network, units: list[tuple[int, int]], budget: int, compress: bool
) -> dict[tuple[int, int], _Choice]:
    """Tilings of every run of units a..b worth trying.

    A run is extended backwards only while it fits: a longer run has wider cones, so once
    the finest tiling overflows, longer runs ending at the same unit would too.
    """
    choices = {}
    for b in range(len(units)):
        for a in range(b, -1, -1):
            sizer = GroupSizer(net, units[a][0], units[b][1], compress)
            choice = _choose_tiling(sizer, budget)
            if choice.fits or a == b:
                choices[a, b] = choice
            if not choice.fits:
                break
    return choices


def _fewest_groups(n_units: int, choices: dict[tuple[int, int], _Choice]) -> list[tuple[int, int]]:
    """Runs covering units 0..n-1 minimising (groups over budget, groups, tiles): a shortest path."""
    best: list[tuple[tuple[int, int, int], list[tuple[int, int]]] | None] = [None] * (n_units + 1)
    best[0] = ((0, 0, 0), [])
    for b in range(n_units):
        for (a, end), choice in choices.items():
            if end != b or best[a] is None:
                continue
            (over, count, tiles), runs = best[a]
            cost = (over + (not choice.fits), count + 1, tiles + math.prod(choice.tiling))
            if best[b + 1] is None or cost < best[b + 1][0]:
                best[b + 1] = (cost, [*runs, (a, b)])
    return best[n_units][1]


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
