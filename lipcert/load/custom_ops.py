"""lipcert's own ONNX operator for rewritten activation patterns: lipcert::Activation.

A matched pattern (GELU written as Erf, x * Sigmoid(x), ...) becomes one node
`lipcert::Activation(x)` with a string attribute `kind` (a key of ACTIVATIONS) and a
float64 tensor attribute `params` (float32 attributes would round the file's constants).
The node has three readers, all defined here: onnx2torch (a converter that builds
PatternActivation), onnx's reference evaluator (to check the rewrite), and the tracer
(through PatternActivation, see lipcert/network/ops.py activation_of).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.reference.op_run import OpRun
from torch import nn

from lipcert.network.activations import ACTIVATIONS

DOMAIN = "lipcert"
OP_TYPE = "Activation"
TORCH_FORMS = ("gelu", "gelu_tanh", "silu", "hard_swish")


def activation_node(name: str, x: str, y: str, kind: str, params: tuple[float, ...]) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.asarray(params, dtype=np.float64), "params")
    return helper.make_node(OP_TYPE, [x], [y], name=name, domain=DOMAIN, kind=kind, params=tensor)


def _param(params: np.ndarray) -> Any:
    values = tuple(float(p) for p in np.asarray(params).ravel())
    return values[0] if len(values) == 1 else values


class PatternActivation(nn.Module):
    """The activation in torch, for the converted module (lower bounds, comparisons)."""

    def __init__(self, kind: str, param: Any) -> None:
        super().__init__()
        if kind not in TORCH_FORMS:
            raise ValueError(f"lipcert::Activation kind {kind!r} is not one of {', '.join(TORCH_FORMS)}")
        self.kind, self.param = kind, param

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.param
        if self.kind == "gelu":
            return 0.5 * x * (1.0 + torch.erf(p * x))
        if self.kind == "gelu_tanh":
            return 0.5 * x * (1.0 + torch.tanh(p[0] * (x + p[1] * x**3)))
        if self.kind == "silu":
            return x * torch.sigmoid(p * x)
        return x * torch.clamp(p[0] * x + p[1], 0.0, 1.0)  # hard_swish


class ReferenceActivation(OpRun):
    """lipcert::Activation for onnx.reference.ReferenceEvaluator (numpy, in the input's dtype)."""

    op_domain = DOMAIN

    def _run(self, x, kind=None, params=None):  # noqa: ANN001, ANN202 - OpRun's calling convention
        key = kind.decode() if isinstance(kind, bytes) else kind
        out = ACTIVATIONS[key].apply(np.asarray(x, dtype=np.float64), _param(params))
        return (out.astype(x.dtype),)


ReferenceActivation.__name__ = OP_TYPE  # the evaluator finds custom ops by class name


class ReferenceErf(OpRun):
    """Erf in the input's precision: onnx's own evaluates math.erf into float32 whatever the input."""

    op_domain = ""

    def _run(self, x):  # noqa: ANN001, ANN202 - OpRun's calling convention
        from scipy.special import erf

        return (erf(x).astype(x.dtype),)


ReferenceErf.__name__ = "Erf"


class ReferenceBatchNorm(OpRun):
    """Inference BatchNormalization of any opset (onnx's implementation for opsets 6-8 fails to run)."""

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, spatial=None, training_mode=None, **_):  # noqa: ANN001, ANN202, E501
        if training_mode:
            raise ValueError("training-mode BatchNormalization: lipcert certifies inference")
        shape = (1, *scale.shape) if scale.ndim > 1 else (1, -1) + (1,) * (x.ndim - 2)
        eps = 1e-5 if epsilon is None else epsilon
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
        return (y.astype(x.dtype),)


ReferenceBatchNorm.__name__ = "BatchNormalization"
REFERENCE_OPS = [ReferenceActivation, ReferenceErf, ReferenceBatchNorm]


def register_converter() -> None:
    """Teach onnx2torch lipcert::Activation (once per process)."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    if OperationDescription(DOMAIN, OP_TYPE, 1) in _CONVERTER_REGISTRY:
        return

    @add_converter(operation_type=OP_TYPE, version=1, domain=DOMAIN)
    def _convert(node, graph):  # noqa: ANN001, ANN202 - onnx2torch's converter signature
        kind = node.attributes["kind"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        params = node.attributes["params"]
        values = params.to_torch().numpy() if hasattr(params, "to_torch") else np.asarray(params)
        return OperationConverterResult(
            torch_module=PatternActivation(kind, _param(values)), onnx_mapping=onnx_mapping_from_node(node=node)
        )


class PReLUBroadcast(nn.Module):
    """ONNX PRelu, x where x >= 0 else slope * x with the slope broadcast to x.

    Replaces onnx2torch's OnnxPReLU, whose F.prelu fails under torch.func.vmap (lipcert.lower
    batches Jacobian-vector products with it).
    """

    def forward(self, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * slope)


def vmap_friendly(gm: nn.Module) -> nn.Module:
    """The converted module with every OnnxPReLU replaced by PReLUBroadcast (same function)."""
    for name, child in list(gm.named_children()):
        if type(child).__name__ == "OnnxPReLU":
            gm.add_module(name, PReLUBroadcast())
    return gm
