"""`lipcert lower MODEL`: an empirical lower bound, to see how tight a certificate is."""

from __future__ import annotations

from typing import Annotated

import typer

from lipcert.cli.common import (
    ArchOpt,
    Format,
    FormatOpt,
    ModelArg,
    OutputOpt,
    ShapeOpt,
    TrustOpt,
    as_json,
    check_output,
    emit,
    handles_errors,
    load,
)  # fmt: skip


@handles_errors
def lower(
    model: ModelArg,
    starts: Annotated[int, typer.Option(min=1, help="Random starting inputs in [0, 1]^n.")] = 16,
    steps: Annotated[int, typer.Option(min=0, help="Hill-climbing steps from each start.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same value.")] = 0,
    output_format: FormatOpt = Format.table,
    output: OutputOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """An empirical LOWER bound: the largest Jacobian norm found by a seeded search over inputs."""
    check_output(output)  # first: before torch is even imported
    from lipcert.lower import lower_bound
    from lipcert.report.tables import lower_csv

    loaded = load(model, arch, trust_pickle, input_shape)
    found = lower_bound(loaded.module, loaded.input_shape, starts=starts, steps=steps, seed=seed)
    data = {
        "model": str(model),
        "sha256": loaded.sha256,
        "lower": found.value,
        "evaluations": found.evaluations,
        "seed": seed,
        "starts": starts,
        "steps": steps,
        "arch": arch,
    }
    table = (
        f"empirical lower bound: {found.value:.6g} (largest ||J(x)|| over {found.evaluations} inputs, "
        f"seed {seed}); the true Lipschitz constant is at least this\n"
    )
    texts = {
        Format.table: lambda: table,
        Format.json: lambda: as_json(data),
        Format.csv: lambda: lower_csv(data),
    }
    emit(texts, output_format, output)
