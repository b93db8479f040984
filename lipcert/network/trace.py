"""Turn a torch.fx graph into the single network form of MATH.md §1.

Every tensor in the graph is either a constant or an affine function of
z = (x, w), the flat input and every activation output so far:

    value = M z + bias        (M sparse, rows = the tensor's elements in C order)

An affine node (convolution, linear map, BatchNorm, pooling, normalisation, reshapes,
transposes, padding, residual Add, concatenation) maps M and bias exactly: its linear
part is read off by forward-mode differentiation on basis vectors in float64, which
reproduces the weights bit for bit. An activation node starts a new block of neurons.
Only operators on an explicit list are treated as affine, because a piecewise-linear
operator can look affine on random probes; anything else is refused by name.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import fx, nn

from lipcert.errors import UnsupportedModelError
from lipcert.network.activations import ACTIVATIONS
from lipcert.network.form import Layer, Network, OpRecord
from lipcert.quiet import quiet_torch

PROBE_ELEMENTS = 1 << 23  # basis vectors per push x output size: about 64 MiB of float64


@dataclass
class Const:
    value: Any


@dataclass
class Affine:
    shape: tuple[int, ...]
    M: sp.csr_matrix  # (numel, n_z at creation time)
    bias: np.ndarray  # (numel,)


AFFINE_MODULES: tuple[type, ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
)

# onnx2torch module classes that are affine in their variable inputs. Binary math
# and MatMul are checked separately: they are affine only with a constant factor.
AFFINE_ONNX2TORCH = {
    "OnnxGemm",
    "OnnxTranspose",
    "OnnxReshape",
    "OnnxFlatten",
    "OnnxPadStatic",
    "OnnxSqueezeStaticAxes",
    "OnnxSqueezeDynamicAxes",
    "OnnxUnsqueezeStaticAxes",
    "OnnxUnsqueezeDynamicAxes",
    "OnnxConcat",
    "OnnxNeg",
    "OnnxSum",
    "OnnxGlobalAveragePool",
    "OnnxGlobalAveragePoolWithKnownInputShape",
    "OnnxCopyIdentity",
    "OnnxBatchNorm",
    "OnnxDropoutDynamic",
    "OnnxSlice",
}

SHAPE_ONLY = {"OnnxShape"}

# Operators that only move, copy or drop values (or pad with constants). Their matrix is
# a selection, read in O(n) from two probes instead of one probe per input element.
DATA_MOVEMENT = {
    "OnnxTranspose", "OnnxReshape", "OnnxFlatten", "Flatten", "Unflatten", "OnnxPadStatic", "ZeroPad2d",
    "ConstantPad1d", "ConstantPad2d", "OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes",
    "OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes", "Identity", "OnnxCopyIdentity", "Dropout",
    "OnnxDropoutDynamic", "OnnxSlice",
}  # fmt: skip  # output depends on the input's shape, never its values


def activation_of(module: nn.Module) -> tuple[str, float] | None:
    """(activation key, parameter) for an elementwise activation module, else None."""
    if isinstance(module, nn.ReLU):
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
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return "gelu", 0.0
    if isinstance(module, nn.SiLU):
        return "silu", 0.0
    return None


class Tracer:
    """Walks an fx graph once, building the sparse rows of A, B, C, D."""

    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
        self.gm = copy.deepcopy(gm).double().eval()  # the caller's module stays as it was
        self.input_shape = tuple(input_shape)
        self.n_x = int(np.prod(input_shape))
        self.n_w = 0
        self.neuron_rows: list[sp.csr_matrix] = []  # [A B] rows, ragged column counts
        self.neuron_bias: list[np.ndarray] = []
        self.layers: list[Layer] = []
        self.ops: list[OpRecord] = []

    # -- public -------------------------------------------------------------------
    def run(self) -> Network:
        env: dict[fx.Node, Const | Affine] = {}
        output: Affine | None = None
        for node in self.gm.graph.nodes:
            if node.op == "output":
                output = self._output(node, env)
            else:
                env[node] = self._visit(node, env)
        assert output is not None
        return self._assemble(output)

    # -- node visitors --------------------------------------------------------------
    def _visit(self, node: fx.Node, env: dict) -> Const | Affine:
        if node.op == "placeholder":
            return self._placeholder(node)
        if node.op == "get_attr":
            return Const(_fetch_attr(self.gm, node.target))
        fn, label = self._callable(node)
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        variables = _variables(args, kwargs)
        if not variables:
            return Const(fn(*_constants(args), **_constants(kwargs)))
        if label in SHAPE_ONLY:
            return Const(torch.tensor(variables[0].shape, dtype=torch.int64))
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        act = activation_of(module) if module is not None else None
        if act is not None:
            return self._activation(node, variables[0], *act)
        self._check_affine(node, label, module, args, variables)
        return self._affine(node, label, fn, args, kwargs)

    def _placeholder(self, node: fx.Node) -> Affine:
        if self.ops:
            raise UnsupportedModelError(
                f"node '{node.name}': the model has more than one input; lipcert needs exactly one"
            )
        self.ops.append(OpRecord(node.name, "Input", (), self.input_shape, "input"))
        eye = sp.identity(self.n_x, format="csr", dtype=np.float64)
        return Affine(self.input_shape, eye, np.zeros(self.n_x))

    def _activation(self, node: fx.Node, v: Affine, key: str, param: float) -> Affine:
        size = v.M.shape[0]
        start = self.n_w
        alpha, beta = ACTIVATIONS[key].slopes(param)
        shape = tuple(v.shape[1:]) if len(v.shape) > 1 else tuple(v.shape)
        self.layers.append(Layer(node.name, key, start, start + size, shape, alpha, beta, param))
        self.neuron_rows.append(v.M)
        self.neuron_bias.append(v.bias)
        self.n_w += size
        self.ops.append(OpRecord(node.name, key, v.shape, v.shape, "activation"))
        cols = np.arange(start, start + size) + self.n_x
        selector = sp.csr_matrix((np.ones(size), (np.arange(size), cols)), shape=(size, self.n_x + self.n_w))
        return Affine(v.shape, selector, np.zeros(size))

    def _affine(self, node: fx.Node, label: str, fn: Callable, args: Any, kwargs: Any) -> Affine:
        leaves, rebuild = _flatten_variables((args, kwargs))
        base = [torch.from_numpy(a.bias.reshape(a.shape)) for a in leaves]
        with torch.no_grad():
            out = _as_function(fn, rebuild)(*base)
        if not isinstance(out, torch.Tensor):
            raise UnsupportedModelError(f"node '{node.name}' ({label}) returns {type(out).__name__}")
        out_shape = tuple(out.shape)
        n_z = self.n_x + self.n_w
        M = sp.csr_matrix((out.numel(), n_z))
        for i, leaf in enumerate(leaves):
            T = _selection_part(fn, rebuild, base, i) if label in DATA_MOVEMENT else None
            if T is None:
                T = _linear_part(fn, rebuild, base, i, out.numel())
            M = M + T @ _pad_columns(leaf.M, n_z)
        bias = out.detach().numpy().reshape(-1).astype(np.float64)
        _check_affine_numerically(node, label, fn, rebuild, base, leaves, out, n_z)
        in_shape = leaves[0].shape
        self.ops.append(OpRecord(node.name, label, in_shape, out_shape, "affine"))
        M.eliminate_zeros()
        return Affine(out_shape, M.tocsr(), bias)

    def _output(self, node: fx.Node, env: dict) -> Affine:
        result = fx.node.map_arg(node.args[0], lambda n: env[n])
        if isinstance(result, (tuple, list)):
            if len(result) != 1:
                raise UnsupportedModelError(
                    f"the model has {len(result)} outputs; lipcert certifies a single output tensor"
                )
            result = result[0]
        if not isinstance(result, Affine):
            raise UnsupportedModelError("the model's output does not depend on its input")
        self.ops.append(OpRecord(node.name, "Output", result.shape, result.shape, "output"))
        return result

    # -- helpers -------------------------------------------------------------------
    def _callable(self, node: fx.Node) -> tuple[Callable, str]:
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            return module, _module_label(module)
        if node.op == "call_function":
            return node.target, getattr(node.target, "__name__", str(node.target))
        if node.op == "call_method":
            return (lambda obj, *a, **k: getattr(obj, node.target)(*a, **k)), f"Tensor.{node.target}"
        raise UnsupportedModelError(f"node '{node.name}': fx op '{node.op}' is not supported")

    def _check_affine(self, node: fx.Node, label: str, module: Any, args: Any, variables: list) -> None:
        if isinstance(module, AFFINE_MODULES) or label in AFFINE_ONNX2TORCH:
            return
        if node.op == "call_function" and node.target in (operator.add, operator.sub, operator.neg):
            return
        if label in ("Add", "Sub"):
            return
        if label == "Mul" and len(variables) == 1:
            return  # scaling by a constant
        if label == "Div" and isinstance(args[0], Affine) and not isinstance(args[1], Affine):
            return  # a variable divided by a constant
        if label == "OnnxMatMul" and len(variables) == 1:
            return
        raise UnsupportedModelError(
            f"node '{node.name}' ({label}) is not supported: it is neither an elementwise activation "
            f"({', '.join(sorted(ACTIVATIONS))}) nor an affine operator with constant weights"
        )

    def _assemble(self, output: Affine) -> Network:
        n_z = self.n_x + self.n_w
        rows = sp.vstack([_pad_columns(r, n_z) for r in self.neuron_rows], format="csr") if self.layers else None
        if rows is None:
            rows = sp.csr_matrix((0, n_z))
        y = _pad_columns(output.M, n_z)
        out_shape = tuple(output.shape[1:]) if len(output.shape) > 1 else tuple(output.shape)
        in_shape = self.input_shape[1:] if len(self.input_shape) > 1 else self.input_shape
        bias_v = np.concatenate(self.neuron_bias) if self.neuron_bias else np.zeros(0)
        return Network(
            A=rows[:, : self.n_x].tocsr(),
            B=rows[:, self.n_x :].tocsr(),
            C=y[:, : self.n_x].tocsr(),
            D=y[:, self.n_x :].tocsr(),
            bias_v=bias_v,
            bias_y=output.bias.copy(),
            layers=tuple(self.layers),
            input_shape=tuple(in_shape),
            output_shape=out_shape,
            ops=tuple(self.ops),
        )


def trace_network(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> Network:
    """The (A, B, C, D) form of an fx graph whose only input has `input_shape` (batch first)."""
    with quiet_torch():
        return Tracer(gm, input_shape).run()


# -- module-level helpers ------------------------------------------------------------
def _module_label(module: nn.Module) -> str:
    """A readable operator name: ONNX's for binary math, the class name otherwise."""
    op = getattr(module, "math_op_function", None)
    names = {torch.add: "Add", torch.sub: "Sub", torch.mul: "Mul"}
    if op is not None:
        return names.get(op, "Div" if "div" in getattr(op, "__name__", "") else type(module).__name__)
    return type(module).__name__


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _variables(args: Any, kwargs: Any) -> list[Affine]:
    found: list[Affine] = []
    fx.node.map_aggregate((args, kwargs), lambda a: found.append(a) if isinstance(a, Affine) else None)
    return found


def _constants(tree: Any) -> Any:
    return fx.node.map_aggregate(tree, lambda a: a.value if isinstance(a, Const) else a)


def _flatten_variables(tree: Any) -> tuple[list[Affine], Callable[[list[torch.Tensor]], Any]]:
    """The Affine leaves of (args, kwargs) and a function that puts tensors in their place."""
    leaves = _variables(*tree)

    def rebuild(tensors: list[torch.Tensor]) -> Any:
        it = iter(tensors)
        return fx.node.map_aggregate(
            tree, lambda a: next(it) if isinstance(a, Affine) else (a.value if isinstance(a, Const) else a)
        )

    return leaves, rebuild


def _selection_part(fn: Callable, rebuild: Callable, base: list[torch.Tensor], i: int) -> sp.csr_matrix | None:
    """The 0/1 matrix of an operator that only selects inputs, or None if it does more.

    The input indices (1..n) are pushed through: each output shows which input it copies.
    A second push of distinct random values must then reproduce those values exactly,
    which rules out scaling, summing or mixing.
    """
    call = _as_function(fn, rebuild)
    n = base[i].numel()

    def push(values: torch.Tensor) -> np.ndarray:
        inputs = [torch.zeros_like(b) for b in base]
        inputs[i] = values.reshape(base[i].shape)
        with torch.no_grad():
            return call(*inputs).reshape(-1).numpy()

    constant = push(torch.zeros(n, dtype=torch.float64))
    picked = np.rint(push(torch.arange(1, n + 1, dtype=torch.float64)) - constant).astype(np.int64)
    rows = np.flatnonzero(picked)
    if picked.min(initial=0) < 0 or picked.max(initial=0) > n:
        return None
    check = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 1.0
    if not np.array_equal(push(check)[rows] - constant[rows], check.numpy()[picked[rows] - 1]):
        return None
    other = np.setdiff1d(np.arange(picked.size), rows)
    if np.any(push(check)[other] != constant[other]):
        return None
    data = np.ones(rows.size)
    return sp.csr_matrix((data, (rows, picked[rows] - 1)), shape=(picked.size, n))


def _linear_part(fn: Callable, rebuild: Callable, base: list[torch.Tensor], i: int, n_out: int) -> sp.csr_matrix:
    """The matrix of the operator's linear part in its i-th variable input.

    Forward-mode derivatives at the bias point, on basis vectors: for an affine
    operator this is exact (each output is a sum of weight * 1 and weight * 0 terms).
    """
    shape = base[i].shape
    n_in = base[i].numel()

    call = _as_function(fn, rebuild)

    def push(tangent: torch.Tensor) -> torch.Tensor:
        tangents = [torch.zeros_like(b) for b in base]
        tangents[i] = tangent.reshape(shape)
        return torch.func.jvp(call, tuple(base), tuple(tangents))[1].reshape(-1)

    batched = torch.func.vmap(push)
    blocks = []
    chunk = max(64, min(n_in, PROBE_ELEMENTS // max(n_out, 1)))
    for start in range(0, n_in, chunk):
        stop = min(start + chunk, n_in)
        basis = torch.zeros(stop - start, n_in, dtype=torch.float64)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        with torch.no_grad():
            cols = batched(basis).numpy()  # (chunk, n_out): column j of T is cols[j]
        blocks.append(sp.csr_matrix(cols.T))
    return sp.hstack(blocks, format="csr") if blocks else sp.csr_matrix((n_out, 0))


def _check_affine_numerically(
    node: fx.Node, label: str, fn: Callable, rebuild: Callable, base: list, leaves: list, out, n_z: int
) -> None:
    """A guard against a mislabelled operator: f(b + d) must equal f(b) + T d."""
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(b.shape, generator=gen, dtype=torch.float64) for b in base]
    call = _as_function(fn, rebuild)
    with torch.no_grad():
        moved = call(*[b + d for b, d in zip(base, deltas)])
        tangent = torch.func.jvp(call, tuple(base), tuple(deltas))[1]
    expected = out + tangent
    scale = float(expected.abs().max()) + 1.0
    if float((moved - expected).abs().max()) > 1e-8 * scale:
        raise UnsupportedModelError(f"node '{node.name}' ({label}) is not affine in its input")


def _as_function(fn: Callable, rebuild: Callable) -> Callable[..., torch.Tensor]:
    """The operator as a function of its variable inputs only (constants bound)."""

    def call(*tensors: torch.Tensor) -> torch.Tensor:
        args, kwargs = rebuild(list(tensors))
        return fn(*args, **kwargs)

    return call


def _pad_columns(M: sp.csr_matrix, n: int) -> sp.csr_matrix:
    if M.shape[1] == n:
        return M
    M = M.tocsr(copy=True)
    M.resize((M.shape[0], n))
    return M
