"""The regression gate, `estimate --baseline previous.json --max-increase 5%`, from a real shell script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipcert.errors import BadInputError
from lipcert.gates import Baseline, check_comparable, read_baseline
from tests.conftest import REPO, SAMPLES

CHAIN = SAMPLES / "digits_chain.onnx"

# The README's CI example, reduced to what the test needs: the exit code is the whole contract.
SCRIPT = """#!/usr/bin/env bash
set -u
python -m lipcert estimate "$MODEL" --method naive --baseline "$BASELINE" --max-increase "$INCREASE" \\
    --format json --output "$OUT"
status=$?
case $status in
  0) echo "bound within $INCREASE of the baseline" ;;
  3) echo "REGRESSION: the certified bound grew by more than $INCREASE" ;;
  *) echo "lipcert could not compare (exit $status)" ;;
esac
exit $status
"""


def lipcert_env() -> dict[str, str]:
    """PATH and PYTHONPATH such that `python -m lipcert` in a script runs this checkout."""
    bin_dir = str(Path(sys.executable).parent)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "previous.json"
    done = subprocess.run(
        [sys.executable, "-m", "lipcert", "estimate", str(CHAIN), "--method", "naive", "--format", "json",
         "--output", str(path)],
        capture_output=True, text=True, env=lipcert_env(), cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def gate(tmp_path: Path, baseline: Path, increase: str = "5%") -> subprocess.CompletedProcess:
    script = tmp_path / "gate.sh"
    script.write_text(SCRIPT, encoding="utf-8")
    env = lipcert_env() | {"MODEL": str(CHAIN), "BASELINE": str(baseline), "INCREASE": increase}
    env["OUT"] = str(tmp_path / "new.json")
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def rewritten(tmp_path: Path, baseline: Path, **changes: object) -> Path:
    data = json.loads(baseline.read_text())
    data.update(changes)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data))
    return path


def test_same_bound_passes(tmp_path: Path, baseline: Path) -> None:
    done = gate(tmp_path, baseline)
    assert done.returncode == 0, done.stderr
    assert "bound within 5% of the baseline" in done.stdout
    gates = json.loads((tmp_path / "new.json").read_text())["gates"]
    assert gates["verdict"] == "pass" and gates["max_increase"] == 0.05
    assert gates["baseline"]["path"] == str(baseline)


def test_a_larger_bound_exits_3(tmp_path: Path, baseline: Path) -> None:
    bound = json.loads(baseline.read_text())["bound"]
    lower = rewritten(tmp_path, baseline, bound=bound / 1.06)  # the new bound is 6% above it
    done = gate(tmp_path, lower)
    assert done.returncode == 3, done.stderr
    assert "REGRESSION" in done.stdout
    assert "+6.00% against the baseline's" in done.stderr and "--max-increase 5.00%" in done.stderr
    assert json.loads((tmp_path / "new.json").read_text())["gates"]["verdict"] == "fail"  # the report is kept
    assert gate(tmp_path, lower, "7%").returncode == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "lipsdp-neuron"}, "was made with --method lipsdp-neuron, this run uses naive"),
        ({"selection": "logit 3"}, "bounds logit 3, this run bounds all outputs"),
    ],
)
def test_another_method_or_selection_exits_4(tmp_path: Path, baseline: Path, changes: dict, message: str) -> None:
    done = gate(tmp_path, rewritten(tmp_path, baseline, **changes))
    assert done.returncode == 4, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "new.json").exists()  # refused before the estimate


@pytest.mark.parametrize("content", ["not json", '{"bound": 3}', "[1, 2]"])
def test_a_baseline_that_is_not_a_lipcert_report_exits_4(tmp_path: Path, baseline: Path, content: str) -> None:
    other = tmp_path / "other.json"
    other.write_text(content)
    done = gate(tmp_path, other)
    assert done.returncode == 4, done.stderr
    assert f"--baseline {other}" in done.stderr


def test_read_baseline_of_a_pairs_report_takes_the_largest_pair(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    pairs = [{"i": 0, "j": 1, "bound": 2.0}, {"i": 0, "j": 2, "bound": 5.0}]
    path.write_text(json.dumps({"schema_version": 1, "kind": "pairs", "method": "naive", "pairs": pairs}))
    base = read_baseline(path)
    assert base == Baseline(path, 5.0, "naive", "all pairs", "")
    with pytest.raises(BadInputError, match="bounds all pairs, this run bounds all outputs"):
        check_comparable(base, "naive", "all outputs")


@pytest.mark.parametrize("bound", ["NaN", "-1", "0"])
def test_a_baseline_bound_that_proves_nothing_is_refused(tmp_path: Path, bound: str) -> None:
    path = tmp_path / "b.json"
    head = '"schema_version": 1, "method": "naive", "selection": "all outputs"'
    path.write_text(f'{{{head}, "bound": {bound}}}')
    with pytest.raises(BadInputError, match="not a positive finite number"):
        read_baseline(path)
