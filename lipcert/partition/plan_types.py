"""The plan's value types: GroupPlan and Plan (frozen, validated on construction) and their allowed values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

METHODS = ("naive", "lipsdp-neuron", "lipsdp-layer")
COMBINES = ("paper", "overlap", "pou", "coupled")
DEFAULT_SOLVER: dict[str, Any] = {"eps": 1e-4, "max_iters": 5000, "time_limit": 120, "warm_start": True}

Tiling = tuple[int, ...]  # (rows, cols) for a grid, (parts,) for neuron ranges


@dataclass(frozen=True)
class GroupPlan:
    """Layers first..last (names, inclusive) and how the group's output is tiled."""

    first: str
    last: str
    grid: tuple[int, int] | None = None  # for a (C, H, W) output
    parts: int | None = None  # for any other output, flattened

    def __post_init__(self) -> None:
        if (self.grid is None) == (self.parts is None):
            raise ValueError(f"group {self.label}: give exactly one of grid or parts")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ValueError(f"group {self.label}: grid must be two counts >= 1, found {self.grid}")
        if self.parts is not None and self.parts < 1:
            raise ValueError(f"group {self.label}: parts must be >= 1, found {self.parts}")

    @property
    def label(self) -> str:
        return group_label(self.first, self.last)

    @property
    def tiling(self) -> Tiling:
        return tuple(self.grid) if self.grid is not None else (int(self.parts),)

    @property
    def n_tiles(self) -> int:
        return math.prod(self.tiling)


@dataclass(frozen=True)
class Plan:
    groups: tuple[GroupPlan, ...]
    method: str = "lipsdp-neuron"
    combine: str = "coupled"
    solver: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SOLVER))
    warnings: tuple[str, ...] = ()  # e.g. auto_plan blocks that stay over budget

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a plan needs at least one group")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.combine not in COMBINES:
            raise ValueError(f"unknown combine {self.combine!r}; expected one of {', '.join(COMBINES)}")
        unknown = set(self.solver) - set(DEFAULT_SOLVER)
        if unknown:
            raise ValueError(f"unknown solver settings {sorted(unknown)}; expected {list(DEFAULT_SOLVER)}")
        # Fill the defaults once here so every consumer sees all four settings.
        object.__setattr__(self, "solver", {**DEFAULT_SOLVER, **self.solver})


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
