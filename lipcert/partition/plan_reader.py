"""Validation of a composed YAML plan against the network (schema: plan_yaml's docstring).

PlanReader walks the nodes, so every fault names the file, the line and the key, and
states what would be valid: the layer names, the valid group starts, the grid range.
"""

from __future__ import annotations

import math
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lipcert.defaults import DEFAULT_COMBINE, DEFAULT_METHOD, DEFAULT_SOLVER
from lipcert.network.form import Network
from lipcert.partition.depth import depth_group, output_map_refusal, valid_cuts
from lipcert.partition.geometry import is_spatial, layer_positions, span_output_shape
from lipcert.partition.grids import grid_from_text, grid_misfit, shape_text
from lipcert.partition.plan_types import (
    OUTPUT,
    OUTPUT_GROUP,
    GroupPlan,
    Plan,
    group_label,
)
from lipcert.partition.yaml_nodes import NodeReader, is_null
from lipcert.vocabulary import Combine, Method, words

TOP_KEYS = ("version", "method", "combine", "solver", "groups")
GROUP_KEYS = ("layers", "grid", "parts")

Fields = dict[str, tuple[Node, Node]]  # a mapping's (key node, value node) by key name


class PlanReader(NodeReader):
    """Reads one plan for one network; plan(root) returns the Plan or raises BadInputError."""

    def __init__(self, net: Network, source: str) -> None:
        super().__init__(source)
        self.net = net
        self.names = [layer.name for layer in net.layers]
        self.where = layer_positions(net)
        self.cuts = set(valid_cuts(net))

    # ---- top level

    def plan(self, root: Node) -> Plan:
        top = self.mapping(root, "", TOP_KEYS)
        for required in ("version", "groups"):
            if required not in top:
                self.fail(root, required, f"missing key {required!r}")
        self.version(top["version"][1])
        method = self.choice(top["method"][1], "method", words(Method)) if "method" in top else DEFAULT_METHOD
        combine = self.choice(top["combine"][1], "combine", words(Combine)) if "combine" in top else DEFAULT_COMBINE
        solver = self.solver(top["solver"][1]) if "solver" in top else {}
        return Plan(self.groups(top["groups"][1]), method=method, combine=combine, solver=solver)

    def version(self, node: Node) -> None:
        if self.integer(node, "version", 1) != 1:
            self.fail(node, "version", f"unsupported version {node.value}; this lipcert reads 1")

    def solver(self, node: Node) -> dict[str, Any]:
        fields = self.mapping(node, "solver", tuple(DEFAULT_SOLVER))
        out: dict[str, Any] = {}
        if "eps" in fields:
            out["eps"] = float(self.positive(fields["eps"][1], "solver.eps"))
        if "max_iters" in fields:
            out["max_iters"] = self.integer(fields["max_iters"][1], "solver.max_iters", 1)
        if "time_limit" in fields:
            value = fields["time_limit"][1]
            out["time_limit"] = None if is_null(value) else self.positive(value, "solver.time_limit")
        if "warm_start" in fields:
            out["warm_start"] = self.boolean(fields["warm_start"][1], "solver.warm_start")
        return out

    # ---- the groups: which layers

    def groups(self, node: Node) -> tuple[GroupPlan, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            self.fail(node, "groups", "expected a non-empty list of groups (- layers: [first, last])")
        items, n_layers = node.value, len(self.names)
        groups, next_layer = [], 0
        for i, item in enumerate(items):
            key = f"groups[{i}]"
            fields = self.group_fields(item, key)
            layers_node = fields["layers"][1]
            # `output` is the output group once every layer is covered (before that, it can
            # only be a layer of that name), so a layer named "output" stays expressible.
            if names_output(layers_node) and (next_layer == n_layers or OUTPUT not in self.where):
                groups.append(self.output_group(fields, key, i, len(items), next_layer))
                continue
            first, last = self.layer_range(layers_node, f"{key}.layers")
            self.check_start(layers_node, f"{key}.layers", i, first, next_layer)
            output_follows = last == n_layers - 1 and i + 1 < len(items) and names_output(self.layers_of(items[i + 1]))
            groups.append(self.group(fields, key, first, last, output_follows))
            next_layer = last + 1
        self.check_end(layers_node, f"groups[{len(groups) - 1}].layers", next_layer)
        return tuple(groups)

    def layers_of(self, item: Node) -> Node | None:
        """The `layers` value of a group item, or None (its own checks come when it is read)."""
        if isinstance(item, MappingNode):
            for key_node, value_node in item.value:
                if isinstance(key_node, ScalarNode) and key_node.value == "layers":
                    return value_node
        return None

    def output_group(self, fields: Fields, key: str, i: int, n_items: int, next_layer: int) -> GroupPlan:
        """`layers: output`: the output map alone, y from the last layer's activations, as the last group."""
        layers_node, last = fields["layers"][1], self.names[-1]
        if next_layer < len(self.names):
            rest = ", ".join(self.names[next_layer:])
            self.fail(
                layers_node,
                f"{key}.layers",
                f"the output group can only follow the group that ends at the last layer {last!r}; "
                f"{rest} {'is' if next_layer == len(self.names) - 1 else 'are'} in no group",
            )
        if i != n_items - 1:
            self.fail(layers_node, f"{key}.layers", f"the output group must be the last group; remove groups[{i + 1}:]")
        if (reason := output_map_refusal(self.net)) is not None:
            self.fail(
                layers_node,
                f"{key}.layers",
                f"the output group needs the output y to read only the last activation layer {last!r}, "
                f"but {reason}; remove it (the group ending at {last!r} then outputs y)",
            )
        what = f"the output group is one block (the activations of {last!r} to y, {self.net.n_y} values)"
        if "grid" in fields:
            self.fail(fields["grid"][0], f"{key}.grid", f"{what}: it takes no grid")
        if "parts" in fields and self.integer(fields["parts"][1], f"{key}.parts", 1) != 1:
            self.fail(fields["parts"][1], f"{key}.parts", f"{what}: parts must be 1")
        return OUTPUT_GROUP

    def group_fields(self, node: Node, key: str) -> Fields:
        fields = self.mapping(node, key, GROUP_KEYS)
        if "layers" not in fields:
            self.fail(node, key, "missing key 'layers' (the group's first and last activation layer)")
        return fields

    def layer_range(self, node: Node, key: str) -> tuple[int, int]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not 1 <= len(items) <= 2 or not all(isinstance(n, ScalarNode) for n in items):
            self.fail(node, key, "expected [first, last]: two activation layer names (or one)")
        # Names are taken verbatim (node.value), so a layer named 12 or true still matches.
        first = self.layer_index(items[0], f"{key}[0]")
        last = self.layer_index(items[-1], f"{key}[{len(items) - 1}]")
        if first > last:
            self.fail(
                node,
                key,
                f"first layer {self.names[first]!r} comes after last layer {self.names[last]!r}; "
                "give them in network order",
            )
        return first, last

    def layer_index(self, node: ScalarNode, key: str) -> int:
        if node.value not in self.where:
            self.fail(node, key, f"unknown layer {node.value!r}; the activation layers are {', '.join(self.names)}")
        return self.where[node.value]

    def check_start(self, node: Node, key: str, i: int, first: int, expected: int) -> None:
        """Groups must tile the layers in order, starting only at valid depth cuts."""
        if first > expected:
            self.fail(node, key, self.gap_message(i, first, expected))
        if first < expected:
            self.fail(node, key, self.overlap_message(i, first, expected))
        if first > 0 and first not in self.cuts:
            starts = ", ".join(self.names[k] for k in [0, *sorted(self.cuts)])
            self.fail(
                node,
                key,
                f"a group cannot start at {self.names[first]!r}: {self.cut_reason(first)}; "
                f"groups may start at {starts}",
            )

    def check_end(self, node: Node, key: str, next_layer: int) -> None:
        """The last group must end at the last layer."""
        if next_layer != len(self.names):
            rest = ", ".join(self.names[next_layer:])
            self.fail(
                node,
                key,
                f"the groups stop at {self.names[next_layer - 1]!r} and leave out {rest}; "
                f"the last group must end at the last layer {self.names[-1]!r}",
            )

    def gap_message(self, i: int, first: int, expected: int) -> str:
        skipped = self.names[expected:first]
        what = f"layer {skipped[0]} is" if len(skipped) == 1 else f"layers {', '.join(skipped)} are"
        after = f"groups[{i - 1}] ends at {self.names[expected - 1]!r}" if i else "the network starts"
        return f"{what} in no group: {after}, this group starts at {self.names[first]!r}"

    def overlap_message(self, i: int, first: int, expected: int) -> str:
        should = (
            f"this one should start at {self.names[expected]!r}"
            if expected < len(self.names)
            else f"groups[{i - 1}] already ends at the last layer, so remove this group"
        )
        return (
            f"layer {self.names[first]!r} is already in an earlier group; groups must follow "
            f"each other in network order ({should})"
        )

    def cut_reason(self, k: int) -> str:
        try:
            depth_group(self.net, k, len(self.names) - 1)  # raises, naming the connection that crosses
        except ValueError as exc:
            prefix, _, reason = str(exc).partition(": ")
            reason = reason if prefix.startswith("cannot cut before") else str(exc)
            return f"{reason} (a connection such as a residual Add skips over the cut)"
        return "depth_group accepts the cut, but valid_cuts does not list it"

    # ---- the groups: how each output is tiled

    def group(self, fields: Fields, key: str, first: int, last: int, output_follows: bool) -> GroupPlan:
        """A layer group; it outputs y if it ends at the last layer, unless the output group follows."""
        shape = span_output_shape(self.net, last, to_activations=output_follows)
        names = self.names[first], self.names[last]
        label = group_label(*names)
        if is_spatial(shape):
            return GroupPlan(*names, grid=self.spatial_tiling(fields, key, label, shape))
        return GroupPlan(*names, parts=self.flat_tiling(fields, key, label, math.prod(shape)))

    def spatial_tiling(self, fields: Fields, key: str, label: str, shape: tuple[int, ...]) -> tuple[int, int]:
        """The grid of a group with a (C, H, W) output: `grid`, default 1x1; `parts` is refused."""
        if "parts" in fields:
            self.fail(
                fields["parts"][0],
                f"{key}.parts",
                f"group {label} outputs a {shape_text(shape)} map: "
                f"tile it with grid: RxC (rows 1..{shape[1]}, columns 1..{shape[2]})",
            )
        return self.grid(fields["grid"][1], f"{key}.grid", label, shape) if "grid" in fields else (1, 1)

    def flat_tiling(self, fields: Fields, key: str, label: str, size: int) -> int:
        """The parts of a group with a 1-D output of `size` values: `parts`, default 1; `grid` is refused."""
        if "grid" in fields:
            self.fail(
                fields["grid"][0],
                f"{key}.grid",
                f"group {label} has a 1-D output ({size} values): use parts: N with N in 1..{size}",
            )
        parts = self.integer(fields["parts"][1], f"{key}.parts", 1) if "parts" in fields else 1
        if parts > size:
            self.fail(
                fields["parts"][1],
                f"{key}.parts",
                f"parts {parts} exceeds the {size} outputs of group {label}: parts must be 1..{size}",
            )
        return parts

    def grid(self, node: Node, key: str, label: str, shape: tuple[int, ...]) -> tuple[int, int]:
        if isinstance(node, SequenceNode) and len(node.value) == 2:
            grid = self.integer(node.value[0], f"{key}[0]", 1), self.integer(node.value[1], f"{key}[1]", 1)
        else:
            self.scalar(node, key, "ROWSxCOLS such as 2x2")
            try:  # the raw text: YAML 1.1 would read 0x2 as the hexadecimal number 2
                grid = grid_from_text(node.value)
            except ValueError as exc:
                self.fail(node, key, str(exc))
        if (reason := grid_misfit(grid, shape)) is not None:
            self.fail(
                node,
                key,
                f"grid {grid[0]}x{grid[1]} does not fit group {label} output {shape_text(shape[1:])}: {reason}",
            )
        return grid


def names_output(node: Node | None) -> bool:
    """Whether a `layers` value is `output` (or [output] / [output, output])."""
    items = node.value if isinstance(node, SequenceNode) else [node]
    return 1 <= len(items) <= 2 and all(isinstance(n, ScalarNode) and n.value == OUTPUT for n in items)
