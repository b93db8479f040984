"""The output group ("tail"): y cut off the last activation layer, and group_network for every group.

Whatever the plan, the groups' networks (group_network) applied in turn must reproduce
net.forward exactly, their tiles (group_tiles) must partition each group's outputs, and
each tile must compute its share of them; a plan may end with the output group only when
y reads nothing but the last activation layer.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from lipcert.errors import BadInputError
from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.partition.plan import (
    OUTPUT_GROUP,
    GroupPlan,
    Plan,
    auto_plan,
    block_size,
    depth_units,
    group_network,
    group_output_shape,
    group_span,
    group_tiles,
    output_map_refusal,
    parse_plan,
    plan_block_sizes,
    plan_to_yaml,
    split_plan,
)
from lipcert.partition.tiles import extract_tile
from tests.conftest import SAMPLES, load_cached

MODELS = ["digits_chain", "digits_residual", "digits_tanh"]
R1, R2 = "relu1_relu", "relu2_relu"


def sample(name: str) -> Network:
    return load_cached(str(SAMPLES / f"{name}.onnx")).network


def reads_an_earlier_layer() -> Network:
    """digits_chain whose logits also read relu1_relu (a skip to the output): no output group."""
    net = sample("digits_chain")
    first = net.layers[0]
    rng = np.random.default_rng(5)
    skip = sp.random(net.n_y, first.size, density=0.2, random_state=rng, format="csr")
    D = sp.hstack([skip, sp.csr_matrix(net.D)[:, first.stop :]]) + sp.csr_matrix(net.D)
    return dataclasses.replace(net, D=sp.csr_matrix(D))


def layer_plans(net: Network, output_group: bool) -> list[Plan]:
    """Every grouping of the depth units, tiled by a 2x2 grid (spatial output) or 2 parts."""
    units = depth_units(net)
    plans = []
    for mask in itertools.product((False, True), repeat=len(units) - 1):
        starts = [0, *(k + 1 for k, cut in enumerate(mask) if cut)]
        stops = [*starts[1:], len(units)]
        groups = []
        for a, b in zip(starts, stops):
            first, last = units[a][0], units[b - 1][1]
            to_y = last == len(net.layers) - 1 and not output_group
            shape = net.output_shape if to_y else net.layers[last].shape
            tiling = {"grid": (2, 2)} if len(shape) == 3 else {"parts": 2}
            groups.append(GroupPlan(net.layers[first].name, net.layers[last].name, **tiling))
        plans.append(Plan((*groups, OUTPUT_GROUP) if output_group else tuple(groups)))
    return plans


def all_plans(net: Network) -> list[Plan]:
    plans = [split_plan(net, g, g, max_block_size=b, use_output_group=True) for g in (1, 2, 4) for b in (50, 130, 600)]
    plans += [auto_plan(net, b) for b in (10, 50, 100, 200, 10**6)]
    plans += layer_plans(net, False)
    if output_map_refusal(net) is None:
        plans += layer_plans(net, True)
    return plans


def check_plan_composes(net: Network, plan: Plan) -> None:
    """The groups compose to net.forward; tiles partition each group's outputs and compute them."""
    x = np.random.default_rng(0).standard_normal((6, net.n_x))
    h, h_shape = x, net.input_shape
    for group, sizes in zip(plan.groups, plan_block_sizes(net, plan)):
        gnet = group_network(net, group, plan)
        assert gnet.input_shape == h_shape
        assert gnet.output_shape == group_output_shape(net, group, plan)
        tiles = group_tiles(net, group, plan)
        assert np.array_equal(np.sort(np.concatenate(tiles)), np.arange(gnet.n_y))
        out = gnet.forward(h)
        for rows, size in zip(tiles, sizes):
            tile = extract_tile(gnet, rows)
            np.testing.assert_allclose(tile.net.forward(h[:, tile.input_index]), out[:, rows], rtol=1e-12, atol=1e-12)
            assert size == block_size(tile.net, compress=len(tiles) == 1)
        h, h_shape = out, gnet.output_shape
    np.testing.assert_allclose(h, net.forward(x), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- composition


@pytest.mark.parametrize("model", MODELS)
def test_group_networks_compose_to_the_network(model: str) -> None:
    net = sample(model)
    plans = all_plans(net)
    assert sum(plan.has_output_group for plan in plans) >= 4
    for plan in plans:
        check_plan_composes(net, plan)


def test_group_networks_compose_when_the_output_group_is_refused() -> None:
    net = reads_an_earlier_layer()
    plans = all_plans(net)
    assert not any(plan.has_output_group for plan in plans)
    for plan in plans:
        check_plan_composes(net, plan)


# --------------------------------------------------------------------------- the output group


@pytest.mark.parametrize("model", MODELS)
def test_the_output_group_is_the_output_matrix(model: str) -> None:
    net = sample(model)
    plan = split_plan(net, 2, 2, use_output_group=True)
    tail, last = group_network(net, OUTPUT_GROUP, plan), net.layers[-1]
    d_last = sp.csr_matrix(net.D)[:, last.start : last.stop].toarray()
    assert tail.n_w == 0 and tail.input_shape == last.shape and tail.output_shape == net.output_shape
    np.testing.assert_array_equal(tail.C.toarray(), d_last)
    # A block without neurons: the naive bound is the certified norm, i.e. ||D_last|| rounded up.
    exact = np.linalg.norm(d_last, 2)
    assert exact <= naive_bound(tail) <= exact * (1 + 1e-6)
    # The group before it outputs the last layer's activations, so the grid cuts that map.
    before = group_network(net, plan.groups[-2], plan)
    assert before.output_shape == last.shape and plan.groups[-2].grid == (2, 2)


def test_the_output_group_is_refused_when_y_reads_an_earlier_layer() -> None:
    net = reads_an_earlier_layer()
    assert "the output reads layer 0 ('relu1_relu'), not only the last layer 1" in output_map_refusal(net)
    assert split_plan(net, 2, 2, use_output_group=True).groups == (
        GroupPlan(R1, R1, grid=(2, 2)),
        GroupPlan(R2, R2, parts=1),
    )
    plan = Plan((GroupPlan(R1, R2, grid=(2, 2)), OUTPUT_GROUP))
    with pytest.raises(ValueError, match="cannot cut the output map off the last layer: the output reads layer 0"):
        group_network(net, OUTPUT_GROUP, plan)
    with pytest.raises(ValueError, match="cannot cut the output map"):
        group_network(net, plan.groups[0], plan)


def test_plan_and_group_invariants() -> None:
    group = GroupPlan(R1, R2, grid=(2, 2))
    assert OUTPUT_GROUP.label == "output" and OUTPUT_GROUP.tiling == (1,)
    assert Plan((group, OUTPUT_GROUP)).has_output_group and not Plan((group,)).has_output_group
    with pytest.raises(ValueError, match="only be the last group"):
        Plan((GroupPlan(R1, R1, grid=(2, 2)), OUTPUT_GROUP, GroupPlan(R2, R2, parts=1)))
    with pytest.raises(ValueError, match="cannot be the only group"):
        Plan((OUTPUT_GROUP,))
    with pytest.raises(ValueError, match="the output group is GroupPlan"):
        GroupPlan("output", "output", grid=(1, 1), output=True)
    with pytest.raises(ValueError, match="the output group is GroupPlan"):
        GroupPlan(R2, R2, parts=1, output=True)
    with pytest.raises(ValueError, match="no activation layers"):
        group_span(sample("digits_chain"), OUTPUT_GROUP)


# --------------------------------------------------------------------------- YAML

TAIL_PLAN = """version: 1
groups:
  - layers: [relu1_relu, relu2_relu]
    grid: 2x2
  - layers: output
"""


def test_yaml_output_group() -> None:
    net = sample("digits_chain")
    plan = parse_plan(TAIL_PLAN, net)
    assert plan.groups == split_plan(net, 2, 2, use_output_group=True).groups
    for spelling in ("[output]", "[output, output]", "output\n    parts: 1"):
        assert parse_plan(TAIL_PLAN.replace("layers: output", f"layers: {spelling}"), net).groups == plan.groups
    text = plan_to_yaml(plan, net)
    assert "  - layers: output\n" in text and "the output map alone: 4x4x4 activations of 'relu2_relu' -> y 10" in text
    assert "output 4x4x4, 4 tile(s)" in text
    assert parse_plan(text, net).groups == plan.groups


TWO = "version: 1\ngroups:\n  - layers: [relu1_relu, relu1_relu]\n    grid: 2x2\n  - layers: relu2_relu\n"
YAML_ERRORS = [
    # (text, line, key, fragments)
    (TAIL_PLAN + "  - layers: relu2_relu\n", 5, "groups[1].layers", ["the output group must be the last group"]),
    ("version: 1\ngroups:\n  - layers: relu1_relu\n  - layers: output\n", 4, "groups[1].layers",
     ["can only follow the group that ends at the last layer 'relu2_relu'", "relu2_relu is in no group"]),
    ("version: 1\ngroups:\n  - layers: output\n", 3, "groups[0].layers",
     ["can only follow", "relu1_relu, relu2_relu are in no group"]),
    (TAIL_PLAN + "    grid: 1x1\n", 6, "groups[1].grid", ["the output group is one block", "it takes no grid"]),
    (TAIL_PLAN + "    parts: 2\n", 6, "groups[1].parts", ["parts must be 1"]),
    (TAIL_PLAN.replace("grid: 2x2", "grid: 5x5"), 4, "groups[0].grid",
     ["grid 5x5 does not fit group 'relu1_relu'..'relu2_relu' output 4x4: rows must be 1..4"]),
    (TAIL_PLAN.replace("grid: 2x2", "parts: 2"), 4, "groups[0].parts", ["outputs a 4x4x4 map"]),
    (TWO + "    grid: 2x2\n", 6, "groups[1].grid", ["1-D output (10 values)"]),  # no output group: y
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "fragments"), YAML_ERRORS)
def test_yaml_output_group_errors(text: str, line: int, key: str, fragments: list[str]) -> None:
    with pytest.raises(BadInputError) as info:
        parse_plan(text, sample("digits_chain"), "plan.yaml")
    message = str(info.value)
    assert message.startswith(f"plan.yaml, line {line}, {key}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_yaml_output_group_refused_with_the_reason() -> None:
    with pytest.raises(BadInputError) as info:
        parse_plan(TAIL_PLAN, reads_an_earlier_layer(), "plan.yaml")
    assert str(info.value).startswith(
        "plan.yaml, line 5, groups[1].layers: the output group needs the output y to read only the last "
        "activation layer 'relu2_relu', but the output reads layer 0 ('relu1_relu')"
    )


def test_a_layer_named_output_stays_a_layer() -> None:
    net = sample("digits_chain")
    renamed = dataclasses.replace(net, layers=(net.layers[0], dataclasses.replace(net.layers[1], name="output")))
    # Before every layer is covered, `output` is the layer; after, the output group.
    as_layer = parse_plan("version: 1\ngroups:\n  - layers: relu1_relu\n  - layers: output\n", renamed)
    assert as_layer.groups == (GroupPlan(R1, R1, grid=(1, 1)), GroupPlan("output", "output", parts=1))
    assert not as_layer.has_output_group
    both = parse_plan(TAIL_PLAN.replace("relu2_relu", "output"), renamed)
    assert both.groups == (GroupPlan(R1, "output", grid=(2, 2)), OUTPUT_GROUP)
    for plan in (as_layer, both, split_plan(renamed, 2, 2, use_output_group=True)):
        assert parse_plan(plan_to_yaml(plan, renamed), renamed).groups == plan.groups
