"""What every command shares: option types, error handling, loading, and report output."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.exceptions import TyperException

from lipcert.defaults import DEFAULT_SOLVER, DEFAULT_TIME_LIMIT
from lipcert.errors import EXIT_INTERNAL, EXIT_OVER_THRESHOLD, EXIT_UNSUPPORTED, LipcertError
from lipcert.vocabulary import Combine, Method

F = TypeVar("F", bound=Callable[..., Any])


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


ModelArg = Annotated[Path, typer.Argument(help="ONNX, TorchScript, torch.export (.pt2) or torch.save file.")]
ArchOpt = Annotated[
    str | None,
    typer.Option(
        "--arch", help="Module class for a state_dict: package.module:Class or file.py:Class.", show_default="none"
    ),
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-pickle", help="Allow unpickling a whole module (runs code from the file).")
]
ShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="Input shape without batch, e.g. 1,28,28 (TorchScript, state_dict).",
        show_default="the file's",
    ),
]
MethodOpt = Annotated[
    Method | None, typer.Option(help="How each block is bounded.", show_default="lipsdp-neuron, or the plan's")
]
SplitOpt = Annotated[
    str | None,
    typer.Option(help="Grid RxC for every convolutional group; 1x1 = full LipSDP.", show_default="the automatic plan"),
]
PlanOpt = Annotated[
    Path | None, typer.Option(help="A YAML partition plan (see configs/README.md).", show_default="none")
]
CombineOpt = Annotated[
    Combine | None,
    typer.Option(
        help="Tile combination: auto = the smallest proven bound (coupled where affordable, else overlap).",
        show_default="auto, or the plan's",
    ),
]
EpsOpt = Annotated[
    float | None,
    typer.Option(
        help="SCS tolerance (> 0); verification keeps loose values sound.",
        show_default=f"{DEFAULT_SOLVER['eps']:g}, or the plan's",
    ),
]
ItersOpt = Annotated[
    int | None,
    typer.Option(
        help="SCS iteration limit per block (>= 1).", show_default=f"{DEFAULT_SOLVER['max_iters']}, or the plan's"
    ),
]
TimeOpt = Annotated[
    float | None,
    typer.Option(
        help="Time budget of the whole estimate, loading included, seconds; what is proven by then is the bound.",
        show_default=f"{DEFAULT_TIME_LIMIT:g}",
    ),
]
WarmOpt = Annotated[
    bool | None,
    typer.Option(help="Warm-start SCS where a similar block was solved.", show_default="on, or the plan's"),
]
BlockOpt = Annotated[int, typer.Option(help="Largest LMI side of one block (the automatic plan's budget).")]
ChordalOpt = Annotated[
    bool,
    typer.Option(
        "--chordal/--no-chordal",
        help="Solve a large block over the cliques of its LMI's chordal extension where that pays (same value, "
        "less work per iteration); --no-chordal: one PSD constraint per block, as in LipSDP.",
    ),
]
JobsOpt = Annotated[int | None, typer.Option(help="Worker processes.", show_default="the number of cores")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786.", show_default="local processes")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Report format.")]
OutputOpt = Annotated[
    Path | None,
    typer.Option(help="Write the report to this file (atomically) instead of stdout.", show_default="stdout"),
]
ThresholdOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Exit with code {EXIT_OVER_THRESHOLD} if the certified bound is above this (with --pairs all: the "
        "largest pair bound); a finite number >= 0.",
        show_default="no gate",
    ),
]


def handles_errors(fn: F) -> F:
    """Turn lipcert errors into a message and the documented exit code, never a traceback.

    SIGINT and SIGTERM stop the command with one line and 130 or 143 (lipcert.interrupts).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lipcert.interrupts import as_interrupted, stop_on_signals
        from lipcert.report.console import print_error

        try:
            with stop_on_signals():
                return fn(*args, **kwargs)
        except KeyboardInterrupt as interrupt:  # Interrupted (SIGTERM, or SCS stopped by SIGINT) too
            stopped = as_interrupted(interrupt)
            print_error(str(stopped))
            raise typer.Exit(stopped.exit_code) from None
        except LipcertError as err:
            print_error(str(err))
            raise typer.Exit(err.exit_code) from None
        except MemoryError:
            print_error("out of memory; certify in smaller parts with --split or --max-block-size")
            raise typer.Exit(EXIT_UNSUPPORTED) from None
        except (typer.Exit, typer.Abort, TyperException):  # usage errors keep Typer's own handling
            raise
        except Exception as err:  # a bug: say so plainly instead of dumping a traceback
            print_error(f"internal error ({type(err).__name__}: {err}); please report it")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a shape like 1,28,28", param_hint="--input-shape") from None
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"'{text}': every dimension must be positive", param_hint="--input-shape")
    return shape


def parse_split(text: str | None) -> tuple[int, int] | None:
    from lipcert.partition.grids import grid_from_text

    if text is None:
        return None
    try:
        rows, cols = grid_from_text(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a grid like 2x4", param_hint="--split") from None
    if rows < 1 or cols < 1:
        raise typer.BadParameter(f"'{text}': rows and columns must be at least 1", param_hint="--split")
    return rows, cols


def load(model: Path, arch: str | None, trust_pickle: bool, input_shape: str | None):  # noqa: ANN201
    from lipcert.load import load_model

    return load_model(model, arch=arch, trust_pickle=trust_pickle, input_shape=parse_shape(input_shape))


def estimate_options(
    method: Method | None,
    split: str | None,
    plan: Path | None,
    combine: Combine | None,
    solver: dict[str, Any],
    max_block_size: int,
    jobs: int | None,
    scheduler: str | None,
    chordal: bool = True,
):  # noqa: ANN201 - EstimateOptions, imported lazily
    from lipcert.estimate import EstimateOptions

    if split is not None and plan is not None:
        raise typer.BadParameter("give --split or --plan, not both", param_hint="--split")
    if jobs is not None and jobs < 1:
        raise typer.BadParameter(f"{jobs}: at least 1 worker", param_hint="--jobs")
    if max_block_size < 1:
        raise typer.BadParameter(f"{max_block_size}: the budget must be at least 1", param_hint="--max-block-size")
    check_solver_settings(solver)
    budget = solver.pop("time_limit", None)  # --time-limit bounds the whole estimate, not one SCS call
    if budget is not None and not (budget > 0 and budget < float("inf")):
        raise typer.BadParameter(f"{budget}: a positive number of seconds", param_hint="--time-limit")
    return EstimateOptions(
        method=method,
        split=parse_split(split),
        plan_path=plan,
        combine=combine,
        solver={k: v for k, v in solver.items() if v is not None},
        max_block_size=max_block_size,
        workers=jobs if jobs is not None else (os.cpu_count() or 1),
        scheduler=scheduler,
        chordal=chordal,
        **({} if budget is None else {"time_limit": budget}),
    )


def check_solver_settings(solver: dict[str, Any]) -> None:
    """SCS settings in range before any solve: a bad one would make every block fall back to naive."""
    eps, iters = solver.get("eps"), solver.get("max_iters")
    if eps is not None and not (0 < eps < float("inf")):
        raise typer.BadParameter(f"{eps}: the SCS tolerance must be a positive number", param_hint="--eps")
    if iters is not None and iters < 1:
        raise typer.BadParameter(f"{iters}: at least 1 iteration", param_hint="--max-iters")


def parse_gate(text: str | None, option: str, parse: Callable[[str], float]) -> float | None:
    """A gate's value, or a usage error naming the option (exit 2) before anything is loaded."""
    from lipcert.gates import GateValueError

    if text is None:
        return None
    try:
        return parse(text)
    except GateValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


def check_output(path: Path | None, option: str = "--output") -> None:
    """Refuse an output path that cannot be written before any work is done (exit 4)."""
    if path is not None:
        from lipcert.report.files import check_writable

        check_writable(path, option)


def emit(text_for: dict[Format, Callable[[], str]], fmt: Format, output: Path | None) -> None:
    """Print the chosen format, or write it atomically to --output."""
    text = text_for[fmt]()
    if output is None:
        typer.echo(text, nl=False)
    else:
        from lipcert.report.files import write_atomic

        write_atomic(output, text)


def as_json(data: Any) -> str:
    from lipcert.report.documents import as_json as text

    return text(data)
