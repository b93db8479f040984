"""--output-node: the sub-network from the input up to one ONNX node's output tensor."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import onnx
from onnx import helper

from lipcert.errors import BadInputError


def truncate_at(model: onnx.ModelProto, name: str, path: Path) -> onnx.ModelProto:
    """The model whose only output is the output of node `name` (or the tensor `name`).

    `name` is an ONNX node name, an output tensor name, or the name `lipcert inspect` shows
    for the node (torch.fx's spelling of the ONNX name, e.g. fc_gemm for /fc/Gemm).
    """
    tensor = _resolve(model, name, path)
    graph = model.graph
    needed, keep = {tensor}, []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    kept_nodes = list(reversed(keep))
    inferred = _value_info(model)
    output = inferred.get(tensor) or helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)
    initializers = [i for i in graph.initializer if i.name in needed]
    inputs = [i for i in graph.input if i.name in needed or i.name not in {x.name for x in graph.initializer}]
    new_graph = helper.make_graph(kept_nodes, graph.name, inputs, [output], initializers)
    new_graph.value_info.extend(v for k, v in inferred.items() if k in needed and k != tensor)
    truncated = helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return truncated


def _value_info(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    graph = inferred.graph
    return {v.name: v for v in (*graph.value_info, *graph.output)}


def fx_style(name: str) -> str:
    """How torch.fx spells a module name: CamelCase to snake_case, other characters to '_'."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    snake = re.sub(r"[^0-9a-zA-Z_]", "_", snake)
    return f"_{snake}" if snake[:1].isdigit() else snake


def _resolve(model: onnx.ModelProto, name: str, path: Path) -> str:
    graph = model.graph
    by_node = {node.name: node.output[0] for node in graph.node if node.name}
    tensors = {out for node in graph.node for out in node.output if out}
    if name in by_node:
        return by_node[name]
    if name in tensors:
        return name
    by_fx = {fx_style(node.name): node.output[0] for node in graph.node if node.name}
    if name in by_fx:
        return by_fx[name]
    known = list(by_node) or sorted(tensors)
    near = difflib.get_close_matches(name, known + list(by_fx), n=6, cutoff=0.4)
    listed = near or known[-8:]
    which = "nearby names" if near else "the last nodes of the graph"
    raise BadInputError(
        f"{path}: --output-node '{name}' is neither a node nor a tensor of the graph; {which}: {', '.join(listed)}"
    )
