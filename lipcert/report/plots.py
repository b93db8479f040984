"""Figures: the bound/time trade-off of a sweep, and per-tile bounds over each group's grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipcert.errors import BadInputError
from lipcert.result import Certificate

MODE_MARKERS = {"paper": "o", "overlap": "s", "pou": "^", "coupled": "D", "single": "*", "naive": "x"}


@dataclass(frozen=True)
class SweepPoint:
    split: str
    combine: str
    bound: float
    seconds: float


def _pyplot():  # noqa: ANN202 - matplotlib is optional and heavy: import it only to draw
    try:
        import matplotlib
    except ImportError:
        raise BadInputError("plots need matplotlib: pip install 'lipcert[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("seaborn-v0_8-whitegrid")
    return plt


def plot_tradeoff(points: list[SweepPoint], path: Path, title: str, lower: float | None = None) -> None:
    """Certified bound against wall time, one marker per combination mode, labelled by split."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for mode in sorted({p.combine for p in points}):
        chosen = [p for p in points if p.combine == mode]
        ax.scatter([p.seconds for p in chosen], [p.bound for p in chosen], s=50, label=mode,
                   marker=MODE_MARKERS.get(mode, "o"))  # fmt: skip
        for p in chosen:
            ax.annotate(p.split, (p.seconds, p.bound), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if lower is not None:
        ax.axhline(lower, color="grey", linestyle="--", linewidth=1, label="empirical lower bound")
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s, log scale)")
    ax.set_ylabel("certified Lipschitz bound")
    ax.set_title(title)
    ax.legend(title="combination", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_tile_heatmap(cert: Certificate, path: Path) -> None:
    """One panel per gridded group: each tile's verified bound at its place in the grid."""
    grids = {g.index: g.tiling for g in cert.groups if len(g.tiling) == 2}
    panels = {g: grid for g, grid in grids.items() if _tile_bounds(cert, g).size == grid[0] * grid[1] > 1}
    if not panels:
        raise BadInputError(
            "--heatmap needs a group cut into a grid with per-tile bounds: use --split RxC (R*C > 1) "
            "with --combine paper, overlap or pou (the coupled mode solves one SDP per group)"
        )
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=120, squeeze=False)
    for ax, (group, (rows, cols)) in zip(axes[0], sorted(panels.items())):
        values = _tile_bounds(cert, group).reshape(rows, cols)
        image = ax.imshow(values, cmap="viridis")
        ax.grid(False)
        middle = (values.min() + values.max()) / 2
        for (r, c), value in np.ndenumerate(values):
            color = "black" if value > middle else "white"  # readable on viridis' light and dark ends
            ax.text(c, r, f"{value:.3g}", ha="center", va="center", color=color, fontsize=8)
        ax.set_title(f"group {group}: {rows}x{cols} tiles")
        ax.set_xlabel("tile column")
        ax.set_ylabel("tile row")
        ax.set_xticks(range(cols))
        ax.set_yticks(range(rows))
        fig.colorbar(image, ax=ax, label="verified tile bound")
    fig.suptitle(f"{Path(cert.model).name}: per-tile bounds ({cert.combine})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tile_bounds(cert: Certificate, group: int) -> np.ndarray:
    return np.array([b.bound for b in sorted(cert.blocks, key=lambda b: b.tile) if b.group == group])
