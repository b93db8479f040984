"""Read an ONNX file, check it, and convert it into a torch.fx graph with onnx2torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from torch import fx

from lipcert.errors import BadInputError, UnsupportedModelError
from lipcert.load.cleanup import clean_graph
from lipcert.load.custom_ops import register_converter, vmap_friendly
from lipcert.load.truncate import truncate_at
from lipcert.network.ops import DATA_PATH_OPS, REFUSED, REGISTRY, SHAPE_ONLY


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load with external data (weights in .onnx.data files) and run the checker."""
    try:
        model = onnx.load(str(path), load_external_data=True)
    except FileNotFoundError as err:  # a missing external-data file
        raise BadInputError(f"{path}: external weight file not found: {err.filename or err}") from None
    except Exception as err:  # protobuf raises several types for truncated or random bytes
        raise BadInputError(f"{path} is not a readable ONNX model ({type(err).__name__}: {err})") from None
    if not model.graph.node:
        raise BadInputError(f"{path} is not a readable ONNX model: its graph has no nodes")
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise BadInputError(f"{path} fails the ONNX checker: {err}") from None
    return model


def input_shape(model: onnx.ModelProto, path: Path, override: tuple[int, ...] | None) -> tuple[int, ...]:
    """The single graph input's shape, batch dimension included and set to 1."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise UnsupportedModelError(f"{path}: the graph has {len(inputs)} inputs ({names}); lipcert needs one")
    dims = inputs[0].type.tensor_type.shape.dim
    if override is not None:
        return (1, *override)
    shape = []
    for k, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif k == 0:
            shape.append(1)  # a symbolic batch dimension
        else:
            raise BadInputError(
                f"{path}: input '{inputs[0].name}' has a symbolic dimension "
                f"'{dim.dim_param or '?'}' at position {k}; pass --input-shape"
            )
    return tuple(shape)


def check_finite_weights(model: onnx.ModelProto, path: Path) -> None:
    tensors = [(init.name, init) for init in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [(node.name or node.output[0], a.t) for a in node.attribute if a.name == "value"]
    for name, tensor in tensors:
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.isfinite(values).sum())
            raise BadInputError(f"{path}: weight '{name}' has {bad} NaN or infinite value(s)")


def check_supported_ops(model: onnx.ModelProto, path: Path) -> None:
    """Refuse, by node name, any unsupported operator that acts on the network's values.

    Run after the clean-up and rewrites (lipcert/load/cleanup.py): an operator that only a
    rewrite can read (Erf outside GELU) is refused here when no rewrite consumed it.
    """
    initializers = {init.name for init in model.graph.initializer}
    variable = {i.name for i in model.graph.input if i.name not in initializers}
    for node in model.graph.node:
        rule = REGISTRY.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if (rule is not None and rule.kind == SHAPE_ONLY) or not any(name in variable for name in node.input):
            continue
        if node.domain == "lipcert":
            variable.update(node.output)
            continue
        if rule is None or rule.kind == REFUSED or not rule.traced:
            raise UnsupportedModelError(_refusal(model, node, rule, path))
        if node.op_type == "MaxPool" and len(node.output) > 1 and _consumed(model, node.output[1]):
            raise UnsupportedModelError(f"{path}: node '{node_name(node)}' (MaxPool): its Indices output is used")
        variable.update(node.output)


def node_name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _consumed(model: onnx.ModelProto, tensor: str) -> bool:
    return any(tensor in n.input for n in model.graph.node) or any(o.name == tensor for o in model.graph.output)


def _refusal(model: onnx.ModelProto, node: onnx.NodeProto, rule, path: Path) -> str:  # noqa: ANN001 - OpRule | None
    name = node_name(node)
    if node.op_type in ("Softmax", "LogSoftmax") and _feeds_output(model, node):
        logits = _producer_name(model, node.input[0])
        return (
            f"{path}: node '{name}' ({node.op_type}) computes the model's output; lipcert certifies the "
            f"logits before it: pass --output-node {logits}"
        )
    reason = f": {rule.how}" if rule is not None else ""
    return (
        f"{path}: node '{name}' has op type {node.op_type}, which lipcert does not support{reason}. "
        f"Supported on the data path: {', '.join(sorted(DATA_PATH_OPS))} (`lipcert inspect --ops` says how)"
    )


def _feeds_output(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    """The node's output reaches a graph output through shape-only steps (Identity, Reshape, ...)."""
    outputs = {o.name for o in model.graph.output}
    frontier = set(node.output)
    passthrough = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Cast"}
    for later in model.graph.node:
        if later.op_type in passthrough and later.input and later.input[0] in frontier:
            frontier.update(later.output)
    return bool(frontier & outputs)


def _producer_name(model: onnx.ModelProto, tensor: str) -> str:
    for node in model.graph.node:
        if tensor in node.output:
            return node_name(node)
    return tensor


def to_fx(model: onnx.ModelProto, path: Path) -> fx.GraphModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's import-time deprecations are not the user's
            import onnx2torch  # imports torchvision; kept lazy so that `--help` stays fast

            register_converter()
            return vmap_friendly(onnx2torch.convert(model).eval())  # onnx2torch returns training mode
    except Exception as err:
        raise UnsupportedModelError(f"{path}: onnx2torch cannot convert the model: {err}") from None


def load_onnx(
    path: Path, shape_override: tuple[int, ...] | None = None, **options: object
) -> tuple[fx.GraphModule, tuple[int, ...]]:
    model = read_onnx(path)
    return load_onnx_proto(model, path, shape_override, **options)


def load_onnx_proto(
    model: onnx.ModelProto,
    path: Path,
    shape_override: tuple[int, ...] | None = None,
    *,
    output_node: str | None = None,
    clean: bool = True,
) -> tuple[fx.GraphModule, tuple[int, ...]]:
    """Checked, (optionally) truncated at `output_node`, cleaned and rewritten, then converted.

    clean=False skips lipcert/load/cleanup.py (to compare forms with and without it).
    """
    if output_node is not None:
        model = truncate_at(model, output_node, path)
    shape = input_shape(model, path, shape_override)
    check_finite_weights(model, path)
    changes: list[str] = []
    if clean:
        model, changes = clean_graph(model, path, shape)
    check_supported_ops(model, path)
    gm = to_fx(model, path)
    gm.lipcert_graph_changes = tuple(changes)  # shown by `lipcert inspect`
    return gm, shape
