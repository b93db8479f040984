"""Typed values from composed YAML nodes, so every error can name the file, the line and the key.

Reading nodes (yaml.compose) rather than loaded data keeps each value's line. NodeReader
checks one node at a time against what the caller expects (a mapping with known keys, an
integer, a positive number, ...) and raises BadInputError "<source>, line N, <key>: ...".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lipcert.errors import BadInputError


class NodeReader:
    """Checks and converts single nodes; `key` is the dotted path that error messages name."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._values = yaml.SafeLoader("")  # builds typed scalars (int, float, bool) from nodes

    def fail(self, node: Node, key: str, message: str) -> NoReturn:
        raise BadInputError(f"{self.source}, line {node.start_mark.line + 1}, {key or 'top level'}: {message}")

    def mapping(self, node: Node, key: str, allowed: Sequence[str]) -> dict[str, tuple[Node, Node]]:
        """The mapping's (key node, value node) by key name; unknown and repeated keys fail."""
        if not isinstance(node, MappingNode):
            self.fail(node, key, f"expected a mapping with keys {', '.join(allowed)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, ScalarNode) else None
            path = f"{key}.{name}" if key else str(name)
            if name not in allowed:
                self.fail(key_node, path, f"unknown key {name!r}; the keys are {', '.join(allowed)}")
            if name in out:
                self.fail(key_node, path, f"key {name!r} is given twice")
            out[name] = (key_node, value_node)
        return out

    def scalar(self, node: Node, key: str, expected: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.fail(node, key, f"expected {expected}, found a {_node_kind(node)}")
        try:
            return self._values.construct_object(node)
        except yaml.YAMLError:  # a tag the safe loader refuses, e.g. !!python/name:...
            self.fail(node, key, f"expected {expected}, found a value tagged {node.tag!r}")

    def integer(self, node: Node, key: str, minimum: int) -> int:
        value = self.scalar(node, key, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, key, f"expected an integer >= {minimum}, found {node.value!r}")
        if value < minimum:
            self.fail(node, key, f"must be >= {minimum}, found {value}")
        return value

    def positive(self, node: Node, key: str) -> float | int:
        value = self.scalar(node, key, "a positive number")
        if isinstance(value, str):
            value = _float_or_none(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(node, key, f"expected a positive number, found {node.value!r}")
        if value <= 0:
            self.fail(node, key, f"must be > 0, found {value}")
        return value

    def boolean(self, node: Node, key: str) -> bool:
        value = self.scalar(node, key, "true or false")
        if not isinstance(value, bool):
            self.fail(node, key, f"expected true or false, found {node.value!r}")
        return value

    def choice(self, node: Node, key: str, options: Sequence[str]) -> str:
        value = self.scalar(node, key, f"one of {', '.join(options)}")
        if value not in options:
            self.fail(node, key, f"unknown value {node.value!r}; expected one of {', '.join(options)}")
        return value


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def _node_kind(node: Node) -> str:
    return {MappingNode: "mapping", SequenceNode: "list", ScalarNode: "scalar"}.get(type(node), "node")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
