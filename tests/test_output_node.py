"""--output-node: a final Softmax is refused with advice; with the logits node named, the model is certified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipcert.errors import EXIT_BAD_INPUT, EXIT_UNSUPPORTED
from lipcert.load import load_model
from tests.test_cli_errors import run


def softmax_onnx(path: Path, op: str = "Softmax") -> Path:
    """Conv(1->2, 3x3) -> ReLU -> Flatten -> Gemm 'logits' -> Softmax 'probs' on a 1x1x5x5 input."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "F"], ["z"], name="logits", transB=1),
        helper.make_node(op, ["z"], ["y"], name="probs", axis=1),
    ]
    weights = [
        numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((3, 18)).astype(np.float32), "F"),
    ]
    graph = helper.make_graph(
        nodes, "softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], weights,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_final_softmax_is_refused_and_names_the_logits_node(tmp_path: Path, op: str) -> None:
    result = run("estimate", str(softmax_onnx(tmp_path / "m.onnx", op)), "--method", "naive")
    assert result.exit_code == EXIT_UNSUPPORTED
    text = " ".join(result.output.split())
    assert f"node 'probs' ({op}) computes the model's output" in text and "--output-node logits" in text


def test_with_output_node_the_logits_are_certified(tmp_path: Path) -> None:
    model = softmax_onnx(tmp_path / "m.onnx")
    result = run("estimate", str(model), "--output-node", "logits", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["output_shape"] == [3] and report["bound"] > 0
    assert any("--output-node" in note for note in report["notes"])
    # The certified function is the Gemm's output: the form's Jacobian is its weight times the ReLU mask.
    net = load_model(model, output_node="logits").network
    assert net.n_y == 3 and len(net.layers) == 1


def test_output_node_by_tensor_name_and_in_plan_and_batch(tmp_path: Path) -> None:
    model = softmax_onnx(tmp_path / "m.onnx")
    assert load_model(model, output_node="z").network.n_y == 3  # the tensor name works too
    plan = run("plan", str(model), "--output-node", "logits")
    assert plan.exit_code == 0 and "groups:" in plan.output
    out = tmp_path / "results.csv"
    batch = run("batch", str(tmp_path), "--output", str(out), "--output-node", "logits", "--method", "naive")
    assert batch.exit_code == 0, batch.output
    assert ",ok," in out.read_text()


def test_radius_with_output_node(tmp_path: Path) -> None:
    model = softmax_onnx(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((2, 1, 5, 5)))
    inputs = str(tmp_path / "x.npy")
    result = run("radius", str(model), "--inputs", inputs, "--output-node", "logits", "--method", "naive")
    assert result.exit_code == 0, result.output


def test_unknown_output_node_lists_nearby_names(tmp_path: Path) -> None:
    result = run("estimate", str(softmax_onnx(tmp_path / "m.onnx")), "--output-node", "logit")
    assert result.exit_code == EXIT_BAD_INPUT
    text = " ".join(result.output.split())
    assert "--output-node 'logit' is neither a node nor a tensor" in text and "logits" in text
