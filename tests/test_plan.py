"""Partition plans: YAML validation (every error names line and key), round trip, --split, auto_plan."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from lipcert.cli.common import parse_split
from lipcert.defaults import DEFAULT_SOLVER
from lipcert.errors import BadInputError
from lipcert.network.form import Layer, Network
from lipcert.partition.depth import depth_group, valid_cuts
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
    load_plan,
    output_map,
    output_tiles,
    parse_plan,
    plan_block_sizes,
    plan_to_yaml,
    span_output_shape,
    split_plan,
    tile_block_sizes,
)
from lipcert.partition.tiles import extract_tile
from tests.conftest import MODELS_DIR, REPO, SAMPLES, load_cached, requires_shared_models

CONFIGS = REPO / "configs"


def sample(name: str) -> Network:
    return load_cached(str(SAMPLES / f"{name}.onnx")).network


def shared(name: str) -> Network:
    return load_cached(str(MODELS_DIR / f"{name}.onnx")).network


def fc_net(widths: tuple[int, ...] = (6, 4, 5, 3)) -> Network:
    """A dense chain widths[0] -> ... -> widths[-1] with ReLU on every hidden layer (1-D outputs)."""
    rng = np.random.default_rng(0)
    hidden, n_w = widths[1:-1], sum(widths[1:-1])
    starts = np.concatenate([[0], np.cumsum(hidden)])
    B = np.zeros((n_w, n_w))
    for k in range(1, len(hidden)):
        B[starts[k] : starts[k + 1], starts[k - 1] : starts[k]] = rng.normal(size=(hidden[k], hidden[k - 1]))
    A = np.zeros((n_w, widths[0]))
    A[: hidden[0]] = rng.normal(size=(hidden[0], widths[0]))
    D = np.zeros((widths[-1], n_w))
    D[:, starts[-2] :] = rng.normal(size=(widths[-1], hidden[-1]))
    layers = tuple(
        Layer(f"fc{k}", "relu", int(starts[k]), int(starts[k + 1]), (h,), 0.0, 1.0) for k, h in enumerate(hidden)
    )
    zero = sp.csr_matrix((widths[-1], widths[0]))
    return Network(
        A=sp.csr_matrix(A),
        B=sp.csr_matrix(B),
        C=zero,
        D=sp.csr_matrix(D),
        bias_v=np.zeros(n_w),
        bias_y=np.zeros(widths[-1]),
        layers=layers,
        input_shape=(widths[0],),
        output_shape=(widths[-1],),
    )


# --------------------------------------------------------------------------- parsing

# digits_chain: relu1_relu (4x8x8), relu2_relu (4x4x4; the last group outputs y, 10 logits).
CHAIN_GROUPS = """groups:
  - layers: [relu1_relu, relu1_relu]
    grid: 2x2
  - layers: relu2_relu
    parts: 1
"""
CHAIN_OK = "version: 1\n" + CHAIN_GROUPS


def test_minimal_plan_gets_defaults() -> None:
    plan = parse_plan("version: 1\ngroups:\n  - layers: [relu1_relu, relu2_relu]\n", sample("digits_chain"))
    assert plan.groups == (GroupPlan("relu1_relu", "relu2_relu", parts=1),)
    assert (plan.method, plan.combine) == ("lipsdp-neuron", "auto")
    assert plan.solver == DEFAULT_SOLVER == {"eps": 1e-3, "max_iters": 20_000, "time_limit": None, "warm_start": True}


def test_full_plan_parses() -> None:
    text = (
        "version: 1\nmethod: lipsdp-layer\ncombine: pou\n"
        "solver: {eps: 1e-3, max_iters: 100, time_limit: null, warm_start: no}\n" + CHAIN_GROUPS
    )
    plan = parse_plan(text, sample("digits_chain"))
    assert plan.groups == (
        GroupPlan("relu1_relu", "relu1_relu", grid=(2, 2)),
        GroupPlan("relu2_relu", "relu2_relu", parts=1),
    )
    assert (plan.method, plan.combine) == ("lipsdp-layer", "pou")
    assert plan.solver == {"eps": 1e-3, "max_iters": 100, "time_limit": None, "warm_start": False}


def test_grid_as_a_pair() -> None:
    text = CHAIN_OK.replace("grid: 2x2", "grid: [3, 4]")
    assert parse_plan(text, sample("digits_chain")).groups[0].grid == (3, 4)


def _groups(first: tuple[str, str], second: tuple[str, str] | None = None, tiling: str = "") -> str:
    """A groups: block; `tiling` goes under the first group (line 4 of the whole text)."""
    text = f"groups:\n  - layers: [{first[0]}, {first[1]}]\n"
    text += f"    {tiling}\n" if tiling else ""
    return text + (f"  - layers: [{second[0]}, {second[1]}]\n" if second else "")


R1, R2 = "relu1_relu", "relu2_relu"
V1 = "version: 1\n"
ERRORS = [
    # (network, text, line, key, fragments of the message)
    ("digits_chain", V1 + "methods: naive\n" + CHAIN_GROUPS, 2, "methods",
     ["unknown key 'methods'", "version, method, combine, solver, groups"]),
    ("digits_chain", CHAIN_GROUPS, 1, "version", ["missing key 'version'"]),
    ("digits_chain", V1, 1, "groups", ["missing key 'groups'"]),
    ("digits_chain", "version: 2\n" + CHAIN_GROUPS, 1, "version", ["unsupported version 2"]),
    ("digits_chain", V1 + "version: 1\n" + CHAIN_GROUPS, 2, "version", ["given twice"]),
    ("digits_chain", V1 + "groups: []\n", 2, "groups", ["non-empty list"]),
    ("digits_chain", V1 + "groups:\n  - grid: 2x2\n", 3, "groups[0]", ["missing key 'layers'"]),
    ("digits_chain", V1 + "groups:\n  - layers: [relu1_relu, relu2_relu]\n    grids: 2x2\n", 4,
     "groups[0].grids", ["unknown key 'grids'", "layers, grid, parts"]),
    ("digits_chain", V1 + _groups((R1, "relu3"), (R2, R2)), 3, "groups[0].layers[1]",
     ["unknown layer 'relu3'", "relu1_relu, relu2_relu"]),
    ("digits_chain", V1 + _groups((R2, R2)), 3, "groups[0].layers", ["layer relu1_relu is in no group"]),
    ("digits_chain", V1 + _groups((R1, R2), (R2, R2)), 4, "groups[1].layers",
     ["'relu2_relu' is already in an earlier group", "groups[0] already ends at the last layer"]),
    ("digits_chain", V1 + _groups((R2, R1)), 3, "groups[0].layers", ["comes after last layer"]),
    ("digits_chain", V1 + _groups((R1, R1)), 3, "groups[0].layers",
     ["leave out relu2_relu", "must end at the last layer 'relu2_relu'"]),
    ("digits_residual", V1 + _groups((R1, "block_relu_relu"), (R2, R2)), 4, "groups[1].layers",
     ["cannot start at 'relu2_relu'", "reads layer 0 ('relu1_relu')", "residual",
      "groups may start at relu1_relu, block_relu_relu"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), "grid: 9x2"), 4, "groups[0].grid",
     ["grid 9x2 does not fit group 'relu1_relu' output 8x8: rows must be 1..8"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), "grid: 0x2"), 4, "groups[0].grid",
     ["grid 0x2 does not fit", "rows must be 1..8"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), "grid: 2x12"), 4, "groups[0].grid",
     ["columns must be 1..8"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), 'grid: "abc"'), 4, "groups[0].grid",
     ["expected ROWSxCOLS such as 2x2, found 'abc'"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), "grid: {a: 1}"), 4, "groups[0].grid",
     ["expected ROWSxCOLS", "found a mapping"]),
    ("digits_chain", V1 + _groups((R1, R1), (R2, R2), "parts: 4"), 4, "groups[0].parts",
     ["outputs a 4x8x8 map", "grid: RxC"]),
    ("digits_chain", V1 + _groups((R1, R2), None, "grid: 2x2"), 4, "groups[0].grid",
     ["1-D output (10 values)", "parts: N with N in 1..10"]),
    ("digits_chain", V1 + _groups((R1, R2), None, "parts: 11"), 4, "groups[0].parts",
     ["parts must be 1..10"]),
    ("digits_chain", V1 + _groups((R1, R2), None, "parts: two"), 4, "groups[0].parts",
     ["expected an integer >= 1, found 'two'"]),
    ("digits_chain", V1 + "solver: {eps: x}\n" + CHAIN_GROUPS, 2, "solver.eps",
     ["expected a positive number, found 'x'"]),
    ("digits_chain", V1 + "solver:\n  eps: -1.0\n" + CHAIN_GROUPS, 3, "solver.eps", ["must be > 0"]),
    ("digits_chain", V1 + "solver:\n  max_iters: 2.5\n" + CHAIN_GROUPS, 3, "solver.max_iters",
     ["expected an integer"]),
    ("digits_chain", V1 + "solver:\n  time_limit: soon\n" + CHAIN_GROUPS, 3, "solver.time_limit",
     ["expected a positive number"]),
    ("digits_chain", V1 + "solver:\n  warm_start: maybe\n" + CHAIN_GROUPS, 3, "solver.warm_start",
     ["expected true or false"]),
    ("digits_chain", V1 + "solver:\n  tol: 1\n" + CHAIN_GROUPS, 3, "solver.tol",
     ["unknown key 'tol'", "eps, max_iters, time_limit, warm_start"]),
    ("digits_chain", V1 + "method: lipsdp-network\n" + CHAIN_GROUPS, 2, "method",
     ["unknown value 'lipsdp-network'", "naive, lipsdp-neuron, lipsdp-layer"]),
    ("digits_chain", V1 + "combine: sum\n" + CHAIN_GROUPS, 2, "combine",
     ["unknown value 'sum'", "paper, overlap, pou, coupled, auto"]),
    ("digits_chain", "- 1\n- 2\n", 1, "top level", ["expected a mapping"]),
    ("digits_chain", V1 + "solver:\n  eps: !!python/name:os.system\n" + CHAIN_GROUPS, 3, "solver.eps",
     ["expected a positive number, found a value tagged"]),
    ("digits_residual", V1 + _groups((R1, "block_relu_relu"), ("block_relu_relu", R2)), 4, "groups[1].layers",
     ["'block_relu_relu' is already in an earlier group", "should start at 'relu2_relu'"]),
]  # fmt: skip


@pytest.mark.parametrize(("model", "text", "line", "key", "fragments"), ERRORS)
def test_errors_name_line_and_key(model: str, text: str, line: int, key: str, fragments: list[str]) -> None:
    with pytest.raises(BadInputError) as info:
        parse_plan(text, sample(model), "plan.yaml")
    message = str(info.value)
    assert message.startswith(f"plan.yaml, line {line}, {key}: "), message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (V1 + "groups:\n  - layers: [relu1_relu, relu2_relu\n  - layers: x\n", 4),
        (V1 + "groups:\n\t- layers: x\n", 3),
        (V1 + "solver: {eps: 1\n", 3),
    ],
)
def test_malformed_yaml_names_the_line(text: str, line: int) -> None:
    with pytest.raises(BadInputError, match=rf"^plan.yaml, line {line}: malformed YAML: "):
        parse_plan(text, sample("digits_chain"), "plan.yaml")


def test_empty_plan() -> None:
    with pytest.raises(BadInputError, match="the plan is empty"):
        parse_plan("# nothing\n", sample("digits_chain"), "plan.yaml")


def test_load_plan_reads_files_and_names_missing_ones(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "p.yaml"
    path.write_text(CHAIN_OK, encoding="utf-8")
    assert load_plan(path, sample("digits_chain")).groups[0].grid == (2, 2)
    with pytest.raises(BadInputError, match="no such plan file"):
        load_plan(tmp_path / "absent.yaml", sample("digits_chain"))
    path.write_text(CHAIN_OK.replace("2x2", "2x9"), encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"^{path}, line 4, groups\[0\].grid: "):
        load_plan(path, sample("digits_chain"))


def test_plan_invariants() -> None:
    with pytest.raises(ValueError, match="exactly one of grid or parts"):
        GroupPlan("a", "b", grid=(1, 1), parts=1)
    with pytest.raises(ValueError, match="at least one group"):
        Plan(groups=())
    with pytest.raises(ValueError, match="unknown method"):
        Plan(groups=(GroupPlan("a", "a", parts=1),), method="lipsdp-network")


# --------------------------------------------------------------------------- round trip


def _same(a: Plan, b: Plan) -> bool:
    return (a.groups, a.method, a.combine, a.solver) == (b.groups, b.method, b.combine, b.solver)


def test_round_trip_of_generated_plans() -> None:
    chain, residual = sample("digits_chain"), sample("digits_residual")
    for net, plan in [
        (chain, split_plan(chain, 2, 2, use_output_group=True)),
        (residual, auto_plan(residual, 100)),
        (chain, auto_plan(chain, 10)),
    ]:
        assert _same(parse_plan(plan_to_yaml(plan), net), plan)
        assert _same(parse_plan(plan_to_yaml(plan, net), net), plan)  # with per-group comments


def test_warnings_become_comments() -> None:
    net = sample("digits_chain")
    plan = auto_plan(net, 10)
    assert plan.warnings
    text = plan_to_yaml(plan)
    assert all(f"# warning: {note}" in text for note in plan.warnings)


@settings(max_examples=40, deadline=None)
@given(
    eps=st.floats(min_value=1e-12, max_value=1e3, allow_nan=False, allow_infinity=False),
    max_iters=st.integers(1, 10**7),
    time_limit=st.one_of(st.none(), st.integers(1, 10**5), st.floats(min_value=1e-3, max_value=1e6)),
    warm_start=st.booleans(),
    grid=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    parts=st.integers(1, 10),
    method=st.sampled_from(["naive", "lipsdp-neuron", "lipsdp-layer"]),
    combine=st.sampled_from(["paper", "overlap", "pou", "coupled"]),
)
def test_round_trip_any_settings(
    eps: float, max_iters: int, time_limit: float | None, warm_start: bool, grid: tuple[int, int],
    parts: int, method: str, combine: str,
) -> None:  # fmt: skip
    solver = {"eps": eps, "max_iters": max_iters, "time_limit": time_limit, "warm_start": warm_start}
    groups = (GroupPlan(R1, R1, grid=grid), GroupPlan(R2, R2, parts=parts))
    plan = Plan(groups, method=method, combine=combine, solver=solver)
    assert _same(parse_plan(plan_to_yaml(plan), sample("digits_chain")), plan)


def test_round_trip_quotes_awkward_layer_names() -> None:
    net = sample("digits_chain")
    for odd in ("12", "true", "a: b", "x, y]", "#hash", "null", "ü " * 60, "output"):
        for k in (0, 1):
            layers = list(net.layers)
            layers[k] = dataclasses.replace(layers[k], name=odd)
            renamed = dataclasses.replace(net, layers=tuple(layers))
            for plan in (
                split_plan(renamed, 2, 2, use_output_group=True),
                split_plan(renamed, 2, 2, max_block_size=130, use_output_group=True),
            ):
                assert _same(parse_plan(plan_to_yaml(plan, renamed), renamed), plan), (odd, k)


# --------------------------------------------------------------------------- --split


def test_split_plan_on_the_chain() -> None:
    # The whole conv stack fits the budget with the grid on relu2_relu's 4x4 map; the
    # output group then maps those activations to y.
    plan = split_plan(sample("digits_chain"), 2, 2, use_output_group=True)
    assert plan.groups == (GroupPlan(R1, R2, grid=(2, 2)), OUTPUT_GROUP)
    assert plan.warnings == ()
    assert [int(s.max()) for s in plan_block_sizes(sample("digits_chain"), plan)] == [152, 10]


def test_split_plan_without_the_output_group() -> None:
    plan = split_plan(sample("digits_chain"), 2, 2, use_output_group=False)
    # relu2_relu's group outputs y (10 logits): one block, and a spatial unit never joins it.
    assert plan.groups == (GroupPlan(R1, R1, grid=(2, 2)), GroupPlan(R2, R2, parts=1))
    assert [int(s.max()) for s in plan_block_sizes(sample("digits_chain"), plan)] == [89, 128]


def test_split_plan_merges_only_within_the_budget() -> None:
    net = sample("digits_chain")
    plan = split_plan(
        net, 2, 2, max_block_size=130, use_output_group=True
    )  # the merged group's blocks (152) are too big
    assert plan.groups == (GroupPlan(R1, R1, grid=(2, 2)), GroupPlan(R2, R2, grid=(2, 2)), OUTPUT_GROUP)
    assert [int(s.max()) for s in plan_block_sizes(net, plan)] == [89, 116, 10] and plan.warnings == ()
    plan = split_plan(
        net, 2, 2, max_block_size=40, use_output_group=True
    )  # no grouping fits: one unit per group, warned
    assert [g.label for g in plan.groups] == ["'relu1_relu'", "'relu2_relu'", "output"]
    assert plan.warnings == (
        "group 'relu1_relu': grid 2x2 gives blocks up to 89, above max_block_size 40",
        "group 'relu2_relu': grid 2x2 gives blocks up to 116, above max_block_size 40",
    )


def test_split_plan_keeps_residual_blocks_whole() -> None:
    net = sample("digits_residual")
    plan = split_plan(net, 3, 1, max_block_size=250, use_output_group=True)  # the merged group needs 304
    assert plan.groups == (GroupPlan(R1, R1, grid=(3, 1)), GroupPlan("block_relu_relu", R2, grid=(3, 1)), OUTPUT_GROUP)
    assert split_plan(net, 3, 1, use_output_group=True).groups == (GroupPlan(R1, R2, grid=(3, 1)), OUTPUT_GROUP)


def test_split_plan_refuses_grids_that_do_not_fit() -> None:
    with pytest.raises(BadInputError) as info:
        split_plan(sample("digits_chain"), 9, 2, use_output_group=True)
    message = str(info.value)
    assert "--split 9x2 does not fit the output 8x8 of 'relu1_relu': rows must be 1..8" in message
    assert "up to 4x4" in message  # relu2_relu's 4x4 map takes the grid too
    with pytest.raises(BadInputError, match=r"5x5 does not fit the output 4x4 of 'relu2_relu'.*up to 4x4"):
        split_plan(sample("digits_chain"), 5, 5, use_output_group=True)


def test_split_plan_rejects_a_nonpositive_budget() -> None:
    with pytest.raises(BadInputError, match="max_block_size must be >= 1"):
        split_plan(sample("digits_chain"), 2, 2, max_block_size=0)


def test_split_plan_on_a_dense_network_warns_that_the_grid_is_unused() -> None:
    net = fc_net()
    plan = split_plan(net, 2, 2, max_block_size=8, use_output_group=True)  # fc0 alone is 6 + 4 = 10 > 8
    assert plan.groups == (GroupPlan("fc0", "fc0", parts=1), GroupPlan("fc1", "fc1", parts=1))
    assert "applies to no group" in plan.warnings[0]
    # Within the budget, the 1-D layers merge into one group (still no output group: y is 1-D already).
    plan = split_plan(net, 2, 2, use_output_group=True)
    assert plan.groups == (GroupPlan("fc0", "fc1", parts=1),)
    assert "applies to no group" in plan.warnings[0]


@pytest.mark.parametrize("text", ["0x2", "2x0", "2", "axb", "", "2x2x2", "-1x2"])
def test_parse_split_errors(text: str) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        parse_split(text)
    assert caught.value.param_hint == "--split"


@pytest.mark.parametrize(("text", "grid"), [("2x2", (2, 2)), (" 3X4 ", (3, 4)), ("1x16", (1, 16)), ("2×3", (2, 3))])
def test_parse_split(text: str, grid: tuple[int, int]) -> None:
    assert parse_split(text) == grid


# --------------------------------------------------------------------------- block sizes


def _reference_sizes(group: Network, tiles: list[np.ndarray]) -> np.ndarray:
    """The definition: extract each tile, then measure it (compressed only as a single block)."""
    return np.array([block_size(extract_tile(group, t).net, compress=len(tiles) == 1) for t in tiles])


@pytest.mark.parametrize("model", ["digits_chain", "digits_residual", "digits_tanh"])
def test_fast_sizes_equal_extracted_tiles(model: str) -> None:
    net = sample(model)
    units = depth_units(net)
    for ((a, _), (_, b)), activations in itertools.product(
        itertools.combinations_with_replacement(units, 2), (False, True)
    ):
        group = depth_group(net, a, b, to_activations=activations)
        shape = span_output_shape(net, b, activations)
        assert group.output_shape == shape
        tilings = [(1, 1), (2, 3), (shape[1], shape[2])] if len(shape) == 3 else [(1,), (3,), (math.prod(shape),)]
        for tiling in tilings:
            tiles = output_tiles(shape, tiling)
            assert np.array_equal(tile_block_sizes(group, tiles), _reference_sizes(group, tiles)), (a, b, tiling)
    tail = output_map(net)
    for parts in (1, 3):
        tiles = output_tiles(net.output_shape, (parts,))
        assert np.array_equal(tile_block_sizes(tail, tiles), _reference_sizes(tail, tiles))


def test_compressed_size_bounds_what_the_solver_builds() -> None:
    from lipcert.sdp.lipsdp import compress_inputs

    net = sample("digits_chain")
    last = depth_group(net, 1, 1)  # 64 neurons reading 256 values through 64 rows
    assert block_size(last) == 128 and block_size(last, compress=False) == 320
    assert compress_inputs(last).lmi_size <= block_size(last)


# --------------------------------------------------------------------------- auto_plan


def _check_budget(net: Network, plan: Plan, budget: int) -> None:
    """Every PSD constraint fits (a block, or the chordal cliques of a one-block group), except groups
    that are single depth units (or the output group) and carry a warning."""
    from lipcert.estimate import solved_block_sizes

    units = depth_units(net)
    for group, side in zip(plan.groups, solved_block_sizes(net, plan, budget)):
        if side > budget:
            assert group.output or group_span(net, group) in units
            assert any(group.label in note for note in plan.warnings)


@pytest.mark.parametrize("model", ["digits_chain", "digits_residual", "digits_tanh"])
@pytest.mark.parametrize("budget", [50, 100, 200, 400, 10**6])
def test_auto_plan_respects_the_budget(model: str, budget: int) -> None:
    net = sample(model)
    plan = auto_plan(net, budget)
    _check_budget(net, plan, budget)
    starts = [group_span(net, g)[0] for g in plan.groups[1:] if not g.output]
    assert set(starts) <= set(valid_cuts(net))


@pytest.mark.parametrize("model", ["digits_chain", "digits_residual", "digits_tanh"])
def test_a_huge_budget_gives_one_block(model: str) -> None:
    plan = auto_plan(sample(model), 10**6)
    assert len(plan.groups) == 1 and plan.groups[0].n_tiles == 1 and plan.warnings == ()


def test_auto_plan_prefers_fewer_cuts() -> None:
    net = sample("digits_residual")
    assert len(auto_plan(net, 400, chordal=False).groups) == 2
    assert len(auto_plan(net, 600, chordal=False).groups) == 1  # the whole net (448) fits: no cut
    counts = [len(auto_plan(sample("digits_chain"), b, chordal=False).groups) for b in (100, 200, 400)]
    assert counts == sorted(counts, reverse=True)


def test_auto_plan_takes_the_output_group_only_to_stay_within_budget() -> None:
    net = sample("digits_chain")
    # relu2_relu -> y is one block of 128 whatever the parts (each logit reads all of it);
    # with the output group, relu1..relu2 is tiled on relu2's map and y costs 10.
    plan = auto_plan(net, 100, chordal=False)
    assert plan.groups == (GroupPlan(R1, R2, grid=(2, 4)), OUTPUT_GROUP) and plan.warnings == ()
    assert [int(s.max()) for s in plan_block_sizes(net, plan)] == [98, 10]
    # As many groups either way and nothing over budget: no output group (one cut fewer).
    assert not auto_plan(net, 200, chordal=False).has_output_group
    assert not auto_plan(net, 400, chordal=False).has_output_group


def test_auto_plan_takes_the_whole_network_when_its_chordal_cliques_fit() -> None:
    """digits_chain's LMI is 384 and its chordal extension's largest clique 82: at a budget of 150 the
    whole network is one block (the full LipSDP); below 82, or without chordal solves, it is cut."""
    from lipcert.estimate import solved_block_sizes
    from lipcert.sdp.chordal import chordal_tree

    net = sample("digits_chain")
    largest_clique = chordal_tree(net).largest
    plan = auto_plan(net, 150)
    assert len(plan.groups) == 1 and plan.groups[0].n_tiles == 1
    assert int(plan_block_sizes(net, plan)[0].max()) == net.lmi_size > 150
    assert largest_clique <= solved_block_sizes(net, plan, 150)[0] <= 150
    assert len(auto_plan(net, largest_clique - 1).groups) > 1
    assert len(auto_plan(net, 150, chordal=False).groups) > 1


@pytest.mark.parametrize("budget", [100, 200])
def test_auto_plan_picks_the_coarsest_grid(budget: int) -> None:
    """Brute force over every grid: none with fewer tiles fits."""
    net = sample("digits_chain")
    plan = auto_plan(net, budget, chordal=False)
    group = plan.groups[0]
    assert group.grid is not None and plan_block_sizes(net, plan)[0].max() <= budget
    depth, shape = group_network(net, group, plan), group_output_shape(net, group, plan)
    for rows, cols in itertools.product(range(1, shape[1] + 1), range(1, shape[2] + 1)):
        if rows * cols < group.n_tiles:
            assert tile_block_sizes(depth, output_tiles(shape, (rows, cols))).max() > budget


def test_auto_plan_on_dense_layers_uses_compressed_single_blocks() -> None:
    net = fc_net((30, 4, 4, 3))  # 30 inputs into 4 neurons: one block is 4 + 4, not 30 + 4
    plan = auto_plan(net, 12)
    assert plan.groups == (GroupPlan("fc0", "fc1", parts=1),) and plan.warnings == ()
    assert plan_block_sizes(net, plan)[0].tolist() == [4 + 8]


def test_auto_plan_warns_when_nothing_fits() -> None:
    plan = auto_plan(sample("digits_chain"), 10)
    assert [g.tiling for g in plan.groups] == [(8, 8), (1,)]
    assert len(plan.warnings) == 2 and "no tiling keeps its blocks within 10" in plan.warnings[0]


def test_auto_plan_rejects_a_nonpositive_budget() -> None:
    with pytest.raises(BadInputError, match="max_block_size must be >= 1"):
        auto_plan(sample("digits_chain"), 0)


# --------------------------------------------------------------------------- configs and real models


def test_digits_chain_config_is_the_2x2_split() -> None:
    net = sample("digits_chain")
    plan = load_plan(CONFIGS / "digits_chain_2x2.yaml", net)
    assert _same(plan, split_plan(net, 2, 2, use_output_group=True))


@requires_shared_models
def test_cifar_base_config_is_what_auto_plan_gives() -> None:
    net = shared("oval21__cifar_base_kw")
    plan = load_plan(CONFIGS / "cifar_base_auto.yaml", net)
    assert _same(plan, auto_plan(net, 600))
    assert [int(s.max()) for s in plan_block_sizes(net, plan)] == [444, 200]


@requires_shared_models
@pytest.mark.parametrize("budget", [400, 1000])
def test_auto_plan_on_a_residual_cifar_net(budget: int) -> None:
    net = shared("cifar10_resnet__resnet_2b")
    plan = auto_plan(net, budget)
    _check_budget(net, plan, budget)
    # Residual blocks stay whole: groups start only at relu_1, relu_3, relu_9, relu_15.
    assert {g.first for g in plan.groups} <= {"relu_1", "relu_3", "relu_9", "relu_15"}


@requires_shared_models
def test_fast_sizes_equal_extracted_tiles_on_a_residual_block() -> None:
    net = shared("cifar10_resnet__resnet_2b")
    group = depth_group(net, 1, 2)  # relu_3 .. relu_7, with the projection shortcut from relu_1
    tiles = output_tiles(net.layers[2].shape, (3, 3))
    assert np.array_equal(tile_block_sizes(group, tiles), _reference_sizes(group, tiles))


@requires_shared_models
@pytest.mark.parametrize(
    ("model", "grid", "expected"),
    [
        # relu_1 and relu_3 do not fit one group under 2x2 or 4x4; the FC layer relu_6 and
        # the output map stay one group (its output is y), parts 1.
        ("oval21__cifar_base_kw", 4, [("relu_1", "relu_1", 428), ("relu_3", "relu_3", 352), ("relu_6", "relu_6", 200)]),
        ("oval21__cifar_deep_kw", 4, [("relu_1", "relu_1", 428), ("relu_3", "relu_3", 416), ("relu_5", "relu_5", 416),
                                      ("relu_7", "relu_7", 320), ("relu_10", "relu_10", 200)]),
        ("cifar10_resnet__resnet_2b", 4, [("relu_1", "relu_1", 371), ("relu_3", "relu_7", 968),
                                          ("relu_9", "relu_12", 896), ("relu_15", "relu_15", 200)]),
    ],
)  # fmt: skip
def test_split_plan_on_cifar_nets(model: str, grid: int, expected: list[tuple[str, str, int]]) -> None:
    net = shared(model)
    plan = split_plan(net, grid, grid, max_block_size=600, use_output_group=True)
    sizes = plan_block_sizes(net, plan)
    assert [(g.first, g.last, int(s.max())) for g, s in zip(plan.groups, sizes)] == expected
    assert not plan.has_output_group  # the last activation layer is 1-D
    assert all(g.grid == (grid, grid) for g in plan.groups[:-1]) and plan.groups[-1].parts == 1
    # Only the residual blocks (indivisible units) exceed 600, and the plan says so.
    _check_budget(net, plan, 600)
