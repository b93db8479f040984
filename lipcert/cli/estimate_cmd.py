"""`lipcert estimate MODEL`: a certified upper bound on the global L2 Lipschitz constant."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from lipcert.cli.common import (
    ArchOpt,
    BlockOpt,
    ChordalOpt,
    CombineOpt,
    EpsOpt,
    Format,
    FormatOpt,
    ItersOpt,
    JobsOpt,
    MethodOpt,
    ModelArg,
    OutputOpt,
    PlanOpt,
    SchedulerOpt,
    ShapeOpt,
    SplitOpt,
    ThresholdOpt,
    TimeOpt,
    TrustOpt,
    WarmOpt,
    as_json,
    emit,
    estimate_options,
    handles_errors,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt, load_up_to
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_OVER_THRESHOLD

HeatmapOpt = Annotated[Path | None, typer.Option(help="Draw per-tile bounds over each group's grid (PNG).")]
LogitOpt = Annotated[int | None, typer.Option(help="Bound output K alone.")]
PairOpt = Annotated[str | None, typer.Option(help="Bound the difference f_I - f_J, e.g. 3,5.")]
PairsOpt = Annotated[str | None, typer.Option(help="'all': bound every class pair (for lipcert radius).")]
WithLowerOpt = Annotated[
    bool, typer.Option("--with-lower", help="Also search an empirical lower bound and show the ratio.")
]


@handles_errors
def estimate(
    model: ModelArg,
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
    output_format: FormatOpt = Format.table,
    output: OutputOpt = None,
    max_lipschitz: ThresholdOpt = None,
    with_lower: WithLowerOpt = False,
    heatmap: HeatmapOpt = None,
    logit: LogitOpt = None,
    pair: PairOpt = None,
    pairs: PairsOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
    output_node: OutputNodeOpt = None,
) -> None:
    """Certify an upper bound on the model's global L2 Lipschitz constant."""
    from lipcert.estimate import estimate as run_estimate
    from lipcert.report.console import block_progress, print_certificate, print_error
    from lipcert.report.documents import certificate_json
    from lipcert.report.tables import certificate_csv

    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit, "warm_start": warm_start}
    options = estimate_options(method, split, plan, combine, solver, max_block_size, jobs, scheduler, chordal)
    loaded = load_up_to(model, arch, trust_pickle, input_shape, output_node)
    if pairs is not None:
        _all_pairs(loaded, options, pairs, output_format, output)
        return
    options = _with_selection(options, loaded.network.n_y, logit, pair)
    with block_progress("solving blocks") as progress:
        cert = run_estimate(loaded, options, progress)
    if output_node is not None:
        cert = dataclasses.replace(
            cert, notes=(*cert.notes, f"certified up to ONNX node {output_node} (--output-node)")
        )
    if with_lower:
        from lipcert.lower import lower_bound
        from lipcert.outputs import selected_module

        module = loaded.module if options.selection is None else selected_module(loaded.module, options.selection)
        cert = dataclasses.replace(cert, lower=lower_bound(module, loaded.input_shape).value)
    if heatmap is not None:
        from lipcert.report.plots import plot_tile_heatmap

        plot_tile_heatmap(cert, heatmap)
    if output_format is Format.table and output is None:
        print_certificate(cert)
    else:
        texts = {Format.csv: lambda: certificate_csv(cert), Format.json: lambda: as_json(certificate_json(cert))}
        texts[Format.table] = texts[Format.json]  # a table written to a file is the JSON
        emit(texts, output_format, output)
    if max_lipschitz is not None and cert.bound > max_lipschitz:
        print_error(f"certified bound {cert.bound:.6g} exceeds --max-lipschitz {max_lipschitz:g}")
        raise typer.Exit(EXIT_OVER_THRESHOLD)


def _with_selection(options, n_y: int, logit: int | None, pair: str | None):  # noqa: ANN001, ANN202
    from lipcert.outputs import logit_row, pair_row, parse_pair

    if logit is not None and pair is not None:
        raise typer.BadParameter("give --logit or --pair, not both", param_hint="--logit")
    if logit is not None:
        return dataclasses.replace(options, selection=logit_row(n_y, logit), selection_label=f"logit {logit}")
    if pair is not None:
        i, j = parse_pair(pair)
        return dataclasses.replace(options, selection=pair_row(n_y, i, j), selection_label=f"pair {i},{j}")
    return options


def _all_pairs(loaded, options, pairs: str, output_format: Format, output: Path | None) -> None:  # noqa: ANN001
    from lipcert.pairs import estimate_pairs
    from lipcert.report.console import block_progress, print_pairs
    from lipcert.report.documents import pairs_json
    from lipcert.report.tables import pairs_csv

    if pairs != "all":
        raise typer.BadParameter(f"'{pairs}': only 'all' is supported (use --pair I,J for one)", param_hint="--pairs")
    with block_progress("solving blocks") as progress:
        results = estimate_pairs(loaded, options, progress=progress)
    if output_format is Format.table and output is None:
        print_pairs(results)
        return
    texts = {Format.json: lambda: as_json(pairs_json(loaded, results, None)), Format.csv: lambda: pairs_csv(results)}
    texts[Format.table] = texts[Format.json]
    emit(texts, output_format, output)
