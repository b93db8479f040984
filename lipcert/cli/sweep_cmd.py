"""`lipcert sweep MODEL`: the bound/time trade-off across splits and combination modes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from lipcert.cli.common import (
    ArchOpt,
    BlockOpt,
    ChordalOpt,
    EpsOpt,
    Format,
    ItersOpt,
    JobsOpt,
    MethodOpt,
    ModelArg,
    SchedulerOpt,
    ShapeOpt,
    TimeOpt,
    TrustOpt,
    check_output,
    emit,
    estimate_options,
    handles_errors,
    load,
    parse_split,
)  # fmt: skip
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE


@handles_errors
def sweep(
    model: ModelArg,
    splits: Annotated[str, typer.Option(help="Comma-separated grids, e.g. 1x1,2x2,4x4.")] = "1x1,2x2,4x4",
    combines: Annotated[
        str, typer.Option(help="Comma-separated combination modes (see --combine).")
    ] = "paper,overlap,pou,coupled",
    plot: Annotated[Path | None, typer.Option(help="Write the trade-off figure (PNG).", show_default="none")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the rows as CSV to this file.", show_default="stdout")
    ] = None,
    method: MethodOpt = None,
    eps: EpsOpt = None,
    max_iters: ItersOpt = None,
    time_limit: TimeOpt = None,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    max_block_size: BlockOpt = DEFAULT_MAX_BLOCK_SIZE,
    chordal: ChordalOpt = True,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """Certify the model at each split and combination mode; tabulate and plot bound against time."""
    check_output(output)  # first: before the solver's modules are even imported
    check_output(plot, "--plot")
    from lipcert.estimate import estimate as run_estimate
    from lipcert.report.plots import SweepPoint, plot_tradeoff
    from lipcert.report.tables import sweep_csv

    grids = [text.strip() for text in splits.split(",") if text.strip()]
    modes = [text.strip() for text in combines.split(",") if text.strip()]
    for grid in grids:
        parse_split(grid)
    _check_modes(modes)
    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit}  # each estimate gets the budget
    base = estimate_options(method, None, None, None, solver, max_block_size, jobs, scheduler, chordal)
    loaded = load(model, arch, trust_pickle, input_shape)
    points = []
    for grid in grids:
        for mode in modes if grid != "1x1" else ["single"]:  # one block: nothing to combine
            options = replace(base, split=parse_split(grid), combine=None if mode == "single" else mode)
            start = time.perf_counter()
            cert = run_estimate(loaded, options)
            points.append(SweepPoint(grid, mode, cert.bound, time.perf_counter() - start))
            typer.echo(f"{grid:>6} {mode:>8}: bound {cert.bound:.6g} in {points[-1].seconds:.1f} s", err=True)
    if plot is not None:
        plot_tradeoff(points, plot, f"{Path(model).name}: bound against time")
    emit({Format.csv: lambda: sweep_csv(points)}, Format.csv, output)


def _check_modes(modes: list[str]) -> None:
    """Every mode a --combine value: a typo is a usage error (2) before anything is solved."""
    from lipcert.vocabulary import Combine, choices

    if not modes:
        raise typer.BadParameter("give at least one mode", param_hint="--combines")
    unknown = [m for m in modes if m not in Combine._value2member_map_]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: not one of {choices(Combine)}", param_hint="--combines")
