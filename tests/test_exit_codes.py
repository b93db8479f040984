"""One exit-code table, in README.md and in lipcert/errors.py, and every documented code run from the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lipcert.errors
from lipcert.cli import app
from tests.conftest import REPO, SAMPLES
from tests.test_cli_errors import tiny_onnx

runner = CliRunner()
CHAIN = str(SAMPLES / "digits_chain.onnx")
SIGNALS = {130, 143}  # run by the signal tests: they need a real process to interrupt


def readme_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Exit codes") :]
    section = section[: section.index("\n## ", 3)]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M)}


def docstring_codes() -> dict[int, str]:
    doc = lipcert.errors.__doc__ or ""
    return {int(code): meaning for code, meaning in re.findall(r"^    (\d+)\s+(\S.*)$", doc, re.M)}


def test_the_readme_and_errors_py_document_the_same_codes() -> None:
    assert set(readme_codes()) == set(docstring_codes())
    assert set(readme_codes()) >= set(range(8)) | SIGNALS


def test_every_exit_constant_is_documented() -> None:
    constants = {v for k, v in vars(lipcert.errors).items() if k.startswith("EXIT_")}
    assert constants <= set(readme_codes())
    for cls in (lipcert.errors.BadInputError, lipcert.errors.UnsupportedModelError, lipcert.errors.SolverError):
        assert cls.exit_code in readme_codes()


# ---------------------------------------------------------------- each code, from the CLI


def _ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["estimate", CHAIN, "--method", "naive"]


def _internal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import lipcert.estimate

    def bug(net: object) -> float:
        raise RuntimeError("a bug planted by the test")

    monkeypatch.setattr(lipcert.estimate, "naive_bound", bug)
    return ["estimate", CHAIN, "--method", "naive"]


def _usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["estimate", CHAIN, "--split", "0x2"]


def _over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["estimate", CHAIN, "--method", "naive", "--max-lipschitz", "1"]


def _bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["estimate", str(tmp_path / "missing.onnx")]


def _unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["estimate", str(tiny_onnx(tmp_path / "pool.onnx", pool=True)), "--method", "naive"]


def _solver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SCS raises and the naive fallback cannot be certified either."""
    from tests.support import break_the_solver

    break_the_solver(monkeypatch)
    return ["estimate", CHAIN, "--split", "1x1", "--jobs", "1", "--no-chordal"]


def _under_certified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8)))
    inputs = str(tmp_path / "x.npy")
    return ["radius", CHAIN, "--inputs", inputs, "--method", "naive", "--radii", "1000", "--min-certified", "1"]


RUNS: dict[int, tuple[Callable[[Path, pytest.MonkeyPatch], list[str]], str]] = {
    0: (_ok, "certified L2 Lipschitz bound"),
    1: (_internal, "internal error (RuntimeError: a bug planted by the test); please report it"),
    2: (_usage, "--split"),
    3: (_over, "exceeds --max-lipschitz 1"),
    4: (_bad_input, "missing.onnx: no such file"),
    5: (_unsupported, "op type LpPool"),
    6: (_solver, "no sound bound"),
    7: (_under_certified, "below --min-certified 100.0%"),
}


def test_every_documented_code_has_a_run() -> None:
    assert set(RUNS) == set(readme_codes()) - SIGNALS


@pytest.mark.parametrize("code", sorted(RUNS))
def test_the_cli_exits_with_each_documented_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    make_args, message = RUNS[code]
    result = runner.invoke(app, make_args(tmp_path, monkeypatch))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
