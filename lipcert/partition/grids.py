"""Grid text: parsing "RxC" (the CLI's --split and a plan's grid:), checking a grid fits a map."""

from __future__ import annotations

import re
from collections.abc import Sequence

_GRID = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


def grid_from_text(text: str) -> tuple[int, int]:
    """(rows, cols) of "RxC", zeros included (callers state the valid range); ValueError otherwise."""
    match = _GRID.fullmatch(text)
    if match is None:
        raise ValueError(f"expected ROWSxCOLS such as 2x2, found {text!r}")
    return int(match[1]), int(match[2])


def grid_misfit(grid: tuple[int, int], shape: Sequence[int]) -> str | None:
    """Why a grid cannot tile a (C, H, W) map, stating the valid range, or None if it fits."""
    (rows, cols), (_, height, width) = grid, shape
    bad = []
    if not 1 <= rows <= height:
        bad.append(f"rows must be 1..{height}")
    if not 1 <= cols <= width:
        bad.append(f"columns must be 1..{width}")
    return " and ".join(bad) or None


def shape_text(shape: Sequence[int]) -> str:
    """A shape as messages and YAML comments write it: 8x8, 16x4x4."""
    return "x".join(str(s) for s in shape)
