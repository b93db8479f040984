"""The partition plan (MATH.md §4): depth groups, and a width tiling per group.

A plan lists groups of consecutive activation layers. Together they cover every layer
once, in order, and each group may start only where a depth cut is valid (no residual
connection jumps over it). Each group's output is cut into tiles: a rows x columns grid
when that output is a (C, H, W) map, or `parts` contiguous neuron ranges otherwise.
A group's output is its last layer's activations, except for the group ending at the
last layer, whose output is the network's output y (see depth.depth_group), unless the
plan ends with the output group (OUTPUT_GROUP, `layers: output` in YAML): the output
map y = D_last w_last alone, allowed when y reads only the last activation layer
(depth.output_map_refusal). group_network(net, group, plan) builds the network of any
group; group_output_shape and group_tiles describe its output.

This module gathers the plan's public names; they live in:

    plan_types   GroupPlan, Plan, Tiling and the allowed methods, combines, solver settings
    geometry     where groups sit in the network: group_network, spans, output shapes, depth units, tiles
    block_sizes  the LMI side of every tile (block_size, tile_block_sizes, plan_block_sizes)
    grids        "RxC" text: grid_from_text (the CLI's --split, a plan's grid:), grid fit checks
    auto         plans from the network alone: split_plan (--split), auto_plan (a block budget),
                 whole_plan (--split 1x1), couple_across_groups (coupled over several groups)
    decompose    the chordal decision: which blocks are solved over LMI cliques (block_decomposition)
    plan_yaml    load_plan, parse_plan, plan_to_yaml, and the YAML schema
    plan_reader  the YAML checks, each error naming file, line and key (over yaml_nodes)
"""

from __future__ import annotations

from lipcert.partition.auto import auto_plan, couple_across_groups, split_plan, whole_plan
from lipcert.partition.block_sizes import block_size, plan_block_sizes, tile_block_sizes
from lipcert.partition.decompose import ChordalChoice, block_decomposition, solved_block_sizes
from lipcert.partition.depth import output_map, output_map_refusal
from lipcert.partition.geometry import (
    depth_units,
    group_network,
    group_output_shape,
    group_span,
    group_tiles,
    is_spatial,
    layer_positions,
    output_tiles,
    span_output_shape,
)
from lipcert.partition.plan_reader import GROUP_KEYS, TOP_KEYS
from lipcert.partition.plan_types import (
    OUTPUT,
    OUTPUT_GROUP,
    GroupPlan,
    Plan,
    Tiling,
)
from lipcert.partition.plan_yaml import load_plan, parse_plan, plan_to_yaml

__all__ = [
    "GROUP_KEYS",
    "OUTPUT",
    "OUTPUT_GROUP",
    "TOP_KEYS",
    "GroupPlan",
    "ChordalChoice",
    "Plan",
    "Tiling",
    "auto_plan",
    "block_decomposition",
    "block_size",
    "couple_across_groups",
    "depth_units",
    "group_network",
    "group_output_shape",
    "group_span",
    "group_tiles",
    "is_spatial",
    "layer_positions",
    "load_plan",
    "output_map",
    "output_map_refusal",
    "output_tiles",
    "parse_plan",
    "plan_block_sizes",
    "plan_to_yaml",
    "solved_block_sizes",
    "span_output_shape",
    "split_plan",
    "tile_block_sizes",
    "whole_plan",
]
