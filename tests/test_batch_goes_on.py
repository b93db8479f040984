"""batch goes on after any error in one model, a bug included; a signal stops it and caches nothing of its model."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipcert import batch as batch_module
from lipcert.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_SIGINT
from lipcert.estimate import EstimateOptions
from tests.conftest import REPO, SAMPLES

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
CHEAP = ["--method", "naive", "--split", "2x2", "--combine", "overlap", "--jobs", "1"]


def shape_mismatched(path: Path) -> None:
    """Declares 5 inputs, but its first Gemm reads 8."""
    weight = numpy_helper.from_array(np.ones((3, 8), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])],
        "mismatch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def folder_of_four(root: Path) -> Path:
    folder = root / "ckpts"
    folder.mkdir()
    shape_mismatched(folder / "a_mismatch.onnx")
    (folder / "b_random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    for name in ("digits_chain", "digits_tanh"):
        shutil.copy(SAMPLES / f"{name}.onnx", folder / f"c_{name}.onnx")
    return folder


def batch(folder: Path, output: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "lipcert", "batch", str(folder), "--output", str(output), *options]


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_batch_over_broken_and_good_models_writes_every_row(tmp_path: Path) -> None:
    folder = folder_of_four(tmp_path)
    out = tmp_path / "out.csv"
    done = subprocess.run(batch(folder, out, *CHEAP), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    found = rows(out)
    assert len(found) == 4
    assert [r["status"] for r in found] == ["error", "error", "ok", "ok"]
    assert all(r["error"] and int(r["exit_code"]) > 0 for r in found[:2])


def test_an_internal_error_in_one_model_is_its_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = batch_module.estimate

    def estimate(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "chain" in str(model.path):
            raise RuntimeError("a bug")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(batch_module, "estimate", estimate)
    files = [SAMPLES / "digits_chain.onnx", SAMPLES / "digits_tanh.onnx"]
    cache, out = tmp_path / "cache", tmp_path / "out.csv"
    report = batch_module.run_batch(files, EstimateOptions(method="naive"), cache, out)
    first, second = report.rows
    assert (first.status, first.exit_code) == ("error", EXIT_INTERNAL) and "RuntimeError: a bug" in first.error
    assert second.status == "ok"
    assert len(list((cache / "models").glob("*.json"))) == 1  # a bug's row is not cached: the next run retries


def test_a_signal_is_not_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def estimate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_module, "estimate", estimate)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        batch_module.run_batch([SAMPLES / "digits_chain.onnx"], EstimateOptions(method="naive"), cache, tmp_path / "o")
    assert not list(cache.rglob("*.json"))


def interrupt_midway(command: list[str], blocks: Path, at_least: int) -> subprocess.CompletedProcess:
    """SIGINT the batch once `at_least` blocks are cached."""
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(blocks.rglob("*.json"))) < at_least:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


# Blocks that take a while: naive blocks of these models, their norms remembered, all come within
# 0.3 s once loaded, and a SIGINT after the third one often found the batch done under load. These
# (10 SCS solves) spread over about 5 s.
SPACED = ["--method", "lipsdp-layer", "--split", "2x2", "--combine", "overlap", "--jobs", "1"]


def test_a_batch_rerun_after_sigint_writes_the_same_csv(tmp_path: Path) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for name in ("digits_chain", "digits_tanh"):
        shutil.copy(SAMPLES / f"{name}.onnx", folder / f"{name}.onnx")
    reference = tmp_path / "ref.csv"
    subprocess.run(batch(folder, reference, *SPACED), cwd=REPO, env=ENV, capture_output=True, timeout=600, check=True)
    out = tmp_path / "run" / "out.csv"
    stopped = interrupt_midway(batch(folder, out, *SPACED), out.with_name("out.csv.cache") / "blocks", 3)
    assert stopped.returncode == EXIT_SIGINT, stopped.stderr
    assert len(stopped.stderr.decode().splitlines()) == 1
    rerun = subprocess.run(batch(folder, out, *SPACED), cwd=REPO, env=ENV, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_text() == reference.read_text()
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_a_batch_stopped_inside_scs_reruns_to_the_same_csv(tmp_path: Path) -> None:
    """The issue's case: the SIGINT lands in an SCS solve, which must not become a cached fallback."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(SAMPLES / "digits_chain.onnx", folder / "digits_chain.onnx")
    options = ["--split", "2x2", "--combine", "overlap", "--jobs", "1"]
    reference = tmp_path / "ref.csv"
    subprocess.run(batch(folder, reference, *options), cwd=REPO, env=ENV, capture_output=True, timeout=1800, check=True)
    out = tmp_path / "run" / "out.csv"
    stopped = interrupt_midway(batch(folder, out, *options), out.with_name("out.csv.cache") / "blocks", 1)
    assert stopped.returncode == EXIT_SIGINT, stopped.stderr
    subprocess.run(batch(folder, out, *options), cwd=REPO, env=ENV, capture_output=True, timeout=1800, check=True)
    assert out.read_text() == reference.read_text()
