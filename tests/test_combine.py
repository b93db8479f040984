"""The combination theorems of MATH.md §4: hand-computed answers, upward rounding, soundness."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from convnets import Conv, linear_map, random_convnet
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lipcert.combine import combine_depth, combine_overlap, combine_paper, combine_pou, pou_weights
from lipcert.linalg import spectral_norm_upper
from lipcert.network.form import Network
from lipcert.partition.depth import depth_group, valid_cuts
from lipcert.partition.tiles import extract_tile, spatial_tiles
from lipcert.vocabulary import Combine, GroupRule, Method

ULP = 4 * np.finfo(float).eps  # a few ulps: results may sit that far above the exact value


def _close_above(value: float, exact: float) -> bool:
    return exact <= value <= exact * (1 + ULP) + 1e-300


def _idx(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# --------------------------------------------------------------------------- hand-computed answers


def test_paper() -> None:
    assert _close_above(combine_paper([3.0, 4.0]), 5.0)
    assert _close_above(combine_paper([1.0, 2.0, 2.0]), 3.0)


def test_overlap() -> None:
    # pixel 1 is read by both tiles: 9 + 16 = 25
    assert _close_above(combine_overlap([3.0, 4.0], [_idx(0, 1), _idx(1, 2)], 3), 5.0)
    # disjoint receptive fields: the worst tile alone
    assert _close_above(combine_overlap([3.0, 4.0], [_idx(0), _idx(2)], 3), 4.0)
    # three tiles on pixel 1: 1 + 4 + 4
    assert _close_above(combine_overlap([1.0, 2.0, 2.0], [_idx(0, 1), _idx(1), _idx(1, 2)], 3), 3.0)


def test_pou_weights_count_the_covering_tiles() -> None:
    pi = pou_weights([_idx(0, 1), _idx(1, 2), _idx(1)], 3)
    assert pi[0][0] == 1.0 and pi[1][1] == 1.0
    third = pi[0][1]
    assert third == pi[1][0] == pi[2][0] and Fraction(third) <= Fraction(1, 3) < Fraction(np.nextafter(third, 1.0))
    assert 3 * Fraction(third) <= 1  # the partition of unity holds exactly for the stored floats
    halves = pou_weights([_idx(0, 1), _idx(1)], 2)
    assert halves[0].tolist() == [1.0, 0.5] and halves[1].tolist() == [0.5]  # powers of two stay exact


def test_pou_weights_round_down_when_the_nearest_float_is_above() -> None:
    for count in range(1, 200):
        (w,) = pou_weights([np.arange(count)] * count, count)[:1]
        assert count * Fraction(float(w[0])) <= 1 < count * Fraction(float(np.nextafter(w[0], np.inf)))


def test_pou() -> None:
    assert _close_above(combine_pou([4.0, 9.0, 1.0]), 3.0)


def test_depth() -> None:
    assert _close_above(combine_depth([2.0, 3.5]), 7.0)
    assert _close_above(combine_depth([0.5, 0.5, 4.0]), 1.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bounds_must_be_finite_and_nonnegative(bad: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        combine_paper([1.0, bad])
    with pytest.raises(ValueError, match="finite and >= 0"):
        combine_depth([bad])


def test_overlap_checks_its_indices() -> None:
    with pytest.raises(ValueError, match="2 bounds but 1"):
        combine_overlap([1.0, 2.0], [_idx(0)], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        combine_overlap([1.0], [_idx(3)], 3)
    with pytest.raises(ValueError, match="repeat"):
        combine_overlap([1.0], [_idx(1, 1)], 3)


# --------------------------------------------------------------------------- upward rounding, exactly

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@given(st.lists(positive, min_size=1, max_size=30))
def test_paper_rounds_up_exactly(bounds: list[float]) -> None:
    assert Fraction(combine_paper(bounds)) ** 2 >= sum(Fraction(b) ** 2 for b in bounds)


@given(st.lists(positive, min_size=1, max_size=12))
def test_depth_rounds_up_exactly(bounds: list[float]) -> None:
    assert Fraction(combine_depth(bounds)) >= math.prod(Fraction(b) for b in bounds)


@given(st.lists(positive, min_size=1, max_size=10), st.data())
def test_overlap_rounds_up_exactly_and_beats_paper(bounds: list[float], data: st.DataObject) -> None:
    n_x = 6
    sets = [np.array(sorted(data.draw(st.sets(st.integers(0, n_x - 1), min_size=1)))) for _ in bounds]
    value = combine_overlap(bounds, sets, n_x)
    exact = max(sum(Fraction(b) ** 2 for b, K in zip(bounds, sets) if k in K) for k in range(n_x))
    assert Fraction(value) ** 2 >= exact
    assert value <= combine_paper(bounds)


# --------------------------------------------------------------------------- soundness on conv nets

IDENTITY = {"activation": "leaky_relu", "param": 1.0}  # slopes [1, 1]: the network is linear


@st.composite
def linear_convnets(draw: st.DrawFn) -> Network:
    """Random small linear conv nets: stride, padding, dilation, groups, residual stages, head or not."""
    input_shape = (draw(st.integers(1, 2)), draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    channels, height, width = input_shape
    stages: list[Conv] = []
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):  # a shape-preserving residual stage (INPUT when it is the first)
            dil = draw(st.integers(1, 2))
            stages.append(Conv(channels, 3, 1, dil, dil, 1, skip_from=len(stages) - 1, **IDENTITY))
            continue
        out = draw(st.integers(1, 3))
        groups = channels if channels == out and draw(st.booleans()) else 1
        kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        conv = Conv(out, kernel, stride, draw(st.integers(0, 1)), draw(st.integers(1, 2)), groups, **IDENTITY)
        height, width = _out_size(height, conv), _out_size(width, conv)
        assume(height >= 1 and width >= 1)
        stages.append(conv)
        channels = out
    head = Conv(draw(st.integers(1, 2)), draw(st.integers(1, 3)), 1, 1) if draw(st.booleans()) else None
    return random_convnet(input_shape, stages, head, seed=draw(st.integers(0, 99))).form


def _out_size(size: int, conv: Conv) -> int:
    return (size + 2 * conv.padding - conv.dilation * (conv.kernel - 1) - 1) // conv.stride + 1


def _norm_upper(matrix: np.ndarray) -> float:
    return spectral_norm_upper(matrix)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(linear_convnets(), st.data())
def test_every_combination_bounds_the_true_constant(net: Network, data: st.DataObject) -> None:
    """With exact per-block constants (spectral norms of linear blocks), every theorem is sound."""
    true = float(np.linalg.norm(linear_map(net), 2))
    _, height, width = net.output_shape
    rows, cols = data.draw(st.integers(1, height)), data.draw(st.integers(1, width))
    tiles = [extract_tile(net, t) for t in spatial_tiles(net.output_shape, rows, cols)]
    K = [t.input_index for t in tiles]
    bounds = [_norm_upper(linear_map(t.net)) for t in tiles]
    paper, overlap = combine_paper(bounds), combine_overlap(bounds, K, net.n_x)
    assert true <= overlap <= paper
    weights = pou_weights(K, net.n_x)
    rhos = [_norm_upper(linear_map(t.net) / np.sqrt(w)) ** 2 for t, w in zip(tiles, weights)]
    assert true <= combine_pou(rhos)
    cuts = valid_cuts(net)
    edges = [0, *cuts, len(net.layers)]
    groups = [depth_group(net, a, b - 1) for a, b in zip(edges[:-1], edges[1:])]
    assert true <= combine_depth([_norm_upper(linear_map(g)) for g in groups])


def test_auto_combine_couples_small_groups_and_solves_large_ones_as_independent_tiles() -> None:
    from lipcert.combine import resolve_rule
    from lipcert.defaults import COUPLED_BUDGET

    net = random_convnet((1, 8, 8), [Conv(4)], Conv(4), seed=0).form
    sizes = [extract_tile(net, t).net.lmi_size for t in spatial_tiles(net.output_shape, 2, 2)]
    largest = max(sizes)
    neuron, layer = Method.NEURON, Method.LAYER
    assert resolve_rule(Combine.AUTO, neuron, sizes, max_block_size=largest) == "coupled"
    # a budget so small that the tiles' summed cubic cost exceeds COUPLED_BUDGET blocks of it
    small = int((sum(n**3 for n in sizes) / COUPLED_BUDGET) ** (1 / 3)) - 1
    assert resolve_rule(Combine.AUTO, neuron, sizes, max_block_size=small) == "overlap"
    assert resolve_rule(Combine.AUTO, layer, sizes, max_block_size=largest) == "overlap"
    assert resolve_rule(Combine.PAPER, neuron, sizes, max_block_size=small) == "paper"
    assert resolve_rule(Combine.COUPLED, neuron, sizes[:1], max_block_size=small) == "single"


def test_every_combination_rule_names_its_theorem() -> None:
    from lipcert.combine import RULES

    assert set(RULES) == set(GroupRule)
    assert all(rule.theorem and rule.name == name for name, rule in RULES.items())
    # auto and global choose or combine across the whole network; every other mode is one group rule
    assert {str(c) for c in Combine} - {"auto", "global"} <= {str(r) for r in GroupRule}
