"""Gates that cannot be switched off: strict values, refused before the model is loaded, recorded in the JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_OVER_THRESHOLD, EXIT_USAGE
from lipcert.gates import Gates, GateValueError, judge, parse_fraction, parse_threshold
from lipcert.report.schema import CERTIFICATE
from tests.conftest import SAMPLES

runner = CliRunner()
CHAIN = str(SAMPLES / "digits_chain.onnx")
NAIVE = ("--method", "naive")


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "abc", ""])
def test_thresholds_refuse_what_would_switch_a_gate_off(text: str) -> None:
    with pytest.raises(GateValueError):
        parse_threshold(text)


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("50", 50.0), ("1e3", 1000.0)])
def test_thresholds(text: str, value: float) -> None:
    assert parse_threshold(text) == value


@pytest.mark.parametrize(("text", "value"), [("0.4", 0.4), ("40%", 0.4), ("100%", 1.0), ("0", 0.0), ("1", 1.0)])
def test_fractions_and_percentages(text: str, value: float) -> None:
    assert math.isclose(parse_fraction(text), value)


@pytest.mark.parametrize("text", ["40", "1.5", "150%", "nan", "nan%", "inf", "-0.1", "-5%", "40 percent"])
def test_fractions_refuse_anything_else(text: str) -> None:
    with pytest.raises(GateValueError):
        parse_fraction(text)


def test_an_increase_may_exceed_100_percent_but_not_as_a_bare_number() -> None:
    assert parse_fraction("150%", at_most_one=False) == 1.5
    assert parse_fraction("0.05", at_most_one=False) == 0.05
    with pytest.raises(GateValueError, match="write 5% for a percentage"):
        parse_fraction("5", at_most_one=False)


def test_a_nan_bound_fails_every_gate() -> None:
    assert not judge(Gates(max_lipschitz=10.0), float("nan")).passed
    assert judge(Gates(max_lipschitz=10.0), 10.0).passed  # equal passes
    assert not judge(Gates(max_lipschitz=10.0), 10.000001).passed


# ---------------------------------------------------------------- from the CLI, before any work


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-lipschitz", "nan"),
        ("--max-lipschitz", "inf"),
        ("--max-lipschitz", "-1"),
        ("--max-increase", "nan"),
        ("--max-increase", "-5%"),
    ],
)
def test_estimate_gates_exit_2_before_loading_the_model(tmp_path: Path, option: str, value: str) -> None:
    # The model does not exist: exit 2, not 4, shows the value was refused before the model was read.
    args = ["estimate", str(tmp_path / "missing.onnx"), option, value]
    if option == "--max-increase":
        args += ["--baseline", str(tmp_path / "missing.json")]
    result = run(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert option in result.output


@pytest.mark.parametrize("value", ["nan", "40", "inf", "-0.1", "101%"])
def test_min_certified_exits_2_before_loading_the_model(tmp_path: Path, value: str) -> None:
    inputs = str(tmp_path / "x.npy")
    result = run("radius", str(tmp_path / "missing.onnx"), "--inputs", inputs, "--min-certified", value)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--min-certified" in result.output


def test_max_increase_needs_a_baseline() -> None:
    result = run("estimate", CHAIN, *NAIVE, "--max-increase", "5%")
    assert result.exit_code == EXIT_USAGE
    assert "--max-increase needs --baseline" in result.output


def test_the_json_records_the_threshold_and_the_verdict() -> None:
    passed = run("estimate", CHAIN, *NAIVE, "--max-lipschitz", "1e6", "--format", "json")
    assert passed.exit_code == 0, passed.output
    report = json.loads(passed.stdout)
    jsonschema.validate(report, CERTIFICATE)
    gates = report["gates"]
    assert gates["max_lipschitz"] == 1e6 and gates["verdict"] == "pass" and gates["value"] == report["bound"]
    assert gates["gated"] == "bound" and gates["failures"] == []

    failed = run("estimate", CHAIN, *NAIVE, "--max-lipschitz", "1", "--format", "json")
    assert failed.exit_code == EXIT_OVER_THRESHOLD
    report = json.loads(failed.stdout)
    jsonschema.validate(report, CERTIFICATE)
    assert report["gates"]["verdict"] == "fail" and "exceeds --max-lipschitz 1" in report["gates"]["failures"][0]

    ungated = json.loads(run("estimate", CHAIN, *NAIVE, "--format", "json").stdout)
    assert ungated["gates"] is None


def test_pairs_all_gates_on_the_largest_pair_bound() -> None:
    result = run("estimate", CHAIN, *NAIVE, "--pairs", "all", "--format", "json")
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)["pairs"]
    largest = max(p["bound"] for p in pairs)
    smallest = min(p["bound"] for p in pairs)
    assert smallest < largest
    between = repr((smallest + largest) / 2)  # every pair but the worst below it: the gate must still fail
    gated = run("estimate", CHAIN, *NAIVE, "--pairs", "all", "--format", "json", "--max-lipschitz", between)
    assert gated.exit_code == EXIT_OVER_THRESHOLD, gated.output
    assert "largest pair bound" in gated.stderr and "exceeds --max-lipschitz" in gated.stderr
    report = json.loads(gated.stdout)
    assert report["gates"]["gated"].startswith("largest pair bound (pair ")
    assert report["gates"]["value"] == largest and report["gates"]["verdict"] == "fail"
    at = run("estimate", CHAIN, *NAIVE, "--pairs", "all", "--max-lipschitz", repr(largest))
    assert at.exit_code == 0, at.output
    assert "gates passed: certified largest pair bound (pair " in at.stderr  # the report says what was gated


def test_min_certified_is_recorded_in_the_radius_json(tmp_path: Path) -> None:
    import numpy as np

    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 1, 8, 8)))
    args = ["radius", CHAIN, "--inputs", str(tmp_path / "x.npy"), *NAIVE, "--radii", "1000", "--format", "json"]
    result = run(*args, "--min-certified", "40%")
    assert result.exit_code == 7, result.output
    gate = json.loads(result.stdout)["gates"]
    assert gate == {"min_certified": 0.4, "radius": 1000.0, "fraction": 0.0, "verdict": "fail"}
    assert "below --min-certified 40.0%" in result.stderr
