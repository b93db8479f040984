"""Where a plan's groups sit in the network: layer positions, group outputs, depth units, tiles.

group_network is THE map from a plan's group to the network that is bounded for it;
group_output_shape and group_tiles describe that network's output, so the three agree
for every group: layer groups, the output group, and the group before the output group
(which outputs the last layer's activations instead of y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lipcert.errors import BadInputError
from lipcert.network.form import Network
from lipcert.partition.depth import depth_group, output_map, valid_cuts
from lipcert.partition.plan_types import GroupPlan, Plan, Tiling
from lipcert.partition.tiles import range_tiles, spatial_tiles


def require_layers(net: Network) -> None:
    """BadInputError unless the network has an activation layer to partition."""
    if not net.layers:
        raise BadInputError("the network has no activation layers: there is nothing to partition")


def layer_positions(net: Network) -> dict[str, int]:
    return {layer.name: k for k, layer in enumerate(net.layers)}


def group_span(net: Network, group: GroupPlan) -> tuple[int, int]:
    """Layer indices (first, last) of a layer group; KeyError for a name the network lacks.

    The output group has no layers: ValueError (group_network builds every group).
    """
    if group.output:
        raise ValueError("the output group has no activation layers (group_network(net, group, plan) builds it)")
    where = layer_positions(net)
    return where[group.first], where[group.last]


def span_output_shape(net: Network, last: int, to_activations: bool = False) -> tuple[int, ...]:
    """What a group ending at layer `last` outputs: that layer's map, or y for a group ending
    at the final layer unless to_activations (an output group follows)."""
    ends_in_y = last == len(net.layers) - 1 and not to_activations
    return tuple(net.output_shape) if ends_in_y else tuple(net.layers[last].shape)


def group_network(net: Network, group: GroupPlan, plan: Plan) -> Network:
    """The network bounded for one group of the plan (its output is group_output_shape).

    A layer group is depth_group of its layers; it outputs its last layer's activations,
    except the group ending at the final layer, which outputs y unless the plan ends with
    the output group. The output group is output_map(net): y from the last activations.
    ValueError when the plan's cuts are invalid for this network.
    """
    if group.output:
        return output_map(net)
    first, last = group_span(net, group)
    return depth_group(net, first, last, to_activations=plan.has_output_group)


def group_output_shape(net: Network, group: GroupPlan, plan: Plan) -> tuple[int, ...]:
    """The output shape of group_network(net, group, plan), without building it."""
    if group.output:
        return tuple(net.output_shape)
    _, last = group_span(net, group)
    return span_output_shape(net, last, plan.has_output_group)


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


def group_tiles(net: Network, group: GroupPlan, plan: Plan) -> list[np.ndarray]:
    """Output index sets (into group_network(net, group, plan)'s outputs) of the group's tiles."""
    return output_tiles(group_output_shape(net, group, plan), group.tiling)
