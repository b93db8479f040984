"""The small things a user trips on: --version, lower's formats, tables in files, help, one spelling per option,
inspect's table for unsupported models, strict JSON from radius."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
from lipcert.errors import EXIT_BAD_INPUT, EXIT_UNSUPPORTED
from tests.conftest import REPO, SAMPLES
from tests.test_cli_errors import tiny_onnx

runner = CliRunner()
CHAIN = str(SAMPLES / "digits_chain.onnx")


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def lipcert(*args: str) -> subprocess.CompletedProcess:
    """Piped, as in CI: stdout is not a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("TERMINAL_WIDTH", "COLUMNS")}
    env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lipcert", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )


def commands() -> dict:
    """The commands as click sees them (typer vendors its own click: duck-typed, not isinstance)."""
    return dict(typer.main.get_command(app).commands)


def is_option(param: object) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def test_version() -> None:
    from lipcert import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"lipcert {__version__}\n"


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_lower_formats_and_output(tmp_path: Path, fmt: str) -> None:
    args = ("lower", CHAIN, "--starts", "2", "--steps", "1", "--format", fmt)
    printed = run(*args)
    assert printed.exit_code == 0, printed.output
    written = run(*args, "--output", str(tmp_path / "lower.out"))
    assert written.exit_code == 0 and written.stdout == ""
    text = (tmp_path / "lower.out").read_text()
    assert text == printed.stdout  # seeded: the same search, the same text
    if fmt == "json":
        data = json.loads(text)
        assert data["lower"] > 0 and data["seed"] == 0 and data["evaluations"] == 4
    elif fmt == "csv":
        (row,) = csv.DictReader(io.StringIO(text))
        assert float(row["lower"]) > 0 and row["evaluations"] == "4"
    else:
        assert text.startswith("empirical lower bound:")


def test_a_table_written_to_a_file_is_the_table(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    result = run("estimate", CHAIN, "--method", "naive", "--output", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    text = out.read_text()
    assert "certified L2 Lipschitz bound" in text and "\x1b[" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_help_shows_every_default() -> None:
    """Each option either has a value to show or says what happens without it (show_default text)."""
    for name, command in commands().items():
        for param in command.params:
            if not is_option(param) or param.name == "help" or param.required:
                continue
            shown = isinstance(param.show_default, str) or param.default is not None
            assert shown, f"{name} {param.opts[0]} shows no default"


def test_help_is_not_cut_when_piped() -> None:
    done = lipcert("estimate", "--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) > 80  # laid out wider than rich's 80 columns
    assert "…" not in done.stdout  # nothing truncated
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", done.stdout).split())  # the help text, its wrapping undone
    assert "A YAML partition plan (see configs/README.md). [default: (none)]" in words
    assert "How each block is bounded. [default: (lipsdp-neuron, or the plan's)]" in words  # not eaten as markup


def test_one_spelling_per_option_across_commands() -> None:
    """A parameter name means one flag everywhere (radius once said --solver-eps for --eps)."""
    flags: dict[str, set[tuple[str, ...]]] = {}
    for command in commands().values():
        for param in command.params:
            if is_option(param):
                flags.setdefault(param.name, set()).add(tuple(param.opts))
    assert {name: spellings for name, spellings in flags.items() if len(spellings) > 1} == {}
    assert "solver_eps" not in flags
    radius = {p.name: p for p in commands()["radius"].params}
    assert radius["eps"].opts == ["--eps"] and radius["radii"].opts == ["--radii"]


def test_shared_defaults_are_the_same_everywhere() -> None:
    for name in ("estimate", "sweep", "radius", "batch", "plan"):
        params = {p.name: p for p in commands()[name].params}
        assert params["max_block_size"].default == DEFAULT_MAX_BLOCK_SIZE, name
        if "time_limit" in params:
            assert params["time_limit"].default is None, name  # None: EstimateOptions' DEFAULT_TIME_LIMIT
    assert "time_limit" in {p.name for p in commands()["sweep"].params}


def test_inspect_shows_the_nodes_before_the_verdict_of_an_unsupported_model(tmp_path: Path) -> None:
    result = run("inspect", str(tiny_onnx(tmp_path / "pool.onnx", pool=True)))
    assert result.exit_code == EXIT_UNSUPPORTED
    table = result.stdout
    for node, op in (("conv_a", "Conv"), ("relu_a", "Relu"), ("pool_a", "LpPool"), ("fc_a", "Gemm")):
        assert node in table and op in table
    assert "not supported" in table
    assert "not supported: " in result.stderr  # the verdict, after the table


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_radius_refuses_a_pair_bound_that_proves_nothing(tmp_path: Path, bad: float) -> None:
    import numpy as np

    made = run("estimate", CHAIN, "--method", "naive", "--pairs", "all", "--format", "json")
    assert made.exit_code == 0
    data = json.loads(made.stdout)
    data["pairs"][3]["bound"] = bad
    (tmp_path / "pairs.json").write_text(json.dumps(data))  # json writes NaN and Infinity
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 1, 8, 8)))
    args = ("--inputs", str(tmp_path / "x.npy"), "--bounds", str(tmp_path / "pairs.json"), "--format", "json")
    result = run("radius", CHAIN, *args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    pair = data["pairs"][3]
    assert f"not a positive finite number: {pair['i']},{pair['j']}" in result.output
    assert result.stdout == ""


def test_reports_are_strict_json() -> None:
    from lipcert.report.documents import as_json

    with pytest.raises(ValueError):
        as_json({"bound": float("nan")})
