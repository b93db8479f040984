"""Plans as YAML: load_plan/parse_plan read and validate one, plan_to_yaml writes one back.

YAML schema, version 1 (configs/README.md has the same with examples):

    version: 1                  # required
    method: lipsdp-neuron       # naive | lipsdp-neuron | lipsdp-layer   (default lipsdp-neuron)
    combine: auto               # paper | overlap | pou | coupled | auto  (default auto)
    solver:                     # optional; every key optional
      eps: 1.0e-4               # SCS tolerance, > 0
      max_iters: 5000           # >= 1
      time_limit: 120           # seconds per block, > 0, or null for none
      warm_start: true
    groups:                     # required, in network order, covering every layer once
      - layers: [relu_1, relu_3]  # first and last activation layer, inclusive
        grid: 2x2                 # spatial output: rows x columns (default 1x1)
      - layers: [relu_5, relu_5]  # or simply `layers: relu_5`
        parts: 1                  # 1-D output: neuron ranges (default 1)
      - layers: output            # optional, last: the output map alone (y from the last
                                  # layer's activations); the group before it then outputs
                                  # those activations instead of y (so a grid fits them)

`grid` also accepts a pair [rows, cols]. Every error names the file, the line and the
key (e.g. "plan.yaml, line 7, groups[1].grid: grid 9x2 does not fit ..."); plan_reader
holds those checks.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from yaml.nodes import Node

from lipcert.errors import BadInputError
from lipcert.network.form import Network
from lipcert.partition.block_sizes import plan_block_sizes
from lipcert.partition.geometry import group_output_shape, require_layers
from lipcert.partition.grids import shape_text
from lipcert.partition.plan_reader import PlanReader
from lipcert.partition.plan_types import OUTPUT, GroupPlan, Plan

# --------------------------------------------------------------------------- YAML in


def load_plan(path: str | Path, net: Network) -> Plan:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the plan: {exc}") from None
    return parse_plan(text, net, str(path))


def parse_plan(text: str, net: Network, source: str = "<plan>") -> Plan:
    """Validate a YAML plan against the network; BadInputError names the line and key of any fault."""
    require_layers(net)
    return PlanReader(net, source).plan(_compose(text, source))


def _compose(text: str, source: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise BadInputError(f"{source}{where}: malformed YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:  # e.g. a control character (ReaderError carries no mark)
        raise BadInputError(f"{source}: malformed YAML: {exc}") from None
    if root is None:
        raise BadInputError(f"{source}: the plan is empty; it needs at least 'version: 1' and 'groups'")
    return root


# --------------------------------------------------------------------------- YAML out


def plan_to_yaml(plan: Plan, net: Network | None = None, compress: bool = True) -> str:
    """The plan as YAML that parse_plan reads back; with `net`, each group gets a comment on its blocks."""
    lines = [f"# warning: {note}" for note in plan.warnings]
    lines += ["version: 1", f"method: {plan.method}", f"combine: {plan.combine}", _solver_yaml(plan.solver)]
    lines.append("groups:")
    sizes = plan_block_sizes(net, plan, compress) if net is not None else [None] * len(plan.groups)
    for group, block in zip(plan.groups, sizes):
        if net is not None:
            lines.append(f"  # {_group_comment(net, group, plan, block)}")
        lines += _group_yaml(group)
    return "\n".join(lines) + "\n"


def _group_yaml(group: GroupPlan) -> list[str]:
    if group.output:
        return [f"  - layers: {OUTPUT}"]
    tiling = f"grid: {group.grid[0]}x{group.grid[1]}" if group.grid else f"parts: {group.parts}"
    return [f"  - layers: [{_yaml_name(group.first)}, {_yaml_name(group.last)}]", f"    {tiling}"]


def _group_comment(net: Network, group: GroupPlan, plan: Plan, sizes: np.ndarray) -> str:
    shape = shape_text(group_output_shape(net, group, plan))
    if group.output:
        source = net.layers[-1]
        return (
            f"the output map alone: {shape_text(source.shape)} activations of {source.name!r} -> y {shape}, "
            f"one block of {int(sizes.max())} (LMI side), bounded by the norm of the map"
        )
    return f"output {shape}, {group.n_tiles} tile(s), largest block {int(sizes.max())} (LMI side)"


def _solver_yaml(solver: dict[str, Any]) -> str:
    limit = "null" if solver["time_limit"] is None else _yaml_number(solver["time_limit"])
    return (
        f"solver: {{eps: {_yaml_number(solver['eps'])}, max_iters: {solver['max_iters']}, "
        f"time_limit: {limit}, warm_start: {'true' if solver['warm_start'] else 'false'}}}"
    )


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def _yaml_name(name: str) -> str:
    # Plain names stay readable; anything YAML could misread (12, true, "a: b") is quoted.
    if _PLAIN_NAME.fullmatch(name) and yaml.safe_load(name) == name:
        return name
    return yaml.safe_dump(name, default_style='"', width=math.inf).strip()


def _yaml_number(value: float | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = repr(float(value))
    # PyYAML (YAML 1.1) reads 1e-05 as a string; 1.0e-05 is a float.
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text
