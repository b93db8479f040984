"""Every ONNX operator lipcert reads, and how: the one registry behind the loader's op check,
the tracer's module tests and `lipcert inspect --ops`.

An operator on the data path (one that reads the network's input, directly or not) must
have a rule here whose kind is not "refused"; any operator may appear in a constant
sub-graph (weights or shapes computed from constants), which is evaluated, not traced.
Each rule also names the onnx2torch module classes the operator becomes, which is what
the tracer (lipcert/network/trace.py) meets in the fx graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lipcert.network.activations import GELU_SCALE

AFFINE = "affine"
ACTIVATION = "activation"
REWRITE = "rewrite"
NO_OP = "no-op"
SHAPE_ONLY = "shape-only"
REFUSED = "refused"
KINDS = (AFFINE, ACTIVATION, REWRITE, NO_OP, SHAPE_ONLY, REFUSED)


@dataclass(frozen=True)
class OpRule:
    op_type: str  # the ONNX operator
    kind: str  # one of KINDS
    how: str  # what lipcert does with it, for `inspect --ops`
    torch_labels: tuple[str, ...] = ()  # onnx2torch (or torch) module classes it becomes
    selection: bool = False  # only moves, copies or drops values: its matrix is read from two probes
    traced: bool = True  # False: it must be consumed by a rewrite before tracing, else it is refused
    activation: str = ""  # key of lipcert.network.activations.ACTIVATIONS, for activations


def _rules(*rules: OpRule) -> dict[str, OpRule]:
    return {rule.op_type: rule for rule in rules}


_EXACT = "read exactly by forward-mode differentiation in float64"
_MOVE = "a selection of its input (0/1 matrix)"

REGISTRY: dict[str, OpRule] = _rules(
    # -- affine: folded into A, B, C, D ---------------------------------------------------
    OpRule("Conv", AFFINE, f"convolution, any stride/padding/dilation/groups; {_EXACT}", ("Conv1d", "Conv2d", "Conv3d")),  # noqa: E501
    OpRule("ConvTranspose", AFFINE, f"transposed convolution; {_EXACT}", ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")),  # noqa: E501
    OpRule("Gemm", AFFINE, f"linear layer; {_EXACT}", ("OnnxGemm", "Linear")),
    OpRule("MatMul", AFFINE, "product with a constant matrix (a product of two variables is refused)", ("OnnxMatMul",)),
    OpRule("Add", AFFINE, "sum (residual connections, biases)", ("Add",)),
    OpRule("Sub", AFFINE, "difference (input normalisation, residuals)", ("Sub",)),
    OpRule("Mul", AFFINE, "scaling by a constant (a product of two variables is refused outside a pattern)", ("Mul",)),
    OpRule("Div", AFFINE, "division by a constant", ("Div",)),
    OpRule("Neg", AFFINE, "negation", ("OnnxNeg",)),
    OpRule("Sum", AFFINE, "sum of several inputs", ("OnnxSum",)),
    OpRule("BatchNormalization", AFFINE, f"inference BatchNorm, folded in float64; {_EXACT}", ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "OnnxBatchNorm")),  # noqa: E501
    OpRule("AveragePool", AFFINE, "average pooling (a constant-weight convolution)", ("AvgPool1d", "AvgPool2d", "AvgPool3d")),  # noqa: E501
    OpRule("GlobalAveragePool", AFFINE, "mean over the spatial axes", ("OnnxGlobalAveragePool", "OnnxGlobalAveragePoolWithKnownInputShape", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d")),  # noqa: E501
    OpRule("Flatten", AFFINE, _MOVE, ("OnnxFlatten", "Flatten"), selection=True),
    OpRule("Reshape", AFFINE, _MOVE, ("OnnxReshape", "Unflatten"), selection=True),
    OpRule("Transpose", AFFINE, _MOVE, ("OnnxTranspose",), selection=True),
    OpRule("Squeeze", AFFINE, _MOVE, ("OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes"), selection=True),
    OpRule("Unsqueeze", AFFINE, _MOVE, ("OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes"), selection=True),
    OpRule("Slice", AFFINE, _MOVE, ("OnnxSlice",), selection=True),
    OpRule("Pad", AFFINE, f"constant padding: {_MOVE} plus a constant", ("OnnxPadStatic", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d"), selection=True),  # noqa: E501
    OpRule("Concat", AFFINE, "concatenation (stacked rows)", ("OnnxConcat",)),
    # -- elementwise activations: one neuron per element ----------------------------------
    OpRule("Relu", ACTIVATION, "ReLU", ("ReLU",), activation="relu"),
    OpRule("LeakyRelu", ACTIVATION, "LeakyReLU(a)", ("LeakyReLU",), activation="leaky_relu"),
    OpRule("PRelu", ACTIVATION, "PReLU, single or per-channel slopes (per-neuron bounds)", ("OnnxPReLU", "PReLUBroadcast"), activation="prelu"),  # noqa: E501
    OpRule("Tanh", ACTIVATION, "tanh", ("OnnxFunction",), activation="tanh"),
    OpRule("Sigmoid", ACTIVATION, "logistic sigmoid", ("Sigmoid",), activation="sigmoid"),
    OpRule("Elu", ACTIVATION, "ELU(a)", ("ELU",), activation="elu"),
    OpRule("Softplus", ACTIVATION, "softplus (beta 1)", ("Softplus",), activation="softplus"),
    OpRule("Clip", ACTIVATION, "Clip with constant bounds (ReLU6 = Clip(0, 6))", ("OnnxClip", "ReLU6", "ReLU", "Hardtanh"), activation="clip"),  # noqa: E501
    OpRule("HardSigmoid", ACTIVATION, "clip(a x + b, 0, 1)", ("OnnxHardSigmoid", "Hardsigmoid"), activation="hard_sigmoid"),  # noqa: E501
    OpRule("HardSwish", ACTIVATION, "x clip(x/6 + 1/2, 0, 1)", ("Hardswish",), activation="hard_swish"),
    OpRule("Gelu", REWRITE, "opset-20 Gelu, rewritten to one gelu (or tanh-gelu) neuron per element", ("PatternActivation",), activation="gelu"),  # noqa: E501
    # -- rewrites: read exactly after a change of form -------------------------------------
    OpRule("MaxPool", REWRITE, "per window a tree of k - 1 ReLU neurons, max(a, b) = b + ReLU(a - b), paired level by level (any stride, padding, dilation, ceil_mode; 1-D to 3-D)", ("MaxPool1d", "MaxPool2d", "MaxPool3d")),  # noqa: E501
    OpRule("GlobalMaxPool", REWRITE, "a MaxPool whose window is the whole spatial extent, then as MaxPool"),
    OpRule("Erf", REWRITE, "only inside GELU, x * 0.5 * (1 + erf(x / sqrt 2)): one gelu neuron per element", traced=False),  # noqa: E501
    OpRule("Pow", REWRITE, "only as x^3 inside tanh-GELU", traced=False),
    # -- no-ops and shape-only ---------------------------------------------------------------
    OpRule("Identity", NO_OP, "removed before conversion", ("Identity", "OnnxCopyIdentity"), selection=True),
    OpRule("Dropout", NO_OP, "removed before conversion (inference: output = input), any opset", ("Dropout", "OnnxDropoutDynamic"), selection=True),  # noqa: E501
    OpRule("Shape", SHAPE_ONLY, "depends on the input's shape only: a constant", ("OnnxShape",)),
    OpRule("Constant", SHAPE_ONLY, "a constant (weights, shapes)", ("OnnxConstant",)),
    # -- refused with advice ------------------------------------------------------------------
    OpRule("Softmax", REFUSED, "not elementwise; on the output, certify the logits with --output-node NAME", ("Softmax", "OnnxSoftmaxV1V11")),  # noqa: E501
    OpRule("LogSoftmax", REFUSED, "not elementwise; on the output, certify the logits with --output-node NAME", ("LogSoftmax",)),  # noqa: E501
)  # fmt: skip


@dataclass(frozen=True)
class Pattern:
    """A sub-graph that exporters write for one activation, rewritten to one neuron per element."""

    name: str
    nodes: str  # the node forms matched
    activation: str


PATTERNS: tuple[Pattern, ...] = (
    Pattern("GELU (erf)", "Div(x, sqrt2) or Mul(x, 1/sqrt2), Erf, Add 1, Mul x, Mul 0.5 (any order)", "gelu"),
    Pattern("GELU (tanh)", "x + 0.044715 x^3 (Mul or Pow), Mul sqrt(2/pi), Tanh, Add 1, Mul x, Mul 0.5", "gelu_tanh"),
    Pattern("SiLU / Swish", "Mul(x, Sigmoid(x)) or Mul(x, Sigmoid(s x)), s > 0", "silu"),
    Pattern("HardSwish (opset < 14)", "Mul(x, HardSigmoid(x))", "hard_swish"),
)


def _labels(kind: str, *, selection: bool | None = None) -> frozenset[str]:
    return frozenset(
        label
        for rule in REGISTRY.values()
        if rule.kind == kind and (selection is None or rule.selection == selection)
        for label in rule.torch_labels
    )


# What the tracer needs, derived from the registry.
AFFINE_LABELS = _labels(AFFINE) | _labels(NO_OP)  # Mul/Div/MatMul are further checked for a constant factor
SELECTION_LABELS = frozenset(
    label for rule in REGISTRY.values() if rule.selection for label in rule.torch_labels
)  # output depends on the input's shape, never its values
SHAPE_LABELS = frozenset({"OnnxShape"})
MAXPOOL_LABELS = REGISTRY["MaxPool"].torch_labels
DATA_PATH_OPS = frozenset(op for op, rule in REGISTRY.items() if rule.kind != REFUSED and rule.traced)


def activation_of(module: nn.Module) -> tuple[str, object] | None:
    """(activation key, parameter) for an elementwise activation module, else None.

    PReLU is not here: its slopes are an input of the node (see the tracer).
    """
    found = _simple_activation(module) or _clip_like(module)
    if found is None and type(module).__name__ == "PatternActivation":
        return module.kind, module.param
    return found


def _simple_activation(module: nn.Module) -> tuple[str, object] | None:
    if type(module) is nn.ReLU:
        return "relu", 0.0
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", float(module.negative_slope)
    if isinstance(module, nn.Tanh) or getattr(module, "function", None) is torch.tanh:
        return "tanh", 0.0  # onnx2torch maps Tanh to OnnxFunction(torch.tanh)
    if isinstance(module, nn.Sigmoid):
        return "sigmoid", 0.0
    if isinstance(module, nn.ELU):
        return "elu", float(module.alpha)
    if isinstance(module, nn.Softplus) and module.beta == 1:
        return "softplus", 0.0
    if isinstance(module, nn.GELU):
        return ("gelu", GELU_SCALE) if module.approximate == "none" else ("gelu_tanh", _gelu_tanh_constants())
    if isinstance(module, nn.SiLU):
        return "silu", 1.0
    return None


def _clip_like(module: nn.Module) -> tuple[str, object] | None:
    name = type(module).__name__
    if name == "ReLU6":
        return "clip", (0.0, 6.0)
    if name == "Hardtanh":
        return "clip", (float(module.min_val), float(module.max_val))
    if name == "OnnxClip":
        lo = -math.inf if module.min_val is None else float(module.min_val)
        hi = math.inf if module.max_val is None else float(module.max_val)
        return "clip", (lo, hi)
    if name == "OnnxHardSigmoid":
        return "hard_sigmoid", (float(module.alpha), float(module.beta))
    if name == "Hardsigmoid":
        return "hard_sigmoid", (1.0 / 6.0, 0.5)
    if name == "Hardswish":
        return "hard_swish", (1.0 / 6.0, 0.5)
    return None


def _gelu_tanh_constants() -> tuple[float, float]:
    from lipcert.network.activations import GELU_TANH

    return GELU_TANH


_SLOPES = {
    "relu": "[0, 1]",
    "leaky_relu": "[min(a, 1), max(a, 1)]",
    "prelu": "per neuron [min(a_j, 1), max(a_j, 1)]",
    "tanh": "[0, 1]",
    "sigmoid": "[0, 1/4]",
    "elu": "[0, max(1, a)]",
    "softplus": "[0, 1]",
    "clip": "[0, 1]",
    "hard_sigmoid": "[min(0, a), max(0, a)]: [0, 1/6] for torch's",
    "hard_swish": "[min(0, -b), max(1, 2 - b)]: [-1/2, 3/2] for HardSwish",
}


def slope_text(key: str) -> str:
    """The slope interval of an activation, as `inspect --ops` and the README give it."""
    if key in _SLOPES:
        return _SLOPES[key]
    from lipcert.network.activations import ACTIVATIONS, GELU_TANH

    default = {"gelu": GELU_SCALE, "gelu_tanh": GELU_TANH, "silu": 1.0}[key]
    lo, hi = ACTIVATIONS[key].slopes(default)
    return f"[{lo:.4f}, {hi:.4f}] (numeric, 1e-3 margin)"
