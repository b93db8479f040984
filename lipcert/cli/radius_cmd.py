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
    TrustOpt,
    as_json,
    emit,
    estimate_options,
    handles_errors,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt, load_up_to
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_UNDER_CERTIFIED


@handles_errors
def radius(
    model: ModelArg,
    inputs: Annotated[Path, typer.Option(help="Inputs: .npy, .npz or .pt, shape (N, *input shape).")],
    bounds: Annotated[Path | None, typer.Option(help="Pair bounds from estimate --pairs all --format json.")] = None,
    eps: Annotated[
        str, typer.Option("--eps", help="Radii at which to report the certified fraction.")
    ] = "0.1,0.25,0.5",
    min_certified: Annotated[
        float | None,
        typer.Option(help=f"Exit {EXIT_UNDER_CERTIFIED} if fewer inputs are certified at the first --eps."),
    ] = None,
    method: MethodOpt = None,
    split: SplitOpt = None,
    plan: PlanOpt = None,
    combine: CombineOpt = None,
    solver_eps: EpsOpt = None,
    max_iters: ItersOpt = None,
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
    """Per input: predicted class, margins, and the certified L2 radius; the certified fraction at each eps."""
    from lipcert.errors import BadInputError
    from lipcert.outputs import all_pairs
    from lipcert.radius import certified_radii, load_inputs, logits, read_pair_bounds
    from lipcert.report.console import print_radii
    from lipcert.report.documents import radius_json
    from lipcert.report.tables import radius_csv

    radii_eps = _parse_eps(eps)
    loaded = load_up_to(model, arch, trust_pickle, input_shape, output_node)
    x = load_inputs(inputs, tuple(loaded.input_shape[1:]))
    if bounds is not None:
        pair_bounds = read_pair_bounds(bounds, loaded.sha256)
        missing = [f"{i},{j}" for i, j in all_pairs(loaded.network.n_y) if (i, j) not in pair_bounds]
        if missing:
            raise BadInputError(f"--bounds {bounds} has no bound for the pair(s) {' '.join(missing)}")
    else:
        from lipcert.pairs import estimate_pairs

        solver = {"eps": solver_eps, "max_iters": max_iters}
        options = estimate_options(method, split, plan, combine, solver, max_block_size, jobs, scheduler, chordal)
        pair_bounds = {(r.i, r.j): r.bound for r in estimate_pairs(loaded, options)}
    radii = certified_radii(logits(loaded.module, x), pair_bounds)
    fractions = {e: radii.certified_fraction(e) for e in radii_eps}
    if output_format is Format.table and output is None:
        print_radii(radii, fractions)
    else:
        texts = {Format.json: lambda: as_json(radius_json(model, loaded.sha256, radii, fractions))}
        texts[Format.csv] = lambda: radius_csv(radii)
        texts[Format.table] = texts[Format.json]
        emit(texts, output_format, output)
    if min_certified is not None and fractions[radii_eps[0]] < min_certified:
        from lipcert.report.console import print_error

        print_error(
            f"{fractions[radii_eps[0]]:.1%} of inputs certified at radius {radii_eps[0]:g}, "
            f"below --min-certified {min_certified:.1%}"
        )
        raise typer.Exit(EXIT_UNDER_CERTIFIED)


def _parse_eps(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a list of radii like 0.1,0.25", param_hint="--eps") from None
    if not values or any(v < 0 for v in values):
        raise typer.BadParameter(f"'{text}': radii must be non-negative", param_hint="--eps")
    return values
