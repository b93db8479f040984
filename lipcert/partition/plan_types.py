"""The plan's value types: GroupPlan and Plan (frozen, validated on construction) and their allowed values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lipcert.defaults import DEFAULT_COMBINE, DEFAULT_METHOD, DEFAULT_SOLVER
from lipcert.vocabulary import Combine, Method, choices

OUTPUT = "output"  # how plans (YAML, messages) name the output group

Tiling = tuple[int, ...]  # (rows, cols) for a grid, (parts,) for neuron ranges


@dataclass(frozen=True)
class GroupPlan:
    """Layers first..last (names, inclusive) and how the group's output is tiled.

    With `output=True` the group is the **output group** (OUTPUT_GROUP): no activation
    layers, just the output map y = D_last w_last from the last layer's activations. Its
    names are both OUTPUT and it is one block (parts 1). It can only end a plan, and it
    makes the group before it output the last layer's activations instead of y.
    The flag (not the name) marks it, so an activation layer named "output" stays a layer.
    """

    first: str
    last: str
    grid: tuple[int, int] | None = None  # for a (C, H, W) output
    parts: int | None = None  # for any other output, flattened
    output: bool = False  # the output group (see above)

    def __post_init__(self) -> None:
        if self.output and (self.first, self.last, self.grid, self.parts) != (OUTPUT, OUTPUT, None, 1):
            raise ValueError(f"the output group is GroupPlan({OUTPUT!r}, {OUTPUT!r}, parts=1, output=True)")
        if (self.grid is None) == (self.parts is None):
            raise ValueError(f"group {self.label}: give exactly one of grid or parts")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ValueError(f"group {self.label}: grid must be two counts >= 1, found {self.grid}")
        if self.parts is not None and self.parts < 1:
            raise ValueError(f"group {self.label}: parts must be >= 1, found {self.parts}")

    @property
    def label(self) -> str:
        return OUTPUT if self.output else group_label(self.first, self.last)

    @property
    def tiling(self) -> Tiling:
        return tuple(self.grid) if self.grid is not None else (int(self.parts),)

    @property
    def n_tiles(self) -> int:
        return math.prod(self.tiling)


OUTPUT_GROUP = GroupPlan(OUTPUT, OUTPUT, parts=1, output=True)


@dataclass(frozen=True)
class Plan:
    groups: tuple[GroupPlan, ...]
    method: Method = DEFAULT_METHOD
    combine: Combine = DEFAULT_COMBINE
    solver: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SOLVER))
    warnings: tuple[str, ...] = ()  # e.g. auto_plan blocks that stay over budget

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a plan needs at least one group")
        if any(group.output for group in self.groups[:-1]):
            raise ValueError("the output group can only be the last group")
        if self.groups[0].output:
            raise ValueError("the output group cannot be the only group: a plan must cover the activation layers")
        for name, kind in (("method", Method), ("combine", Combine)):
            value = getattr(self, name)
            if value not in kind._value2member_map_:
                raise ValueError(f"unknown {name} {str(value)!r}; expected one of {choices(kind)}")
            object.__setattr__(self, name, kind(value))
        unknown = set(self.solver) - set(DEFAULT_SOLVER)
        if unknown:
            raise ValueError(f"unknown solver settings {sorted(unknown)}; expected {list(DEFAULT_SOLVER)}")
        # Fill the defaults once here so every consumer sees all four settings.
        object.__setattr__(self, "solver", {**DEFAULT_SOLVER, **self.solver})

    @property
    def has_output_group(self) -> bool:
        """Whether the plan ends with OUTPUT_GROUP (then the group before it outputs activations)."""
        return self.groups[-1].output


def group_label(first: str, last: str) -> str:
    """How messages name a group: 'relu_1', or 'relu_1'..'relu_3'."""
    return f"{first!r}" if first == last else f"{first!r}..{last!r}"


def group_from_tiling(first: str, last: str, tiling: Tiling) -> GroupPlan:
    """The GroupPlan of layers first..last tiled by a grid (two counts) or parts (one count)."""
    if len(tiling) == 2:
        return GroupPlan(first, last, grid=(tiling[0], tiling[1]))
    return GroupPlan(first, last, parts=tiling[0])


def tiling_text(tiling: Tiling) -> str:
    return f"grid {tiling[0]}x{tiling[1]}" if len(tiling) == 2 else f"parts {tiling[0]}"
