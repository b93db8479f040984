"""Reports: the JSON schema, the CSV columns, the CI gate from a real shell script, plots, no colour off a TTY."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from lipcert.report.schema import CERTIFICATE
from lipcert.report.tables import CSV_COLUMNS
from tests.conftest import REPO, SAMPLES

MODEL = str(SAMPLES / "digits_chain.onnx")
FAST = ["--split", "2x2", "--combine", "overlap", "--jobs", "1"]
NAIVE = ["--method", "naive", *FAST]  # where the point is the report, not the solver


def lipcert(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lipcert", *args], capture_output=True, text=True, env=full_env, cwd=REPO, timeout=600
    )


@pytest.fixture(scope="module")
def certificate_json() -> dict:
    result = lipcert("estimate", MODEL, *FAST, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_matches_the_documented_schema(certificate_json: dict) -> None:
    jsonschema.validate(certificate_json, CERTIFICATE)
    product = math.prod(g["bound"] for g in certificate_json["groups"])
    assert product <= certificate_json["bound"] <= product * (1 + 1e-12)  # depth groups multiply, rounded up


def test_the_schema_rejects_a_broken_report(certificate_json: dict) -> None:
    broken = {**certificate_json, "bound": "big"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CERTIFICATE)


def test_csv_has_one_row_per_block(tmp_path: Path, certificate_json: dict) -> None:
    out = tmp_path / "r.csv"
    result = lipcert("estimate", MODEL, *FAST, "--format", "csv", "--output", str(out))  # the JSON's run
    assert result.returncode == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(certificate_json["blocks"])
    assert {float(r["bound"]) for r in rows} == {certificate_json["bound"]}


def test_ci_gate_from_a_shell_script(tmp_path: Path) -> None:
    script = tmp_path / "gate.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'"{sys.executable}" -m lipcert estimate "{MODEL}" {" ".join(NAIVE)} --max-lipschitz "$1" --format json '
        '--output "$2"\n'
        "status=$?\n"
        'if [ "$status" -eq 3 ]; then echo "GATE: bound too high"; fi\n'
        "exit $status\n"
    )
    script.chmod(0o755)
    over = subprocess.run([str(script), "1.0", str(tmp_path / "a.json")], capture_output=True, text=True)
    assert over.returncode == 3 and "GATE: bound too high" in over.stdout
    assert "exceeds --max-lipschitz" in over.stderr
    bound = json.loads((tmp_path / "a.json").read_text())["bound"]  # the report is written either way
    assert bound > 1.0
    under = subprocess.run([str(script), str(bound), str(tmp_path / "b.json")], capture_output=True, text=True)
    assert under.returncode == 0, "a bound equal to the threshold passes"
    assert json.loads((tmp_path / "b.json").read_text())["bound"] == bound


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}])
def test_no_colour_codes_off_a_terminal(env: dict) -> None:
    result = lipcert("estimate", MODEL, "--method", "naive", env=env)
    assert result.returncode == 0
    assert "\x1b[" not in result.stdout and "\x1b[" not in result.stderr
    assert "certified L2 Lipschitz bound" in result.stdout


def test_heatmap_and_sweep_plots_are_written(tmp_path: Path) -> None:
    heat, trade = tmp_path / "tiles.png", tmp_path / "tradeoff.png"
    result = lipcert("estimate", MODEL, *NAIVE, "--heatmap", str(heat))
    assert result.returncode == 0, result.stderr
    result = lipcert(
        "sweep", MODEL, "--splits", "2x2", "--combines", "paper,overlap", "--method", "naive", "--plot", str(trade)
    )
    assert result.returncode == 0, result.stderr
    for png in (heat, trade):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
