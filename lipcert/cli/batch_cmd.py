"""`lipcert batch DIR`: certify every checkpoint in a folder, resumably, into one CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lipcert.cli.common import (
    BlockOpt,
    ChordalOpt,
    CombineOpt,
    EpsOpt,
    ItersOpt,
    JobsOpt,
    MethodOpt,
    PlanOpt,
    SchedulerOpt,
    SplitOpt,
    TimeOpt,
    WarmOpt,
    check_output,
    estimate_options,
    handles_errors,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_BAD_INPUT


@handles_errors
def batch(
    folder: Annotated[Path, typer.Argument(help="Folder of checkpoints.")],
    output: Annotated[Path, typer.Option(help="The results CSV (rewritten atomically after each model).")],
    glob: Annotated[str, typer.Option(help="Which files, e.g. '*.onnx' or '**/*.onnx'.")] = "*.onnx",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where finished blocks and models are kept.", show_default="OUTPUT.cache")
    ] = None,
    method: MethodOpt = None,
    split: SplitOpt = None,
    plan: PlanOpt = None,
    combine: CombineOpt = None,
    eps: EpsOpt = None,
    max_iters: ItersOpt = None,
    time_limit: TimeOpt = None,
    warm_start: WarmOpt = None,
    max_block_size: BlockOpt = DEFAULT_MAX_BLOCK_SIZE,
    chordal: ChordalOpt = True,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    output_node: OutputNodeOpt = None,
) -> None:
    """Certify every checkpoint in FOLDER. Broken files are recorded and the run goes on.

    Exits 0 when every model was certified, 4 when any was not (see the CSV's error column).
    """
    from lipcert.batch import find_checkpoints, run_batch
    from lipcert.report.console import block_progress, print_batch_summary, progress_enabled

    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit, "warm_start": warm_start}
    options = estimate_options(method, split, plan, combine, solver, max_block_size, jobs, scheduler, chordal)
    check_output(output)  # before the first model is read, not after it is solved
    files = find_checkpoints(folder, glob)
    cache = cache_dir or output.with_name(output.name + ".cache")

    def on_model(file: str, index: int, total: int) -> None:
        if progress_enabled():
            typer.echo(f"[{index + 1}/{total}] {file}", err=True)

    with block_progress("blocks of this model") as progress:
        report = run_batch(files, options, cache, output, on_model, progress, output_node=output_node)
    print_batch_summary(report)
    if any(r.status != "ok" for r in report.rows):
        raise typer.Exit(EXIT_BAD_INPUT)
