"""Graph clean-up before onnx2torch: each change checked against onnx's reference evaluator.

Real files must come out unchanged (bit for bit) unless something needed changing.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import lipcert.load.cleanup as cleanup
from lipcert.errors import UnsupportedModelError
from lipcert.load import load_model
from lipcert.load.cleanup import as_float64, clean_graph
from tests.conftest import ANCHORS_DIR, MODELS_DIR, requires_anchors, requires_shared_models, shared_model_names

RNG = np.random.default_rng(0)


def _init(name: str, *shape: int, low: float = -1.0, high: float = 1.0) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.uniform(low, high, shape).astype(np.float32), name)


def opset7_dropout_model(batchnorm: bool = False) -> onnx.ModelProto:
    """Conv [-> BatchNormalization-7] -> Relu -> Dropout-7 -> Flatten -> Gemm, opset 7 (IR 3).

    onnx2torch has no converter for Dropout-7, Flatten-7, Gemm-7 or BatchNormalization-7.
    """
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn", epsilon=1e-5)
        if batchnorm
        else helper.make_node("Identity", ["c"], ["n"], name="no_bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r"], ["d"], name="dropout", ratio=0.3),
        helper.make_node("Flatten", ["d"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "F", "fb"], ["y"], name="fc", transB=1),
    ]
    weights = [_init("W", 3, 1, 3, 3), _init("F", 4, 3 * 6 * 6), _init("fb", 4)]
    if batchnorm:
        weights += [_init("g", 3, low=0.5, high=1.5), _init("b", 3), _init("m", 3), _init("v", 3, low=0.5, high=2.0)]
    # IR 3 lists the initializers among the graph inputs, as old exporters wrote them.
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])]
    inputs += [helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.dims)) for w in weights]
    graph = helper.make_graph(
        nodes, "opset7", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], weights
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)], ir_version=3)
    onnx.checker.check_model(model)
    return model


def test_opset7_dropout_model_loads_and_matches_the_reference(tmp_path: Path) -> None:
    model = opset7_dropout_model()
    onnx.save(model, tmp_path / "opset7.onnx")
    loaded = load_model(tmp_path / "opset7.onnx")
    assert any("Dropout 'dropout'" in c and c.startswith("removed") for c in loaded.graph_changes)
    assert any(c.startswith("opset 7 -> 11") and "'fc' (Gemm, opset 7)" in c for c in loaded.graph_changes)
    net = loaded.network
    reference = ReferenceEvaluator(as_float64(model))
    x = RNG.standard_normal((3, net.n_x))
    expected = np.concatenate([reference.run(None, {"x": row.reshape(1, 1, 6, 6)})[0] for row in x])
    # Same float64 function, summed in another order: agreement to a few ulps of the output.
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    step = 1e-6  # central differences of the reference evaluator: error ~ step^2 |f'''| (zero off kinks)
    columns = []
    for k in range(net.n_x):
        e = np.zeros(net.n_x)
        e[k] = step
        hi = reference.run(None, {"x": (x[0] + e).reshape(1, 1, 6, 6)})[0]
        lo = reference.run(None, {"x": (x[0] - e).reshape(1, 1, 6, 6)})[0]
        columns.append(((hi - lo) / (2 * step)).ravel())
    np.testing.assert_allclose(net.jacobian(x[0]), np.stack(columns, axis=1), rtol=1e-6, atol=1e-8)


def _graph(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])


def test_identity_and_inference_dropout_are_removed_even_on_the_output() -> None:
    false = numpy_helper.from_array(np.array(False), "mode")
    ratio = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "ratio")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
        helper.make_node("Dropout", ["h", "ratio", "mode"], ["d"], name="drop12"),
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["y"], name="id_out"),
    ]
    model = _graph(nodes, [X], [Y], [_init("W", 3, 4), false, ratio])
    cleaned, steps = clean_graph(model, Path("m"), (1, 4))
    assert [n.op_type for n in cleaned.graph.node] == ["Gemm", "Relu"]
    assert cleaned.graph.node[1].output[0] == "y" and "Dropout 'drop12'" in steps[0] and "Identity" in steps[0]


def test_training_mode_dropout_is_refused() -> None:
    true = numpy_helper.from_array(np.array(True), "mode")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
        helper.make_node("Dropout", ["h", "", "mode"], ["y"], name="drop_train"),
    ]
    with pytest.raises(UnsupportedModelError, match="'drop_train' .*training_mode"):
        clean_graph(_graph(nodes, [X], [Y], [_init("W", 3, 4), true]), Path("m"), (1, 4))


def test_integer_shape_arithmetic_folds_and_float_arithmetic_stays() -> None:
    """Concat of int64 constants folds (exact); W * 2 stays for the tracer's float64 evaluation."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    a = numpy_helper.from_array(np.array([1], dtype=np.int64), "a")
    b = numpy_helper.from_array(np.array([-1], dtype=np.int64), "b")
    nodes = [
        helper.make_node("Mul", ["W", "two"], ["W2"], name="scale_w"),
        helper.make_node("Concat", ["a", "b"], ["shape"], name="shape_concat", axis=0),
        helper.make_node("Gemm", ["x", "W2"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape"),
    ]
    model = _graph(nodes, [X], [Y], [_init("W", 3, 4), two, a, b])
    cleaned, steps = clean_graph(model, Path("m"), (1, 4))
    assert steps == ["folded constant Concat 'shape_concat'"]
    ops = [n.op_type for n in cleaned.graph.node]
    assert "Mul" in ops and "Concat" not in ops


def test_a_rewrite_that_changes_the_function_is_refused_with_both_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _graph(
        [
            helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
            helper.make_node("Identity", ["h"], ["i"], name="noop"),
            helper.make_node("Relu", ["i"], ["y"], name="relu"),
        ],
        [X], [Y], [_init("W", 3, 4)],
    )  # fmt: skip
    real = cleanup.remove_no_ops

    def broken(m: onnx.ModelProto):  # noqa: ANN202 - a faulty pass: also turns the Relu into a Sigmoid
        m, steps = real(m)
        m.graph.node[-1].op_type = "Sigmoid"
        return m, steps

    monkeypatch.setattr(cleanup, "remove_no_ops", broken)
    with pytest.raises(UnsupportedModelError, match="removed Identity 'noop'.*does not reproduce the original"):
        clean_graph(model, Path("m"), (1, 4))


def test_no_upgrade_path_names_the_node_and_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup, "UPGRADE_TARGETS", (8,))  # only a target onnx2torch lacks BN for
    with pytest.raises(UnsupportedModelError, match=r"'bn' \(BatchNormalization, opset 7\).*opset 8: still no"):
        clean_graph(opset7_dropout_model(batchnorm=True), Path("m"), (1, 1, 6, 6))


def test_opset7_batchnorm_is_upgraded_and_checked(tmp_path: Path) -> None:
    """onnx's reference BatchNormalization for opsets 6-8 fails to run; lipcert checks it with its own."""
    onnx.save(opset7_dropout_model(batchnorm=True), tmp_path / "bn7.onnx")
    loaded = load_model(tmp_path / "bn7.onnx")
    assert any("'bn' (BatchNormalization, opset 7)" in c for c in loaded.graph_changes)
    x = RNG.standard_normal(loaded.network.n_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = loaded.module.double()(torch.tensor(x.reshape(1, 1, 6, 6))).detach().numpy().ravel()
    np.testing.assert_allclose(loaded.network.forward(x[None])[0], expected, rtol=1e-10, atol=1e-12)


def _real_files() -> list[Path]:
    files = [MODELS_DIR / n for n in shared_model_names()]
    return files + (sorted(ANCHORS_DIR.glob("*/*.onnx")) if ANCHORS_DIR.is_dir() else [])


@requires_shared_models
@requires_anchors
@pytest.mark.parametrize("path", _real_files(), ids=lambda p: p.name)
def test_real_files_reach_onnx2torch_unchanged(path: Path) -> None:
    """Nothing to clean in these files: onnx2torch gets the same bytes, so the form is the same bit for bit."""
    model = onnx.load(str(path))
    before = model.SerializeToString()
    cleaned, steps = clean_graph(copy.deepcopy(model), path, (1,))
    assert steps == [] and cleaned.SerializeToString() == before


@requires_anchors
@pytest.mark.parametrize("name", ["lipsdp/random_2-10-30-20-2.onnx", "glipsdp/digits_cnn3_seed0.onnx"])
def test_form_is_the_same_with_and_without_the_clean_up(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_model(ANCHORS_DIR / name).network
        b = load_model(ANCHORS_DIR / name, clean_graph=False).network
    for m in "ABCD":
        assert (getattr(a, m) != getattr(b, m)).nnz == 0
    assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.beta, b.beta)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
