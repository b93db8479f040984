"""Graph clean-up before onnx2torch, every change checked against the original.

Steps, each applied only where it changes something:

1. inference no-ops removed: Identity, and Dropout of any opset (output = input);
2. constant sub-graphs folded, where folding is exact: integer and boolean results (shape
   arithmetic), and float results of operators that only move values (Reshape, Transpose,
   Concat, Gather, ...). Float arithmetic on constants (a weight computed as W * s) is left
   to the tracer, which evaluates it in float64: folding it here would round it to float32
   and change the weights lipcert reads;
3. the opset upgraded with onnx.version_converter when onnx2torch has no converter for a
   node at the file's opset (tried at 11, 13, 17, 18 in turn);
4. rewrites: GlobalMaxPool to a MaxPool over the whole spatial extent, and the activation
   patterns of lipcert/load/patterns.py.

onnxscript's optimizer was considered and not used: its default rewrite rules fuse
BatchNorm into Conv and Pad into Conv in float32, fuse ReLU/Clip chains, and its passes
rename unnamed nodes (names are the layer names partition plans refer to).

If anything changed, the cleaned model's output is compared with the original's by
onnx's reference evaluator at random inputs, both converted to float64 (float32 if the
float64 copy does not run): a mismatch or a failed evaluation refuses the model, with the
reason the change was needed and the reason the check failed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lipcert.errors import UnsupportedModelError
from lipcert.load.custom_ops import DOMAIN, REFERENCE_OPS
from lipcert.load.patterns import GraphIndex, constant_value, rewrite_activations
from lipcert.network.ops import REGISTRY

UPGRADE_TARGETS = (11, 13, 17, 18)
REWRITTEN_OPS = {"GlobalMaxPool", "Gelu"}  # replaced by step 4, so onnx2torch never sees them
EXACT_FLOAT_OPS = {
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Gather",
    "GatherElements", "Expand", "Tile", "Split", "Shape", "Size", "ConstantOfShape", "Neg", "Abs", "Where",
}  # fmt: skip
FOLD_LIMIT = 1 << 22  # elements: larger constants stay sub-graphs (the tracer evaluates them anyway)
# Float64 copies differ from the original only by reassociated rounding (x / c against x * (1/c), a
# few ulps per neuron); even amplified by a network gain of 1e6 that stays far below 1e-9 of the output.
RTOL_FLOAT64 = 1e-9
# In float32 (eps 6e-8) the same reassociation costs ~1e-7 per neuron before amplification.
RTOL_FLOAT32 = 1e-4


def clean_graph(model: onnx.ModelProto, path: Path, input_shape: tuple[int, ...]) -> tuple[onnx.ModelProto, list[str]]:
    """The cleaned and rewritten model, and what was done (empty: the model is returned unchanged)."""
    cleaned, steps = copy.deepcopy(model), []
    for step in (remove_no_ops, fold_constants):
        cleaned, done = step(cleaned)
        steps += done
    cleaned, done = upgrade_opset(cleaned, path)
    steps += done
    if not steps and not _needs_rewrite(cleaned):
        return model, []
    cleaned = _with_shapes(cleaned)
    for step in (rewrite_global_max_pool, rewrite_activations):
        cleaned, done = step(cleaned)
        steps += done
    if not steps:
        return model, []
    check_equivalent(model, cleaned, path, input_shape, steps)
    return cleaned, steps


def _needs_rewrite(model: onnx.ModelProto) -> bool:
    return any(
        n.op_type in ("Erf", "Tanh", "Sigmoid", "HardSigmoid", "Gelu", "GlobalMaxPool") for n in model.graph.node
    )


# -- 1. no-ops ------------------------------------------------------------------------------
def remove_no_ops(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    removed: list[str] = []
    for node in list(model.graph.node):
        if node.domain or node.op_type not in ("Identity", "Dropout") or not _is_inference_no_op(model, node):
            continue
        if _bypass(model, node):
            removed.append(f"{node.op_type} '{node.name or node.output[0]}'")
    return model, [f"removed {', '.join(removed)}"] if removed else []


def _is_inference_no_op(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    if node.op_type == "Identity":
        return True
    if len(node.output) > 1 and node.output[1] and _read(model, node.output[1]):
        return False  # the mask is used
    if len(node.input) > 2 and node.input[2]:
        mode = GraphIndex(model).consts.get(node.input[2])
        if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
            raise UnsupportedModelError(
                f"node '{node.name or node.output[0]}' (Dropout): training_mode is not a constant false; "
                "lipcert certifies the inference function"
            )
    return True


def _read(model: onnx.ModelProto, tensor: str) -> bool:
    return any(tensor in n.input for n in model.graph.node) or any(o.name == tensor for o in model.graph.output)


def _bypass(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    """Remove a node whose first output equals its first input; False when it has to stay."""
    source, target = node.input[0], node.output[0]
    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    if target in graph_outputs:
        fixed = {i.name for i in graph.input} | {i.name for i in graph.initializer} | graph_outputs
        if source in fixed:
            return False  # input -> Identity -> output: nothing to rename
        _rename(model, source, target)
        source = target
    else:
        for other in graph.node:
            other.input[:] = [source if name == target else name for name in other.input]
    graph.node.remove(node)
    kept = [v for v in graph.value_info if v.name != target or source == target]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return True


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


# -- 2. constant folding ----------------------------------------------------------------------
def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Fold nodes whose inputs are all constant, where the result is exact (see the module doc)."""
    from onnx.reference import ReferenceEvaluator

    opsets = {o.domain: o.version for o in model.opset_import}
    consts = GraphIndex(model).consts
    outputs = {o.name for o in model.graph.output}
    folded: list[str] = []
    for node in list(model.graph.node):
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or node.domain or not all(name in consts for name in inputs):
            continue
        if node.op_type.startswith("Random") or any(out in outputs for out in node.output):
            continue
        try:
            values = ReferenceEvaluator(node, opsets=opsets).run(None, {name: consts[name] for name in inputs})
        except Exception:  # an operator the evaluator lacks: leave the sub-graph to the tracer
            continue
        if not all(_exact(node, np.asarray(v)) for v in values):
            continue
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for k, (name, value) in enumerate(zip(node.output, values)):
            constant = helper.make_node("Constant", [], [name], name=f"{node.name}_folded{k}" if node.name else "")
            constant.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.asarray(value), name)))
            model.graph.node.insert(index + k, constant)
            consts[name] = np.asarray(value)
        folded.append(f"{node.op_type} '{node.name or node.output[0]}'")
    return model, [f"folded constant {', '.join(folded)}"] if folded else []


def _exact(node: onnx.NodeProto, value: np.ndarray) -> bool:
    if value.size > FOLD_LIMIT:
        return False
    return value.dtype.kind not in "fc" or node.op_type in EXACT_FLOAT_OPS


# -- 3. opset upgrade --------------------------------------------------------------------------
def missing_converters(model: onnx.ModelProto) -> list[str]:
    """Nodes of operators lipcert reads that onnx2torch cannot convert at the model's opset.

    Operators outside the registry are left to the op check, which refuses them by name.
    """
    import onnx2torch  # noqa: F401 - registers the converters
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing = []
    for node in model.graph.node:
        domain = node.domain or ""
        if domain == DOMAIN or node.op_type not in REGISTRY or node.op_type in REWRITTEN_OPS:
            continue
        try:
            get_converter(node.op_type, opsets.get(domain, 1), domain)
        except NotImplementedError:
            missing.append(f"'{node.name or node.output[0]}' ({node.op_type}, opset {opsets.get(domain, 1)})")
    return missing


def upgrade_opset(model: onnx.ModelProto, path: Path) -> tuple[onnx.ModelProto, list[str]]:
    missing = missing_converters(model)
    if not missing:
        return model, []
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    tried = []
    for target in (t for t in UPGRADE_TARGETS if t > current):
        try:
            upgraded = onnx.version_converter.convert_version(model, target)
        except Exception as err:
            tried.append(f"opset {target}: the version converter failed ({err})")
            continue
        still = missing_converters(upgraded)
        if not still:
            return upgraded, [f"opset {current} -> {target} (onnx2torch has no converter for {', '.join(missing)})"]
        tried.append(f"opset {target}: still no converter for {', '.join(still)}")
    raise UnsupportedModelError(
        f"{path}: onnx2torch has no converter for node {', '.join(missing)}; lipcert tried to upgrade the "
        f"opset with onnx.version_converter: {'; '.join(tried) or 'no newer opset to try'}"
    )


# -- 4. rewrites ---------------------------------------------------------------------------------
def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes are a help for the rewrites, not a requirement
        return model


def rewrite_global_max_pool(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """GlobalMaxPool(x) = MaxPool(x, kernel_shape = x's spatial shape), when that shape is known."""
    shapes = {v.name: v.type.tensor_type.shape for v in (*model.graph.value_info, *model.graph.input)}
    done = []
    for k, node in enumerate(model.graph.node):
        if node.op_type != "GlobalMaxPool" or node.domain:
            continue
        shape = shapes.get(node.input[0])
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim][2:] if shape is not None else []
        if not dims or min(dims) <= 0:
            continue  # left in place: refused by name, the spatial shape being unknown
        pool = helper.make_node("MaxPool", list(node.input), list(node.output), name=node.name, kernel_shape=dims)
        model.graph.node[k].CopyFrom(pool)
        done.append(f"GlobalMaxPool '{node.name or node.output[0]}' -> MaxPool {'x'.join(map(str, dims))}")
    return model, done


# -- the check ------------------------------------------------------------------------------------
def check_equivalent(
    original: onnx.ModelProto, cleaned: onnx.ModelProto, path: Path, input_shape: tuple[int, ...], steps: list[str]
) -> None:
    """Refuse unless both models give the same output at random inputs (onnx's reference evaluator)."""
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(input_shape) for _ in range(2)]
    why = "; ".join(steps)
    for convert, dtype, rtol in ((as_float64, np.float64, RTOL_FLOAT64), (lambda m: m, np.float32, RTOL_FLOAT32)):
        try:
            expected = [_run(convert(original), x.astype(dtype)) for x in inputs]
            got = [_run(convert(cleaned), x.astype(dtype)) for x in inputs]
        except Exception as err:
            failure = f"onnx's reference evaluator could not run it ({type(err).__name__}: {err})"
            continue
        for e, g in zip(expected, got):
            scale = float(np.abs(e).max()) + 1e-30
            if e.shape != g.shape or float(np.abs(e - g).max()) > rtol * scale:
                diff = float(np.abs(e - g).max()) if e.shape == g.shape else float("inf")
                raise UnsupportedModelError(
                    f"{path}: lipcert changed the graph ({why}), and the changed model does not reproduce the "
                    f"original: largest difference {diff:.3g} against outputs up to {scale:.3g} ({np.dtype(dtype)})"
                )
        return
    raise UnsupportedModelError(f"{path}: lipcert changed the graph ({why}) and could not check the change: {failure}")


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(model, new_ops=REFERENCE_OPS)
    initializers = {i.name for i in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in initializers)
    return np.asarray(session.run(None, {name: x})[0], dtype=np.float64)


def as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy computing in float64: float tensors, Casts and graph types widened."""
    model = copy.deepcopy(model)
    graph = model.graph
    for k, init in enumerate(graph.initializer):
        if init.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
            graph.initializer[k].CopyFrom(_widened(init))
    for node in graph.node:
        _widen_node(node)
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    del graph.value_info[:]
    return model


def _widened(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)


def _widen_node(node: onnx.NodeProto) -> None:
    wide: Callable[[onnx.TensorProto], bool] = lambda t: t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)  # noqa: E731
    if node.op_type == "Constant":
        value = constant_value(node)
        if value is not None and value.dtype in (np.float32, np.float16):
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value.astype(np.float64))))
        return
    for attr in node.attribute:
        if attr.name == "to" and attr.i in (TensorProto.FLOAT, TensorProto.FLOAT16):
            attr.i = TensorProto.DOUBLE
        if attr.type == onnx.AttributeProto.TENSOR and wide(attr.t) and node.domain != DOMAIN:
            attr.t.CopyFrom(_widened(attr.t))
