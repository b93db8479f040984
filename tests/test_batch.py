"""Batch runs: broken files are recorded, and a run killed with SIGKILL resumes to the same CSV."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, SAMPLES

# Naive tile bounds keep the runs short; the blocks, cache and resume logic are the same as for LipSDP.
OPTIONS = ["--method", "naive", "--split", "2x2", "--combine", "overlap", "--jobs", "1"]


def make_folder(root: Path) -> Path:
    folder = root / "ckpts"
    folder.mkdir()
    for name in ("digits_chain", "digits_tanh", "digits_residual"):
        shutil.copy(SAMPLES / f"{name}.onnx", folder / f"{name}.onnx")
    (folder / "broken.onnx").write_bytes(b"not a model at all")
    return folder


def batch_command(folder: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "lipcert", "batch", str(folder), "--output", str(output), *OPTIONS]


def run(folder: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run(batch_command(folder, output), capture_output=True, text=True, cwd=REPO, timeout=900)


def solved_in(result: subprocess.CompletedProcess) -> tuple[int, int]:
    found = re.search(
        r"blocks solved in this run: (\d+); taken from an earlier run: (\d+)", " ".join(result.stdout.split())
    )
    assert found, result.stdout
    return int(found[1]), int(found[2])


def test_killed_batch_resumes_to_the_same_csv(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    reference = run(folder, tmp_path / "ref" / "results.csv")
    assert reference.returncode == 4  # the broken file is recorded, and the run goes on
    total, _ = solved_in(reference)

    output = tmp_path / "run" / "results.csv"
    blocks = output.with_name("results.csv.cache") / "blocks"
    process = subprocess.Popen(
        batch_command(folder, output), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(blocks.rglob("*.json"))) < 3:
        assert process.poll() is None, f"the batch run ended early: {process.stderr.read()}"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    finished = len(list(blocks.rglob("*.json")))
    assert 3 <= finished < total, "the kill should land partway through"

    resumed = run(folder, output)
    solved, cached = solved_in(resumed)
    assert solved == total - finished and cached + solved <= total
    assert output.read_text() == (tmp_path / "ref" / "results.csv").read_text()
    assert not list(output.parent.glob(".*.tmp")), "no temporary files are left behind"


def test_csv_records_the_error_and_the_bounds(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    result = run(folder, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].startswith("file,sha256,status,bound")
    broken = next(line for line in lines if "broken.onnx" in line)
    assert ",error," in broken and "is not a readable ONNX model" in broken
    assert sum(",ok," in line for line in lines) == 3
    assert "3 certified, 1 failed" in result.stdout


def test_a_resumed_batch_removes_only_its_outputs_stale_temporaries(tmp_path: Path) -> None:
    from lipcert.report.files import remove_stale_temporaries

    output = tmp_path / "results.csv"
    stale = [tmp_path / ".results.csv.abc123.tmp", tmp_path / ".results.csv.x_y.tmp"]
    kept = [tmp_path / ".other.csv.abc123.tmp", tmp_path / "results.csv", tmp_path / ".results.csv.tmp.keep"]
    for path in stale + kept:
        path.write_text("x")
    remove_stale_temporaries(output)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
