"""`lipcert radius MODEL --inputs X`: certified L2 robustness radius of each input's prediction."""

from __future__ import annotations

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
    TimeOpt,
    TrustOpt,
    as_json,
    check_output,
    emit,
    estimate_options,
    handles_errors,
    parse_gate,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt, load_up_to
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_UNDER_CERTIFIED


@handles_errors
def radius(
    model: ModelArg,
    inputs: Annotated[Path, typer.Option(help="Inputs: .npy, .npz or .pt, shape (N, *input shape).")],
    bounds: Annotated[
        Path | None,
        typer.Option(
            help="Pair bounds from estimate --pairs all --format json; without it, every pair's bound is "
            "certified here (n(n-1)/2 SDPs: --method naive is fast and looser).",
            show_default="certify the pairs",
        ),
    ] = None,
    radii: Annotated[
        str, typer.Option("--radii", help="Radii at which to report the certified fraction.")
    ] = "0.1,0.25,0.5",
    min_certified: Annotated[
        str | None,
        typer.Option(
            help=f"Exit {EXIT_UNDER_CERTIFIED} if fewer inputs are certified at the first --radii: a fraction "
            "(0.4) or a percentage (40%).",
            show_default="no gate",
        ),
    ] = None,
    method: MethodOpt = None,
    split: SplitOpt = None,
    plan: PlanOpt = None,
    combine: CombineOpt = None,
    eps: EpsOpt = None,
    max_iters: ItersOpt = None,
    time_limit: TimeOpt = None,
    max_block_size: BlockOpt = DEFAULT_MAX_BLOCK_SIZE,
    chordal: ChordalOpt = True,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    output_format: FormatOpt = Format.table,
    output: OutputOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
    output_node: OutputNodeOpt = None,
) -> None:
    """Per input: predicted class, margins, and the certified L2 radius; the certified fraction at each radius."""
    check_output(output)  # first: before the solver's modules are even imported
    from lipcert.errors import BadInputError
    from lipcert.gates import parse_fraction
    from lipcert.outputs import all_pairs
    from lipcert.radius import certified_radii, load_inputs, logits, read_pair_bounds
    from lipcert.report.console import print_radii, rendered
    from lipcert.report.documents import radius_json
    from lipcert.report.tables import radius_csv

    radii_eps = _parse_radii(radii)
    threshold = parse_gate(min_certified, "--min-certified", parse_fraction)
    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit}
    options = estimate_options(method, split, plan, combine, solver, max_block_size, jobs, scheduler, chordal)
    loaded = load_up_to(model, arch, trust_pickle, input_shape, output_node)
    x = load_inputs(inputs, tuple(loaded.input_shape[1:]))
    if bounds is not None:
        pair_bounds = read_pair_bounds(bounds, loaded.sha256)
        missing = [f"{i},{j}" for i, j in all_pairs(loaded.network.n_y) if (i, j) not in pair_bounds]
        if missing:
            raise BadInputError(f"--bounds {bounds} has no bound for the pair(s) {' '.join(missing)}")
    else:
        from lipcert.pairs import estimate_pairs

        _say_pairs_cost(loaded.network.n_y, options)
        pair_bounds = {(r.i, r.j): r.bound for r in estimate_pairs(loaded, options)}
    found = certified_radii(logits(loaded.module, x), pair_bounds)
    fractions = {e: found.certified_fraction(e) for e in radii_eps}
    first = fractions[radii_eps[0]]
    gate = None
    if threshold is not None:
        verdict = "pass" if first >= threshold else "fail"
        gate = {"min_certified": threshold, "radius": radii_eps[0], "fraction": first, "verdict": verdict}
    if output_format is Format.table and output is None:
        print_radii(found, fractions)
    else:
        texts = {Format.json: lambda: as_json(radius_json(model, loaded.sha256, found, fractions, gate, arch))}
        texts[Format.csv] = lambda: radius_csv(found)
        texts[Format.table] = lambda: rendered(print_radii, found, fractions)
        emit(texts, output_format, output)
    if gate is not None and gate["verdict"] == "fail":
        from lipcert.report.console import print_error

        print_error(
            f"{first:.1%} of inputs certified at radius {radii_eps[0]:g}, below --min-certified {threshold:.1%}"
        )
        raise typer.Exit(EXIT_UNDER_CERTIFIED)


def _say_pairs_cost(n_y: int, options) -> None:  # noqa: ANN001 - EstimateOptions
    """Without --bounds, radius certifies every class pair: say so, and how to make it cheaper."""
    from lipcert.report.console import print_note

    count = n_y * (n_y - 1) // 2
    how = "naive bounds" if options.method == "naive" else "pair SDPs (their blocks, up to --time-limit)"
    advice = "" if options.method == "naive" else "; --method naive is much faster and looser"
    print_note(
        f"no --bounds: certifying {count} class pairs here, {how}{advice}; to certify once and reuse, "
        "run estimate --pairs all --format json --output pairs.json and pass --bounds pairs.json"
    )


def _parse_radii(text: str) -> list[float]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise typer.BadParameter(f"'{text}' is not a list of radii like 0.1,0.25", param_hint="--radii") from None
    if not values or not all(0 <= v < float("inf") for v in values):  # NaN fails too
        raise typer.BadParameter(f"'{text}': radii must be finite and non-negative", param_hint="--radii")
    return values
