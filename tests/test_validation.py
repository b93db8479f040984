"""Everything that can be refused is refused before the solve; bad files say what is wrong with them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_BAD_INPUT, EXIT_USAGE, BadInputError
from lipcert.report.files import check_writable, write_atomic
from tests.conftest import REPO, SAMPLES

runner = CliRunner()
CHAIN = str(SAMPLES / "digits_chain.onnx")
ROOT = os.geteuid() == 0  # root writes into read-only folders: a read-only mount stands in for them


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def unwritable(tmp_path: Path) -> Path:
    """An output path whose folder cannot be written to, whoever runs the test."""
    if ROOT:
        return Path("/proc/lipcert-test/report.json")  # procfs: no folder can be created there
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return folder / "report.json"


# ---------------------------------------------------------------- output paths, before the solve


@pytest.mark.parametrize("kind", ["read-only", "directory"])
def test_an_unwritable_output_fails_before_the_solve(tmp_path: Path, kind: str) -> None:
    target = unwritable(tmp_path) if kind == "read-only" else tmp_path
    start = time.perf_counter()
    # The default method (SDPs, seconds at least): failing in under 2 s shows nothing was solved.
    done = subprocess.run(
        [sys.executable, "-m", "lipcert", "estimate", CHAIN, "--format", "json", "--output", str(target)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "--output" in done.stderr and "internal error" not in done.stderr
    assert ("is a directory" if kind == "directory" else "cannot be written") in done.stderr
    assert done.stdout == ""
    assert elapsed < 2 + _interpreter_start(), f"{elapsed:.1f} s to fail"


def _interpreter_start() -> float:
    """Python's own start-up here (torch-free), so that a loaded machine does not fail the 2 s bar."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def test_a_missing_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "r.json"
    check_writable(out)
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []  # the probe is gone


@pytest.mark.parametrize(
    ("command", "option"), [("plan", "--output"), ("lower", "--output"), ("estimate", "--heatmap")]
)
def test_other_outputs_are_checked_too(tmp_path: Path, command: str, option: str) -> None:
    result = run(command, CHAIN, option, str(tmp_path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"{option} {tmp_path} is a directory" in result.output


def test_batch_checks_its_csv_before_the_first_model(tmp_path: Path) -> None:
    result = run("batch", str(Path(CHAIN).parent), "--output", str(tmp_path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"--output {tmp_path} is a directory" in result.output


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "r.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~mask


def test_write_atomic_names_the_path_when_it_cannot(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot be written"):
        write_atomic(unwritable(tmp_path), "x")


# ---------------------------------------------------------------- solver settings and --heatmap, before the solve


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--eps", "-1"), "--eps"),
        (("--eps", "0"), "--eps"),
        (("--eps", "nan"), "--eps"),
        (("--max-iters", "0"), "--max-iters"),
        (("--max-block-size", "0"), "--max-block-size"),
        (("--time-limit", "0"), "--time-limit"),
        (("--logit", "10"), "--logit"),
        (("--logit", "-1"), "--logit"),
        (("--pair", "3,3"), "--pair"),
        (("--pair", "3"), "--pair"),
        (("--pair", "0,10"), "--pair"),
        (("--pairs", "some"), "--pairs"),
    ],
)
def test_out_of_range_settings_are_usage_errors(args: tuple[str, ...], option: str) -> None:
    result = run("estimate", CHAIN, *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert option in result.output


def test_heatmap_is_checked_against_the_plan_before_the_solve(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = run("estimate", CHAIN, "--split", "1x1", "--heatmap", str(tmp_path / "h.png"))
    assert result.exit_code == EXIT_USAGE
    assert "--heatmap" in result.output and "per-tile bounds" in result.output
    assert time.perf_counter() - start < 10  # a full LipSDP solve of digits_chain takes longer
    coupled = run("estimate", CHAIN, "--split", "2x2", "--combine", "coupled", "--heatmap", str(tmp_path / "h.png"))
    assert coupled.exit_code == EXIT_USAGE
    assert not (tmp_path / "h.png").exists()


@pytest.mark.parametrize(
    ("command", "args", "option"),
    [
        ("sweep", ("--combines", "foo"), "--combines"),
        ("sweep", ("--combines", "paper,bogus"), "--combines"),
        ("sweep", ("--eps", "-1"), "--eps"),
        ("radius", ("--inputs", "x.npy", "--eps", "0"), "--eps"),
        ("radius", ("--inputs", "x.npy", "--radii", "nan"), "--radii"),
        ("plan", ("--max-block-size", "0"), "--max-block-size"),
    ],
)
def test_usage_mistakes_of_other_commands_exit_2(command: str, args: tuple[str, ...], option: str) -> None:
    result = run(command, CHAIN, *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert option in result.output


# ---------------------------------------------------------------- --input-shape against the first layer


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        ("digits_chain.onnx", "1,9,9", "a linear layer reads 64 features and gets 100 from this input"),
        ("digits_chain.onnx", "64", "input shape 64 (--input-shape) does not fit the model"),
        ("digits_chain.ts", "3,8,8", "a convolution reads 1 channels and gets 3 from this input"),
        ("digits_chain.ts", "1,9,9", "input shape 1x9x9 (--input-shape) does not fit the model"),
    ],
)
def test_an_input_shape_that_does_not_fit_is_bad_input(model: str, shape: str, message: str) -> None:
    result = run("estimate", str(SAMPLES / model), "--method", "naive", "--input-shape", shape)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert message in result.output and "internal error" not in result.output


def test_a_declared_shape_that_does_not_fit_names_the_file(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(CHAIN)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 9, 9  # declared 1x9x9, the Gemm reads 64 = 4x4x4 features
    path = tmp_path / "mismatch.onnx"
    onnx.save(model, path)
    result = run("estimate", str(path), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "input shape 1x9x9 (the input shape the file declares) does not fit the model" in result.output


# ---------------------------------------------------------------- files: what is wrong with them


def test_a_symlink_loop_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    result = run("estimate", str(tmp_path / "a.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "symbolic link loop" in result.output


def test_a_directory_says_so(tmp_path: Path) -> None:
    result = run("inspect", str(tmp_path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "is a directory, not a model file" in result.output


@pytest.mark.skipif(ROOT, reason="root reads files whatever their mode")
def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "locked.onnx"
    path.write_bytes((SAMPLES / "digits_chain.onnx").read_bytes())
    path.chmod(0)
    result = run("estimate", str(path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "permission denied" in result.output


def test_a_legacy_torch_save_file_is_read_as_torch_save(tmp_path: Path) -> None:
    state = torch.load(SAMPLES / "digits_chain.state_dict.pt", weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    plain = run("estimate", str(legacy), "--method", "naive", "--input-shape", "1,8,8")
    assert plain.exit_code == EXIT_BAD_INPUT
    assert "not a readable ONNX model" not in plain.output and "--arch" in plain.output  # a state_dict
    arch = f"{SAMPLES / 'architectures.py'}:DigitsChain"
    args = ("--method", "naive", "--input-shape", "1,8,8", "--arch", arch, "--format", "json")
    done = run("estimate", str(legacy), *args)
    assert done.exit_code == 0, done.output
    reference = run("estimate", CHAIN, "--method", "naive", "--format", "json")
    assert json.loads(done.stdout)["bound"] == pytest.approx(json.loads(reference.stdout)["bound"], rel=1e-9)
    assert json.loads(done.stdout)["arch"] == arch  # --arch is recorded


@pytest.mark.parametrize("kind", ["directory", "loop"])
def test_radius_inputs_that_are_not_a_file_say_so(tmp_path: Path, kind: str) -> None:
    inputs = tmp_path
    if kind == "loop":
        inputs = tmp_path / "a.npy"
        inputs.symlink_to(tmp_path / "b.npy")
        (tmp_path / "b.npy").symlink_to(inputs)
    result = run("radius", CHAIN, "--inputs", str(inputs), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert ("is a directory, not a file of inputs" if kind == "directory" else "symbolic link loop") in result.output


def test_radius_with_zero_inputs_is_bad_input(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((0, 1, 8, 8)))
    result = run("radius", CHAIN, "--inputs", str(tmp_path / "x.npy"), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "holds no inputs" in result.output


def test_the_shape_check_runs_in_eval_mode_and_keeps_the_modules_modes() -> None:
    from torch import nn

    from lipcert.load import load_module

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)).train()
    loaded = load_module(model, (4,))  # a training-mode BatchNorm would refuse the batch of one
    assert loaded.network.n_x == 4
    assert all(m.training for m in model.modules())
    with pytest.raises(BadInputError, match=r"input shape 5 \(--input-shape\) does not fit the model"):
        load_module(model, (5,))
