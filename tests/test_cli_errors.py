"""Bad input: a clear message naming the culprit and a documented exit code, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_BAD_INPUT, EXIT_UNSUPPORTED, ModelTooLargeError
from tests.conftest import SAMPLES

runner = CliRunner()


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def tiny_onnx(path: Path, weight: np.ndarray | None = None, pool: bool = False, broken: bool = False) -> Path:
    """Conv(1->2, 3x3) -> ReLU [-> LpPool, unsupported] -> Flatten -> Gemm on a 1x1x6x6 input."""
    weight = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32) if weight is None else weight
    side = 2 if pool else 4
    fc = np.ones((3, 2 * side * side), dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv_a"),
        helper.make_node("Relu", ["c"], ["r"], name="relu_a"),
    ]
    last = "r"
    if pool:
        nodes.append(helper.make_node("LpPool", ["r"], ["p"], name="pool_a", kernel_shape=[2, 2], strides=[2, 2]))
        last = "p"
    nodes += [
        helper.make_node("Flatten", [last], ["f"], name="flat_a"),
        helper.make_node("Gemm", ["f", "F"], ["y"], name="fc_a", transB=1),
    ]
    if broken:
        nodes.append(helper.make_node("Relu", ["does_not_exist"], ["z"], name="dangling"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(fc, "F")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_missing_file(tmp_path: Path) -> None:
    result = run("estimate", str(tmp_path / "nope.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nope.onnx: no such file" in result.output


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_corrupt_file(tmp_path: Path, damage: str) -> None:
    data = (SAMPLES / "digits_chain.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else np.random.default_rng(1).bytes(4096))
    result = run("estimate", str(bad), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "bad.onnx is not a readable ONNX model" in result.output


def test_checker_failure(tmp_path: Path) -> None:
    result = run("inspect", str(tiny_onnx(tmp_path / "broken.onnx", broken=True)))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "fails the ONNX checker" in result.output


def test_unsupported_operator_names_the_node(tmp_path: Path) -> None:
    result = run("estimate", str(tiny_onnx(tmp_path / "pool.onnx", pool=True)), "--method", "naive")
    assert result.exit_code == EXIT_UNSUPPORTED
    assert "node 'pool_a' has op type LpPool" in result.output
    assert "Supported on the data path:" in result.output and "Conv" in result.output


def test_inspect_gives_the_verdict_for_unsupported(tmp_path: Path) -> None:
    result = run("inspect", str(tiny_onnx(tmp_path / "pool.onnx", pool=True)))
    assert result.exit_code == EXIT_UNSUPPORTED
    assert "not supported" in result.output and "LpPool" in result.output


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_weights(tmp_path: Path, bad_value: float) -> None:
    weight = np.ones((2, 1, 3, 3), dtype=np.float32)
    weight[1, 0, 2, 2] = bad_value
    result = run("estimate", str(tiny_onnx(tmp_path / "nan.onnx", weight=weight)), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "weight 'W' has 1 NaN or infinite value(s)" in result.output


def test_model_too_large_for_a_full_lipsdp() -> None:
    # digits_chain's LMI is 384; its chordal extension's largest clique is 82.
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--split", "1x1", "--max-block-size", "50")
    assert result.exit_code == EXIT_UNSUPPORTED
    assert "the full LipSDP matrix would be 384x384" in result.output and "--split" in result.output
    assert "no chordal decomposition" in result.output


def test_full_lipsdp_over_the_budget_runs_over_chordal_cliques() -> None:
    args = ("--split", "1x1", "--max-block-size", "150", "--format", "json")
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), *args)
    assert result.exit_code == 0, result.output
    (block,) = json.loads(result.stdout)["blocks"]
    assert "chordal cliques" in block["source"] and block["size"] <= 150


def test_no_chordal_keeps_the_full_lipsdp_one_constraint() -> None:
    # The budget that the chordal cliques fit (previous test) refuses one 384x384 constraint.
    args = ("--split", "1x1", "--max-block-size", "150", "--no-chordal")
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), *args)
    assert result.exit_code == EXIT_UNSUPPORTED
    assert "the full LipSDP matrix would be 384x384" in result.output


def test_model_too_large_to_load() -> None:
    from lipcert.load import load_model

    with pytest.raises(ModelTooLargeError, match="320 neurons exceed the limit of 100.*--split"):
        load_model(SAMPLES / "digits_chain.onnx", max_neurons=100)


def test_pickle_needs_trust(tmp_path: Path) -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.pickle.pt"), "--input-shape", "1,8,8")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "Unpickling runs arbitrary code" in result.output and "--trust-pickle" in result.output


def test_state_dict_needs_arch() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.state_dict.pt"), "--input-shape", "1,8,8")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--arch" in result.output


def test_bad_arch_is_named() -> None:
    args = ["--input-shape", "1,8,8", "--arch", f"{SAMPLES / 'architectures.py'}:NoSuchNet"]
    result = run("estimate", str(SAMPLES / "digits_chain.state_dict.pt"), *args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'NoSuchNet' is not an nn.Module class" in result.output


def test_torchscript_needs_input_shape(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "digits_chain.ts", tmp_path / "m.ts")
    result = run("estimate", str(tmp_path / "m.ts"), "--method", "naive")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--input-shape" in result.output


@pytest.mark.parametrize("split", ["0x2", "2", "axb"])
def test_bad_split_is_a_usage_error(split: str) -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--split", split)
    assert result.exit_code == 2
    assert "--split" in result.output


def test_a_solver_failure_with_no_sound_fallback_exits_6(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCS raises and the naive bound cannot be certified either: no sound bound exists, exit 6."""
    from lipcert.errors import EXIT_SOLVER
    from tests.support import break_the_solver

    break_the_solver(monkeypatch)
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--split", "1x1", "--jobs", "1", "--no-chordal")
    assert result.exit_code == EXIT_SOLVER
    assert "no sound bound" in result.output and "naive bound failed" in result.output
