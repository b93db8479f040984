"""The `lipcert` command line: one module per command, no mathematics here."""

from __future__ import annotations

import typer

from lipcert.cli.batch_cmd import batch
from lipcert.cli.estimate_cmd import estimate
from lipcert.cli.inspect_cmd import inspect
from lipcert.cli.lower_cmd import lower
from lipcert.cli.plan_cmd import plan
from lipcert.cli.radius_cmd import radius
from lipcert.cli.sweep_cmd import sweep

app = typer.Typer(
    name="lipcert",
    help="Certify upper bounds on the global L2 Lipschitz constant of trained CNNs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would be huge matrices
    add_completion=False,
)
for command in (inspect, estimate, plan, lower, batch, sweep, radius):
    app.command()(command)

__all__ = ["app"]
