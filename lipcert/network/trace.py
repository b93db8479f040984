"""Turn a torch.fx graph into the single network form of MATH.md §1.

Every tensor in the graph is either a constant or an affine function of
z = (x, w), the flat input and every activation output so far:

    value = M z + bias        (M sparse, rows = the tensor's elements in C order)

An affine node (convolution, linear map, BatchNorm, pooling, normalisation, reshapes,
transposes, padding, residual Add, concatenation) maps M and bias exactly: its linear
part is read off by forward-mode differentiation on basis vectors in float64, which
reproduces the weights bit for bit. An activation node starts a new block of neurons.
Only operators on an explicit list (lipcert/network/ops.py, the registry shared with the
loader) are treated as affine, because a piecewise-linear operator can look affine on
random probes; anything else is refused by name. MaxPool is rewritten exactly into ReLU
neurons (lipcert/network/maxpool.py).
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
from lipcert.network.maxpool import maxpool_parts, pool_windows, window_max_tree
from lipcert.network.ops import AFFINE_LABELS, REGISTRY, SELECTION_LABELS, SHAPE_LABELS, activation_of
from lipcert.quiet import quiet_torch

PRELU_LABELS = REGISTRY["PRelu"].torch_labels
PROBE_ELEMENTS = 1 << 23  # basis vectors per push x output size: about 64 MiB of float64


@dataclass
class Const:
    value: Any


@dataclass
class Affine:
    shape: tuple[int, ...]
    M: sp.csr_matrix  # (numel, n_z at creation time)
    bias: np.ndarray  # (numel,)


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
        if label in SHAPE_LABELS:
            return Const(torch.tensor(variables[0].shape, dtype=torch.int64))
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        act = activation_of(module) if module is not None else None
        if act is not None:
            return self._activation(_layer_name(node), variables[0], *act)
        if label in PRELU_LABELS:
            return self._prelu(node, args)
        pool = maxpool_parts(module) if module is not None else None
        if pool is not None:
            return self._maxpool(node, variables[0], module, pool)
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

    def _activation(
        self, name: str, v: Affine, key: str, param: Any, per_neuron: np.ndarray | None = None, record: bool = True
    ) -> Affine:
        """A new layer of neurons w = act(v); per_neuron: one parameter per neuron (PReLU)."""
        size = v.M.shape[0]
        start = self.n_w
        shape = tuple(v.shape[1:]) if len(v.shape) > 1 else tuple(v.shape)
        if per_neuron is None:
            alpha, beta = (float(s) for s in ACTIVATIONS[key].slopes(param))
            layer = Layer(name, key, start, start + size, shape, alpha, beta, param)
        else:
            alphas, betas = ACTIVATIONS[key].slopes(per_neuron)
            layer = Layer(
                name, key, start, start + size, shape, float(np.min(alphas)), float(np.max(betas)),
                float(per_neuron[0]), alphas=_frozen(alphas), betas=_frozen(betas), params=_frozen(per_neuron),
            )  # fmt: skip
        self.layers.append(layer)
        self.neuron_rows.append(v.M)
        self.neuron_bias.append(v.bias)
        self.n_w += size
        if record:
            self.ops.append(OpRecord(name, key, v.shape, v.shape, "activation"))
        cols = np.arange(start, start + size) + self.n_x
        selector = sp.csr_matrix((np.ones(size), (np.arange(size), cols)), shape=(size, self.n_x + self.n_w))
        return Affine(v.shape, selector, np.zeros(size))

    def _prelu(self, node: fx.Node, args: Any) -> Affine:
        x, slope = args[0], args[1] if len(args) > 1 else None
        if not isinstance(x, Affine) or not isinstance(slope, Const):
            raise UnsupportedModelError(f"node '{node.name}' (PRelu): the slope must be a constant")
        values = torch.as_tensor(slope.value, dtype=torch.float64)
        try:
            per_neuron = torch.broadcast_to(values, x.shape).reshape(x.shape[0], -1)[0].numpy().copy()
        except RuntimeError:
            raise UnsupportedModelError(
                f"node '{node.name}' (PRelu): slope of shape {tuple(values.shape)} does not broadcast to {x.shape}"
            ) from None
        if np.all(per_neuron == per_neuron[0]):  # one slope for all: a plain per-layer parameter
            return self._activation(node.name, x, "prelu", float(per_neuron[0]))
        return self._activation(node.name, x, "prelu", float(per_neuron[0]), per_neuron)

    def _maxpool(self, node: fx.Node, v: Affine, module: nn.Module, parts: Any) -> Affine:
        """max over each window as a tree of ReLU neurons: max(a, b) = b + ReLU(a - b).

        The tree's output reads the pool's input b directly, so the layer after the pool reads
        the layer before it too, and a depth cut right after the pool is invalid
        (lipcert/partition/depth.py). A cut right before the pool stays valid: the tree's first
        level reads only the pool's input. On the LeNet-style sample (conv, ReLU, MaxPool twice)
        valid_cuts is [1, 4], one cut before each pool. Ending each pool with an exact identity
        layer (slopes [1, 1]) would add the cut after it ([1, 4, 5]), but LipSDP can enforce
        w = v only in the limit of an infinite multiplier: measured on the VGG-style block of
        tests/maxpool_nets.py, SCS took 318 s instead of 18 s and ended looser (0.42917 against
        0.42804). A cut before the pool serves the partition as well, so there is none.
        """
        windows, out_shape = pool_windows(node.name, module, parts, v.shape)
        tree = window_max_tree(windows)
        n_before = len(self.layers)
        current = Affine(v.shape, tree.gather @ v.M, tree.gather @ v.bias)
        for level, (pick_a, pick_b) in enumerate(tree.levels):
            current = self._max_level(f"{node.name}_max{level + 1}", current, pick_a, pick_b)
        added = self.layers[n_before:]
        self.ops.append(
            OpRecord(node.name, f"{_module_label(module)} -> {len(added)} ReLU levels",
                     v.shape, out_shape, "rewrite", sum(layer.size for layer in added))
        )  # fmt: skip
        return Affine(out_shape, current.M.tocsr(), current.bias)

    def _max_level(self, name: str, cands: Affine, pick_a: Any, pick_b: Any) -> Affine:
        """One level of the tree: pairs (a, b) become b + ReLU(a - b); the rest are carried.

        pick_a / pick_b are 0/1 matrices (next candidates x current candidates): rows of
        pick_a select a (empty rows for carried candidates), rows of pick_b select b (or the
        carried candidate itself).
        """
        pairs = np.flatnonzero(np.diff(pick_a.indptr))  # next candidates that are a pair's result
        A_pick, B_pick = pick_a[pairs], pick_b[pairs]
        diff = Affine((1, len(pairs)), (A_pick - B_pick) @ cands.M, (A_pick - B_pick) @ cands.bias)
        relu = self._activation(name, diff, "relu", 0.0, record=False)
        n_z = self.n_x + self.n_w
        n_pairs = len(pairs)
        spread = sp.csr_matrix((np.ones(n_pairs), (pairs, np.arange(n_pairs))), shape=(pick_a.shape[0], n_pairs))
        M = _pad_columns(pick_b @ cands.M, n_z) + spread @ relu.M
        return Affine(cands.shape, M.tocsr(), pick_b @ cands.bias)

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
            T = _selection_part(fn, rebuild, base, i) if label in SELECTION_LABELS else None
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
        if module is not None and label in AFFINE_LABELS and label not in ("Mul", "Div", "OnnxMatMul"):
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


def _layer_name(node: fx.Node) -> str:
    # Nodes of lipcert's own ONNX domain (rewritten activation patterns) keep the name of the
    # node they replace, without the domain prefix onnx2torch gives them.
    return node.name.removeprefix("lipcert_")


def _frozen(values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    out.flags.writeable = False
    return out


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
