"""The `lipcert` command line. No mathematics here: parse, call the library, report."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.exceptions import TyperException

from lipcert.errors import EXIT_INTERNAL, EXIT_OVER_THRESHOLD, EXIT_UNSUPPORTED, LipcertError

app = typer.Typer(
    name="lipcert",
    help="Certify upper bounds on the global L2 Lipschitz constant of trained CNNs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would be huge matrices
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class Method(str, Enum):
    naive = "naive"
    lipsdp_neuron = "lipsdp-neuron"
    lipsdp_layer = "lipsdp-layer"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


ModelArg = Annotated[Path, typer.Argument(help="ONNX, TorchScript, torch.export (.pt2) or torch.save file.")]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="Module class for a state_dict: package.module:Class or file.py:Class."),
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-pickle", help="Allow unpickling a whole module (runs code from the file).")
]
ShapeOpt = Annotated[
    str | None,
    typer.Option("--input-shape", help="Input shape without batch, e.g. 1,28,28 (TorchScript, state_dict)."),
]


def handles_errors(fn: F) -> F:
    """Turn lipcert errors into a message and the documented exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lipcert.console import print_error

        try:
            return fn(*args, **kwargs)
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
        raise typer.BadParameter(
            f"'{text}' is not a shape like 1,28,28", param_hint="--input-shape"
        ) from None
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"'{text}': every dimension must be positive", param_hint="--input-shape")
    return shape


def _load(model: Path, arch: str | None, trust_pickle: bool, input_shape: str | None):  # noqa: ANN202
    from lipcert.load import load_model

    return load_model(model, arch=arch, trust_pickle=trust_pickle, input_shape=parse_shape(input_shape))


@app.command()
@handles_errors
def inspect(
    model: ModelArg,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """Show the layers lipcert sees, their neuron counts and slope bounds, and whether it can certify it."""
    from lipcert.console import print_inspect
    from lipcert.errors import UnsupportedModelError
    from lipcert.estimate import DEFAULT_MAX_BLOCK, effective_lmi_size

    try:
        loaded = _load(model, arch, trust_pickle, input_shape)
    except UnsupportedModelError as err:
        raise UnsupportedModelError(f"not supported: {err}") from None
    size = effective_lmi_size(loaded.network)
    if size <= DEFAULT_MAX_BLOCK:
        verdict = f"supported: a full LipSDP ({size}x{size} after input compression) is feasible"
    else:
        verdict = f"supported: the full LipSDP would be {size}x{size}; use --split RxC or the automatic plan"
    print_inspect(loaded, verdict)


@app.command()
@handles_errors
def estimate(
    model: ModelArg,
    method: Annotated[Method, typer.Option(help="How each block is bounded.")] = Method.lipsdp_neuron,
    split: Annotated[
        str | None, typer.Option(help="Grid RxC for every convolutional group, e.g. 2x4.")
    ] = None,
    eps: Annotated[float, typer.Option(help="SCS tolerance (verification keeps loose values sound).")] = 1e-3,
    max_iters: Annotated[int, typer.Option(help="SCS iteration limit per block.")] = 20_000,
    time_limit: Annotated[float, typer.Option(help="SCS time limit per block in seconds (0: none).")] = 0.0,
    warm_start: Annotated[bool, typer.Option(help="Warm-start SCS from a similar block's solution.")] = True,
    max_block_size: Annotated[int, typer.Option(help="Largest LMI side allowed for one block.")] = 1500,
    output_format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.table,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file instead of stdout.")
    ] = None,
    max_lipschitz: Annotated[
        float | None, typer.Option(help=f"Exit with code {EXIT_OVER_THRESHOLD} if the bound is above this.")
    ] = None,
    with_lower: Annotated[
        bool, typer.Option("--with-lower", help="Also search an empirical lower bound and show the ratio.")
    ] = False,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """Certify an upper bound on the model's global L2 Lipschitz constant."""
    from lipcert.estimate import EstimateOptions
    from lipcert.estimate import estimate as run_estimate
    from lipcert.sdp.solve import SolverSettings

    settings = SolverSettings(eps=eps, max_iters=max_iters, time_limit_secs=time_limit, warm_start=warm_start)
    options = EstimateOptions(
        method=method.value, split=_parse_split(split), settings=settings, max_block_size=max_block_size
    )
    loaded = _load(model, arch, trust_pickle, input_shape)
    cert = run_estimate(loaded, options)
    if with_lower:
        import dataclasses

        from lipcert.lower import lower_bound

        cert = dataclasses.replace(cert, lower=lower_bound(loaded.module, loaded.input_shape).value)
    _emit(cert, output_format, output)
    if max_lipschitz is not None and cert.bound > max_lipschitz:
        from lipcert.console import print_error

        print_error(f"certified bound {cert.bound:.6g} exceeds --max-lipschitz {max_lipschitz:g}")
        raise typer.Exit(EXIT_OVER_THRESHOLD)


@app.command()
@handles_errors
def lower(
    model: ModelArg,
    starts: Annotated[int, typer.Option(min=1, help="Random starting inputs in [0, 1]^n.")] = 16,
    steps: Annotated[int, typer.Option(min=0, help="Hill-climbing steps from each start.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same value.")] = 0,
    output_format: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """An empirical LOWER bound: the largest Jacobian norm found by a seeded search over inputs."""
    from lipcert.lower import lower_bound

    loaded = _load(model, arch, trust_pickle, input_shape)
    found = lower_bound(loaded.module, loaded.input_shape, starts=starts, steps=steps, seed=seed)
    if output_format is Format.table:
        typer.echo(
            f"empirical lower bound: {found.value:.6g} (largest ||J(x)|| over {found.evaluations} inputs, "
            f"seed {seed}); the true Lipschitz constant is at least this"
        )
    else:
        data = {"model": str(model), "lower": found.value, "evaluations": found.evaluations, "seed": seed}
        typer.echo(json.dumps(data, indent=2))


def _parse_split(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise typer.BadParameter(f"'{text}' is not a grid like 2x4", param_hint="--split")
    rows, cols = int(parts[0]), int(parts[1])
    if rows < 1 or cols < 1:
        raise typer.BadParameter(f"'{text}': rows and columns must be at least 1", param_hint="--split")
    return rows, cols


def _emit(cert: Any, fmt: Format, output: Path | None) -> None:
    from lipcert.report import certificate_csv

    if fmt is Format.table and output is None:
        from lipcert.console import print_certificate

        print_certificate(cert)
        return
    text = certificate_csv(cert) if fmt is Format.csv else json.dumps(cert.to_json(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from lipcert.report import write_atomic

        write_atomic(output, text)


def main() -> None:
    app()
