"""The `lipcert` command line: one module per command, no mathematics here."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from lipcert.cli.batch_cmd import batch
from lipcert.cli.estimate_cmd import estimate
from lipcert.cli.inspect_cmd import inspect
from lipcert.cli.lower_cmd import lower
from lipcert.cli.plan_cmd import plan
from lipcert.cli.radius_cmd import radius
from lipcert.cli.sweep_cmd import sweep

# Help piped into a file or `less` would be cut at rich's 80 columns. Typer's help console reads
# TERMINAL_WIDTH when it is first imported (lazily, when help is shown), so set it only off a
# terminal and only when the user has not.
HELP_WIDTH = 120
if not sys.stdout.isatty() and "TERMINAL_WIDTH" not in os.environ:
    os.environ["TERMINAL_WIDTH"] = str(HELP_WIDTH)

app = typer.Typer(
    name="lipcert",
    help="Certify upper bounds on the global L2 Lipschitz constant of trained CNNs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would be huge matrices
    add_completion=False,
    context_settings={"show_default": True, "max_content_width": HELP_WIDTH},
)
for command in (inspect, estimate, plan, lower, batch, sweep, radius):
    app.command()(command)


def _show_version(value: bool) -> None:
    if value:
        from lipcert import __version__

        typer.echo(f"lipcert {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print lipcert's version and exit."),
    ] = False,
) -> None:
    """Certify upper bounds on the global L2 Lipschitz constant of trained CNNs."""


__all__ = ["app"]
