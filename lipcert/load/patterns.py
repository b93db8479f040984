"""Activations as exporters write them: sub-graphs matched and rewritten to lipcert::Activation.

Each matcher starts at its one distinctive node (Erf, Tanh, Sigmoid, HardSigmoid, Gelu)
and accepts only the exact algebraic form, up to the order of commutative inputs and of
the constant factors: 0.5 and 1 must be exactly 0.5 and 1, and the scale constants are
kept as the file stores them (float32 sqrt 2 stays float32 sqrt 2, read in float64).
Intermediate tensors must have no other reader. Anything else is left alone, and an Erf
or Pow left on the data path is then refused by name. The whole rewritten model is
checked against the original by onnx's reference evaluator (lipcert/load/cleanup.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from lipcert.load.custom_ops import DOMAIN, activation_node
from lipcert.network.activations import GELU_SCALE, GELU_TANH


@dataclass(frozen=True)
class Match:
    x: str  # the activation's input tensor
    y: str  # its output tensor
    nodes: tuple[int, ...]  # indices of the matched nodes, removed by the rewrite
    kind: str
    params: tuple[float, ...]


class GraphIndex:
    """Producers, readers and constant values of a graph's tensors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and (value := constant_value(node)) is not None:
                self.consts[node.output[0]] = value
        self.producer = {out: k for k, node in enumerate(self.nodes) for out in node.output}
        self.readers: dict[str, list[int]] = defaultdict(list)
        for k, node in enumerate(self.nodes):
            for name in node.input:
                self.readers[name].append(k)
        self.outputs = {o.name for o in graph.output}

    def scalar(self, name: str) -> float | None:
        value = self.consts.get(name)
        if value is None or value.size != 1 or value.dtype.kind != "f":
            return None
        return float(value.reshape(()))

    def only_reader(self, name: str) -> int | None:
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def made_by(self, name: str, op_type: str) -> int | None:
        k = self.producer.get(name)
        return k if k is not None and self.nodes[k].op_type == op_type and not self.nodes[k].domain else None

    def scaled(self, name: str, op_type: str = "Mul") -> tuple[str, float, int] | None:
        """name = Mul(t, s) or Mul(s, t) with a scalar constant s: (t, s, node index)."""
        k = self.made_by(name, op_type)
        if k is None:
            return None
        a, b = self.nodes[k].input
        if (s := self.scalar(b)) is not None and a not in self.consts:
            return a, s, k
        if op_type == "Mul" and (s := self.scalar(a)) is not None and b not in self.consts:
            return b, s, k
        return None


def constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
    return None


def _other(node: onnx.NodeProto, name: str) -> str | None:
    a, b = node.input[0], node.input[1]
    return b if a == name else a if b == name else None


def _half_x_times(g: GraphIndex, p: str, x: str) -> tuple[str, list[int]] | None:
    """The tensor 0.5 * x * p, from p through Mul nodes only (any order, 0.5 x as one factor allowed)."""
    current, nodes, xs, const = p, [], 0, 1.0
    while not (xs == 1 and const == 0.5):
        k = g.only_reader(current)
        if k is None or g.nodes[k].op_type != "Mul" or g.nodes[k].domain:
            return None
        other = _other(g.nodes[k], current)
        if other is None or other == current:
            return None
        if other == x:
            xs += 1
        elif (s := g.scalar(other)) is not None:
            const *= s
        elif (half := g.scaled(other)) is not None and half[0] == x and g.only_reader(other) == k:
            xs, const = xs + 1, const * half[1]
            nodes.append(half[2])
        else:
            return None
        if xs > 1:
            return None
        nodes.append(k)
        current = g.nodes[k].output[0]
    return current, nodes


def _plus_one(g: GraphIndex, t: str) -> tuple[str, int] | None:
    k = g.only_reader(t)
    if k is None or g.nodes[k].op_type != "Add" or g.nodes[k].domain:
        return None
    other = _other(g.nodes[k], t)
    return (g.nodes[k].output[0], k) if other is not None and g.scalar(other) == 1.0 else None


def match_gelu_erf(g: GraphIndex, k: int) -> Match | None:
    """0.5 * x * (1 + erf(x / c)) or with Mul(x, s); kept as 0.5 x (1 + erf(s x)), s = 1/c > 0."""
    u = g.nodes[k].input[0]
    if g.only_reader(u) != k:
        return None
    div, mul = g.scaled(u, "Div"), g.scaled(u, "Mul")
    if div is not None and div[1] > 0:
        x, s, first = div[0], 1.0 / div[1], div[2]
    elif mul is not None and mul[1] > 0:
        x, s, first = mul
    else:
        return None
    plus = _plus_one(g, g.nodes[k].output[0])
    tail = _half_x_times(g, plus[0], x) if plus is not None else None
    if tail is None or not math.isfinite(s):
        return None
    return Match(x, tail[0], (first, k, plus[1], *tail[1]), "gelu", (s,))


def _cube_of(g: GraphIndex, t: str) -> tuple[str, list[int]] | None:
    """t = x^3 as Pow(x, 3), Mul(x, Mul(x, x)) or Mul(Mul(x, x), x): (x, nodes)."""
    if (k := g.made_by(t, "Pow")) is not None:
        base, exponent = g.nodes[k].input
        value = g.consts.get(exponent)
        return (base, [k]) if value is not None and value.size == 1 and float(value.reshape(())) == 3.0 else None
    k = g.made_by(t, "Mul")
    if k is None:
        return None
    for sq, x in (g.nodes[k].input, reversed(g.nodes[k].input)):
        j = g.made_by(sq, "Mul")
        if j is not None and list(g.nodes[j].input) == [x, x] and g.only_reader(sq) == k:
            return x, [j, k]
    return None


def match_gelu_tanh(g: GraphIndex, k: int) -> Match | None:
    """0.5 * x * (1 + tanh(k (x + c x^3))), k and c within 1e-6 of sqrt(2/pi) and 0.044715."""
    inner = g.scaled(g.nodes[k].input[0])
    if inner is None or g.only_reader(g.nodes[k].input[0]) != k:
        return None
    r, scale, mul_k = inner
    add = g.made_by(r, "Add")
    if add is None or g.only_reader(r) != mul_k:
        return None
    for m, x in (g.nodes[add].input, reversed(g.nodes[add].input)):
        cubic = g.scaled(m)
        cube = _cube_of(g, cubic[0]) if cubic is not None and g.only_reader(m) == add else None
        if cube is None or cube[0] != x or g.only_reader(cubic[0]) != cubic[2]:
            continue
        c = cubic[1]
        if not (_close(scale, GELU_TANH[0]) and _close(c, GELU_TANH[1])):
            return None
        plus = _plus_one(g, g.nodes[k].output[0])
        tail = _half_x_times(g, plus[0], x) if plus is not None else None
        if tail is None:
            return None
        nodes = (*cube[1], cubic[2], add, mul_k, k, plus[1], *tail[1])
        return Match(x, tail[0], nodes, "gelu_tanh", (scale, c))
    return None


def _close(value: float, target: float) -> bool:
    return abs(value - target) <= 1e-6 * abs(target)


def match_silu(g: GraphIndex, k: int) -> Match | None:
    """x * Sigmoid(x), or x * Sigmoid(s x) with s > 0."""
    u, sig = g.nodes[k].input[0], g.nodes[k].output[0]
    x, s, nodes = u, 1.0, [k]
    scaled = g.scaled(u)
    if scaled is not None and scaled[1] > 0 and g.only_reader(u) == k:
        x, s, nodes = scaled[0], scaled[1], [scaled[2], k]
    j = g.only_reader(sig)
    if j is None or g.nodes[j].op_type != "Mul" or g.nodes[j].domain or _other(g.nodes[j], sig) != x:
        return None
    return Match(x, g.nodes[j].output[0], (*nodes, j), "silu", (s,))


def match_hard_swish(g: GraphIndex, k: int) -> Match | None:
    """x * HardSigmoid(x; alpha, beta): HardSwish as opsets below 14 write it."""
    node = g.nodes[k]
    x, h = node.input[0], node.output[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    j = g.only_reader(h)
    if j is None or g.nodes[j].op_type != "Mul" or g.nodes[j].domain or _other(g.nodes[j], h) != x:
        return None
    return Match(x, g.nodes[j].output[0], (k, j), "hard_swish", (attrs.get("alpha", 0.2), attrs.get("beta", 0.5)))


def match_gelu_op(g: GraphIndex, k: int) -> Match | None:
    """The opset-20 Gelu operator (onnx2torch has no converter for it)."""
    node = g.nodes[k]
    approximate = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")
    if approximate == "tanh":
        return Match(node.input[0], node.output[0], (k,), "gelu_tanh", GELU_TANH)
    return Match(node.input[0], node.output[0], (k,), "gelu", (GELU_SCALE,))


MATCHERS = {
    "Erf": match_gelu_erf,
    "Tanh": match_gelu_tanh,
    "Sigmoid": match_silu,
    "HardSigmoid": match_hard_swish,
    "Gelu": match_gelu_op,
}


def rewrite_activations(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Every matched pattern replaced by one lipcert::Activation node; the list of rewrites."""
    done: list[str] = []
    while True:
        g = GraphIndex(model)
        match = next((m for k, n in enumerate(g.nodes) if not n.domain and (m := _try(g, k)) is not None), None)
        if match is None:
            break
        model = _replace(model, g, match)
        done.append(f"{match.kind} at '{_name(g.nodes[g.producer[match.y]])}'")
    if done:
        _drop_unread_constants(model)
        if not any(o.domain == DOMAIN for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return model, done


def _try(g: GraphIndex, k: int) -> Match | None:
    matcher = MATCHERS.get(g.nodes[k].op_type)
    return matcher(g, k) if matcher is not None else None


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _replace(model: onnx.ModelProto, g: GraphIndex, match: Match) -> onnx.ModelProto:
    last = g.producer[match.y]
    new = activation_node(g.nodes[last].name, match.x, match.y, match.kind, match.params)
    removed = set(match.nodes)
    nodes = [new if k == last else n for k, n in enumerate(g.nodes) if k == last or k not in removed]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _drop_unread_constants(model: onnx.ModelProto) -> None:
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    kept = [n for n in model.graph.node if n.op_type != "Constant" or n.output[0] in read]
    del model.graph.node[:]
    model.graph.node.extend(kept)
