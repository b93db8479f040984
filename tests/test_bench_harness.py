"""The benchmark harness (python -m benchmarks.harness) end to end on one tiny random conv net, in a temp dir."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors"
LIPCERT_ROWS = ("lipsdp-neuron", "lipsdp-layer")


def run_harness(tmp_path: Path, *args: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.harness", "--output-dir", str(tmp_path)]
    command += ["--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(tmp_path / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def check_rows(rows: list[dict]) -> None:
    for r in rows:
        assert r["status"] == "ok", r
        if r["method"] not in LIPCERT_ROWS and r["method"] != "naive":
            continue
        bound, lower, naive = float(r["bound"]), float(r["lower"]), float(r["naive"])
        assert bound >= lower, r  # a certified upper bound can never be below a true lower bound
        assert bound <= naive * (1 + 1e-9), r  # every group's bound is min(SDP, naive)
        assert float(r["bound_over_lower"]) >= 1 - 1e-4
        assert int(r["distinct_blocks"]) + int(r["reused_blocks"]) == int(r["blocks"])
        assert float(r["seconds"]) >= 0 and float(r["peak_mib"]) > 0


def test_harness_on_a_tiny_conv_net(tmp_path: Path) -> None:
    from benchmarks.harness import COLUMNS

    args = ["--models", "conv_d2_c2_6x6", "--extra-scaling", "2,2,6", "--no-plots"]
    args += ["--only", "|lower|", "|naive|", "|1x1|", "|2x2|coupled", "--quick"]
    rows = run_harness(tmp_path, *args)
    with open(tmp_path / "results.csv", newline="") as handle:
        assert next(csv.reader(handle)) == COLUMNS
    assert {r["method"] for r in rows} == {"lower", "naive", "lipsdp-neuron"}
    assert {r["split"] for r in rows if r["method"] == "lipsdp-neuron"} == {"1x1", "2x2"}
    assert len({r["commit"] for r in rows}) == 1 and rows[0]["commit"]
    assert all(r["machine"] for r in rows)
    check_rows(rows)
    results = (tmp_path / "RESULTS.md").read_text()
    assert "lipcert commit" in results and "conv_d2_c2_6x6" in results and "cvxpy" in results

    # resumable: a second run finds every configuration done and changes no row
    again = run_harness(tmp_path, *args)
    assert [r["timestamp"] for r in again] == [r["timestamp"] for r in rows]


@pytest.mark.skipif(not ANCHORS.is_dir(), reason=f"{ANCHORS} is absent: the anchor test reads ../shared/anchors")
def test_harness_on_the_lipsdp_reference_net(tmp_path: Path) -> None:
    args = ["--models", "random_2-10-30-20-2", "--no-plots", "--quick"]
    args += ["--only", "|lower|", "|naive|", "|lipsdp-neuron|1x1", "|eclipse"]
    rows = run_harness(tmp_path, *args)
    full = next(r for r in rows if r["method"] == "lipsdp-neuron")
    assert float(full["bound"]) == pytest.approx(36.482, rel=2e-3)  # LipSDP README (MOSEK)
    check_rows([r for r in rows if not r["method"].startswith("eclipse")])
    for r in rows:
        if r["method"].startswith("eclipse"):  # installed by `make bench-env`; otherwise the row says so
            assert r["status"] in ("ok", "unavailable"), r
            if r["status"] == "unavailable":
                assert "bench-env" in r["note"]


def test_the_full_model_list_is_not_the_quick_one(tmp_path: Path) -> None:
    # A regression: a loop variable once shadowed `quick`, and `make bench` silently ran the quick subset.
    from benchmarks.bench_models import SCALING, all_models

    full = {s.name for s in all_models(tmp_path)}
    quick = {s.name for s in all_models(tmp_path, quick=True)}
    assert quick < full
    assert {s.name for s in all_models(tmp_path) if s.source == "scaling"} == {
        f"conv_d{d}_c{c}_{n}x{n}" for d, c, n in SCALING
    }
    shared = REPO.parent / "shared" / "models"
    if shared.is_dir():
        assert {p.stem for p in shared.glob("*.onnx")} <= full


def test_the_report_shows_each_configurations_newest_run_and_the_limits_it_ran_under() -> None:
    from benchmarks.bench_report import commits_line, current_rows, newest_rows, time_limits

    def row(config: str, commit: str, stamp: str, split: str, combine: str, limit: str) -> dict:
        return {"config_id": config, "commit": commit, "timestamp": stamp, "method": "lipsdp-neuron",
                "split": split, "combine": combine, "time_limit": limit}  # fmt: skip

    rows = [
        row("a|default", "old", "2026-01-01", "auto", "auto", "90"),
        row("a|2x2", "old", "2026-01-02", "2x2", "paper", "240"),
        row("a|4x4", "old", "2026-01-03", "4x4", "paper", "120"),
        row("a|default", "new", "2026-02-01", "auto", "auto", "700"),  # re-run at a later commit
    ]
    assert {k: r["commit"] for k, r in newest_rows(rows).items()} == {
        "a|default": "new",
        "a|2x2": "old",
        "a|4x4": "old",
    }
    shown = current_rows(rows)
    assert [(r["config_id"], r["commit"]) for r in shown] == [("a|2x2", "old"), ("a|4x4", "old"), ("a|default", "new")]
    assert (
        commits_line(shown)
        == "per configuration, its newest run: `old` (2 rows); from other commits: `new` for `a|default`"
    )
    assert time_limits(shown, default=True) == "700"
    assert time_limits(shown, default=False) == "120 or 240"
