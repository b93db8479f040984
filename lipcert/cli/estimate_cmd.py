"""`lipcert estimate MODEL`: a certified upper bound on the global L2 Lipschitz constant."""

from __future__ import annotations

import dataclasses
import time
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
    check_output,
    emit,
    estimate_options,
    handles_errors,
    parse_gate,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt, load_up_to
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_OVER_THRESHOLD

HeatmapOpt = Annotated[
    Path | None,
    typer.Option(help="Draw per-tile bounds over each group's grid (PNG); needs a tiled group.", show_default="none"),
]
LogitOpt = Annotated[int | None, typer.Option(help="Bound output K alone.", show_default="all outputs")]
PairOpt = Annotated[
    str | None, typer.Option(help="Bound the difference f_I - f_J, e.g. 3,5.", show_default="all outputs")
]
PairsOpt = Annotated[
    str | None, typer.Option(help="'all': bound every class pair (for lipcert radius).", show_default="none")
]
WithLowerOpt = Annotated[
    bool, typer.Option("--with-lower", help="Also search an empirical lower bound and show the ratio.")
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option(
        help=f"An earlier `estimate --format json` report: exit {EXIT_OVER_THRESHOLD} if the certified bound "
        "exceeds its bound by more than --max-increase (same method and selection required).",
        show_default="no baseline",
    ),
]
IncreaseOpt = Annotated[
    str | None,
    typer.Option(
        help="With --baseline: the increase allowed, a fraction (0.05) or a percentage (5%).",
        show_default="0% with --baseline",
    ),
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
    baseline: BaselineOpt = None,
    max_increase: IncreaseOpt = None,
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
    # Everything that can be refused is refused before the model is loaded, and long before a solve;
    # the outputs first, before even the solver's modules are imported.
    check_output(output)
    check_output(heatmap, "--heatmap")
    gates = _gates(max_lipschitz, baseline, max_increase)
    if pairs is not None and pairs != "all":
        raise typer.BadParameter(f"'{pairs}': only 'all' is supported (use --pair I,J for one)", param_hint="--pairs")
    if pairs is not None and (logit is not None or pair is not None or heatmap is not None):
        raise typer.BadParameter("--pairs all bounds every pair: no --logit, --pair or --heatmap", param_hint="--pairs")
    if logit is not None and pair is not None:
        raise typer.BadParameter("give --logit or --pair, not both", param_hint="--logit")
    pair_indices = _parse_pair(pair)
    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit, "warm_start": warm_start}
    options = estimate_options(method, split, plan, combine, solver, max_block_size, jobs, scheduler, chordal)

    began = time.perf_counter()
    loaded = load_up_to(model, arch, trust_pickle, input_shape, output_node)
    from lipcert.estimate import after_loading

    options = after_loading(options, began)
    if pairs is not None:
        _check_baseline(gates, loaded, options, "all pairs")
        _all_pairs(loaded, options, gates, arch, output_format, output)
        return
    options = _with_selection(options, loaded.network.n_y, logit, pair_indices)
    _check_baseline(gates, loaded, options, options.selection_label)
    if heatmap is not None:
        _check_heatmap(loaded, options)
    from lipcert.estimate import estimate as run_estimate
    from lipcert.report.console import block_progress, print_certificate, rendered
    from lipcert.report.documents import certificate_json
    from lipcert.report.tables import certificate_csv

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
    verdict = _judge(gates, cert.bound, "bound")
    if output_format is Format.table and output is None:
        print_certificate(cert)
    else:
        document = certificate_json(cert, gates=verdict.as_json() if verdict else None, arch=arch)
        texts = {Format.csv: lambda: certificate_csv(cert), Format.json: lambda: as_json(document)}
        texts[Format.table] = lambda: rendered(print_certificate, cert)
        emit(texts, output_format, output)
    _exit_on(verdict)


def _gates(max_lipschitz: str | None, baseline: Path | None, max_increase: str | None):  # noqa: ANN202 - a Gates
    """The gates, parsed before any work: a malformed value is a usage error (2), a bad baseline file 4."""
    from lipcert.gates import Gates, parse_fraction, parse_threshold, read_baseline

    threshold = parse_gate(max_lipschitz, "--max-lipschitz", parse_threshold)
    increase = parse_gate(max_increase, "--max-increase", lambda text: parse_fraction(text, at_most_one=False))
    if increase is not None and baseline is None:
        raise typer.BadParameter("--max-increase needs --baseline FILE", param_hint="--max-increase")
    return Gates(threshold, read_baseline(baseline) if baseline is not None else None, increase)


def _check_baseline(gates, loaded, options, selection: str) -> None:  # noqa: ANN001 - Gates, LoadedModel, EstimateOptions
    """The baseline must bound the same function with the same method (known from the plan, before solving)."""
    if gates.baseline is None:
        return
    from lipcert.estimate import choose_plan
    from lipcert.gates import check_comparable

    check_comparable(gates.baseline, str(choose_plan(loaded.network, options).method), selection)


def _judge(gates, value: float, gated: str):  # noqa: ANN001, ANN202 - Gates -> Verdict | None
    from lipcert.gates import judge

    return judge(gates, value, gated) if gates.any else None


def _exit_on(verdict) -> None:  # noqa: ANN001 - a Verdict or None
    """After the report is written (a failed gate's report is what CI keeps), exit 3 on a failed gate."""
    if verdict is None:
        return
    from lipcert.report.console import print_error, print_note

    if verdict.passed:
        print_note(verdict.summary())  # on stderr: stdout holds only the report
        return

    for failure in verdict.failures:
        print_error(failure)
    raise typer.Exit(EXIT_OVER_THRESHOLD)


def _parse_pair(pair: str | None) -> tuple[int, int] | None:
    from lipcert.errors import BadInputError
    from lipcert.outputs import parse_pair

    if pair is None:
        return None
    try:
        return parse_pair(pair)
    except BadInputError as err:
        raise typer.BadParameter(str(err), param_hint="--pair") from None


def _with_selection(options, n_y: int, logit: int | None, pair: tuple[int, int] | None):  # noqa: ANN001, ANN202
    """The selected outputs; an index out of range is a usage error (2) naming the option."""
    from lipcert.errors import BadInputError
    from lipcert.outputs import logit_row, pair_row

    try:
        if logit is not None:
            return dataclasses.replace(options, selection=logit_row(n_y, logit), selection_label=f"logit {logit}")
        if pair is not None:
            i, j = pair
            return dataclasses.replace(options, selection=pair_row(n_y, i, j), selection_label=f"pair {i},{j}")
    except BadInputError as err:
        raise typer.BadParameter(str(err), param_hint="--logit" if logit is not None else "--pair") from None
    return options


def _check_heatmap(loaded, options) -> None:  # noqa: ANN001 - LoadedModel, EstimateOptions
    """--heatmap draws per-tile bounds: refuse it before solving when the plan has no group of them."""
    from lipcert.combine import resolve_rule
    from lipcert.estimate import choose_plan, plan_to_run
    from lipcert.partition.plan import plan_block_sizes
    from lipcert.vocabulary import GroupRule

    net = loaded.network
    chosen, _ = plan_to_run(net, choose_plan(net, options), options)
    sizes = plan_block_sizes(net, chosen)
    per_tile = (GroupRule.PAPER, GroupRule.OVERLAP, GroupRule.POU)
    for group, tile_sizes in zip(chosen.groups, sizes):
        rule = resolve_rule(chosen.combine, chosen.method, list(tile_sizes), options.max_block_size)
        if group.grid and group.n_tiles > 1 and rule in per_tile:
            return
    raise typer.BadParameter(
        "it needs a group cut into a grid with per-tile bounds, and this plan has none: use --split RxC "
        "(R*C > 1) with --combine paper, overlap or pou (coupled tiles are one SDP per group)",
        param_hint="--heatmap",
    )


def _all_pairs(loaded, options, gates, arch: str | None, output_format: Format, output: Path | None) -> None:  # noqa: ANN001
    """Every class pair; --max-lipschitz and --baseline gate on the largest pair bound."""
    from lipcert.pairs import estimate_pairs
    from lipcert.report.console import block_progress, print_pairs, rendered
    from lipcert.report.documents import pairs_json
    from lipcert.report.tables import pairs_csv

    with block_progress("solving blocks") as progress:
        results = estimate_pairs(loaded, options, progress=progress)
    worst = max(results, key=lambda r: r.bound)
    verdict = _judge(gates, worst.bound, f"largest pair bound (pair {worst.i},{worst.j})")
    if output_format is Format.table and output is None:
        print_pairs(results)
    else:
        document = pairs_json(loaded, results, None, gates=verdict.as_json() if verdict else None, arch=arch)
        texts = {Format.json: lambda: as_json(document), Format.csv: lambda: pairs_csv(results)}
        texts[Format.table] = lambda: rendered(print_pairs, results)
        emit(texts, output_format, output)
    _exit_on(verdict)
