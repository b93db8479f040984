"""Where a plan's groups sit in the network: layer positions, group outputs, depth units, tiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lipcert.errors import BadInputError
from lipcert.network.form import Network
from lipcert.partition.depth import valid_cuts
from lipcert.partition.plan_types import GroupPlan, Tiling
from lipcert.partition.tiles import range_tiles, spatial_tiles


def require_layers(net: Network) -> None:
    """BadInputError unless the network has an activation layer to partition."""
    if not net.layers:
        raise BadInputError("the network has no activation layers: there is nothing to partition")


def layer_positions(net: Network) -> dict[str, int]:
    return {layer.name: k for k, layer in enumerate(net.layers)}


def group_span(net: Network, group: GroupPlan) -> tuple[int, int]:
    """Layer indices (first, last) of a group; KeyError for a name the network lacks."""
    where = layer_positions(net)
    return where[group.first], where[group.last]


def group_output_shape(net: Network, last: int) -> tuple[int, ...]:
    """What a group ending at layer `last` outputs: that layer's map, or y for the last group."""
    return tuple(net.output_shape) if last == len(net.layers) - 1 else tuple(net.layers[last].shape)


def is_spatial(shape: Sequence[int]) -> bool:
    return len(shape) == 3


def depth_units(net: Network) -> list[tuple[int, int]]:
    """The smallest groups: layers between consecutive valid cuts (a residual block stays whole)."""
    starts = [0, *valid_cuts(net)]
    stops = [*starts[1:], len(net.layers)]
    return [(a, b - 1) for a, b in zip(starts, stops)]


def output_tiles(shape: Sequence[int], tiling: Tiling) -> list[np.ndarray]:
    """Flat output indices of every tile of a group output of this shape."""
    if len(tiling) == 2:
        return spatial_tiles(tuple(shape), *tiling)
    return range_tiles(math.prod(shape), tiling[0])


def group_tiles(net: Network, group: GroupPlan) -> list[np.ndarray]:
    """Output index sets (into depth_group(...)'s outputs) of the group's tiles."""
    _, last = group_span(net, group)
    return output_tiles(group_output_shape(net, last), group.tiling)
