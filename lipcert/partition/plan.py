"""The partition plan (MATH.md §4): depth groups, and a width tiling per group.

A plan lists groups of consecutive activation layers. Together they cover every layer
once, in order, and each group may start only where a depth cut is valid (no residual
connection jumps over it). Each group's output is cut into tiles: a rows x columns grid
when that output is a (C, H, W) map, or `parts` contiguous neuron ranges otherwise.
A group's output is its last layer's activations, except for the last group, whose
output is the network's output y (see depth.depth_group).

This module gathers the plan's public names; they live in:

    plan_types   GroupPlan, Plan, Tiling and the allowed methods, combines, solver settings
    geometry     where groups sit in the network: spans, output shapes, depth units, tiles
    block_sizes  the LMI side of every tile (block_size, tile_block_sizes, plan_block_sizes)
    grids        "RxC" text: parse_grid (the CLI's --split), grid fit checks
    auto         plans from the network alone: split_plan (--split), auto_plan (a block budget)
    plan_yaml    load_plan, parse_plan, plan_to_yaml, and the YAML schema
    plan_reader  the YAML checks, each error naming file, line and key (over yaml_nodes)
"""

from __future__ import annotations

from lipcert.partition.auto import auto_plan, split_plan
from lipcert.partition.block_sizes import block_size, plan_block_sizes, tile_block_sizes
from lipcert.partition.geometry import (
    depth_units,
    group_output_shape,
    group_span,
    group_tiles,
    is_spatial,
    layer_positions,
    output_tiles,
)
from lipcert.partition.grids import parse_grid
from lipcert.partition.plan_reader import GROUP_KEYS, TOP_KEYS
from lipcert.partition.plan_types import COMBINES, DEFAULT_SOLVER, METHODS, GroupPlan, Plan, Tiling
from lipcert.partition.plan_yaml import load_plan, parse_plan, plan_to_yaml

__all__ = [
    "COMBINES",
    "DEFAULT_SOLVER",
    "GROUP_KEYS",
    "METHODS",
    "TOP_KEYS",
    "GroupPlan",
    "Plan",
    "Tiling",
    "auto_plan",
    "block_size",
    "depth_units",
    "group_output_shape",
    "group_span",
    "group_tiles",
    "is_spatial",
    "layer_positions",
    "load_plan",
    "output_tiles",
    "parse_grid",
    "parse_plan",
    "plan_block_sizes",
    "plan_to_yaml",
    "split_plan",
    "tile_block_sizes",
]
