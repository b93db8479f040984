"""One registry of ONNX operators: `inspect --ops` lists all of it, the loader refuses what is not in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import UnsupportedModelError
from lipcert.load.onnx_loader import check_supported_ops
from lipcert.network.activations import ACTIVATIONS
from lipcert.network.ops import KINDS, PATTERNS, REGISTRY


def test_inspect_ops_lists_every_registered_operator_and_pattern() -> None:
    result = CliRunner().invoke(app, ["inspect", "--ops"], env={"COLUMNS": "400"})  # one line per row
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") >= 4}
    assert set(REGISTRY) <= rows
    text = " ".join(result.output.split())
    for pattern in PATTERNS:
        assert pattern.name in text
    assert "[-1/2, 3/2]" in text and "[0, 1/6]" in text and "[min(a, 1), max(a, 1)]" in text


def test_registry_is_consistent() -> None:
    for rule in REGISTRY.values():
        assert rule.kind in KINDS
        assert not rule.activation or rule.activation in ACTIVATIONS
    assert all(p.activation in ACTIVATIONS for p in PATTERNS)


@pytest.mark.parametrize("op", ["Sin", "LpNormalization", "Erf"])
def test_an_operator_outside_the_registry_is_refused_by_node(op: str) -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
        helper.make_node(op, ["h"], ["y"], name=f"the_{op.lower()}"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedModelError, match=f"node 'the_{op.lower()}' has op type {op}"):
        check_supported_ops(model, Path("m"))
