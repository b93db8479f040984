"""The chordal decomposition of the full LMI (lipcert.sdp.chordal): cover, tree, split, and the bound."""

from __future__ import annotations

from functools import cache

import numpy as np
from convnets import INPUT, Conv, empirical_lower_bound, random_convnet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipcert.network.form import Network
from lipcert.partition import decompose
from lipcert.sdp import chordal
from lipcert.sdp.certify import certify_block
from lipcert.sdp.lipsdp import lmi_matrix
from lipcert.vocabulary import Method


@st.composite
def convnets(draw: st.DrawFn) -> Network:
    """Small random conv nets: 1-3 stages, 1-3 channels, strides or a residual branch, a linear head."""
    side = draw(st.integers(4, 7))
    act = st.sampled_from(["relu", "tanh"])
    if draw(st.booleans()):  # a residual branch from x: stride 1, one channel where it joins
        stages = [Conv(draw(st.integers(1, 3)), activation=draw(act)), Conv(1, activation=draw(act), skip_from=INPUT)]
        out_side = side
    else:
        stages, out_side = [], side
        for _ in range(draw(st.integers(1, 3))):
            stride = draw(st.sampled_from([1, 1, 2]))
            stages.append(Conv(draw(st.integers(1, 3)), stride=stride, activation=draw(act)))
            out_side = (out_side - 1) // stride + 1
    head = Conv(draw(st.integers(1, 2)), kernel=min(3, out_side), padding=0)
    return random_convnet((1, side, side), stages, head, seed=draw(st.integers(0, 999))).form


def _subtree_connected(tree: chordal.CliqueTree, n: int) -> bool:
    """Running intersection: the cliques holding any coordinate form a connected subtree."""
    for v in range(n):
        holding = {c for c, members in enumerate(tree.cliques) if v in set(members.tolist())}
        roots = [c for c in holding if tree.parent[c] not in holding]
        if len(roots) != 1:
            return False
    return True


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convnets(), st.sampled_from([0, 12, 40]))
def test_clique_tree_covers_the_lmi_and_has_running_intersection(net: Network, target: int) -> None:
    tree = chordal.chordal_tree(net, target)
    pattern = chordal.lmi_pattern(net).tocoo()
    for p, q in zip(pattern.row, pattern.col):
        owner = tree.cliques[tree.owner[p] if tree.position[p] <= tree.position[q] else tree.owner[q]]
        assert p in owner and q in owner
    assert _subtree_connected(tree, net.lmi_size)
    for c, p in enumerate(tree.parent):
        if p >= 0:
            assert np.array_equal(tree.separators[c], np.intersect1d(tree.cliques[c], tree.cliques[p]))
    if target:
        unmerged = chordal.chordal_tree(net).largest
        assert tree.largest <= max(target, unmerged)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convnets(), st.integers(0, 2**31 - 1))
def test_clique_matrices_sum_to_the_full_lmi(net: Network, seed: int) -> None:
    """Embedded and summed, the clique matrices are L(λ, ρ) for any λ, ρ and slacks: the slacks cancel."""
    rng = np.random.default_rng(seed)
    tree = chordal.chordal_tree(net, 20)
    parts = chordal.chordal_parts(net, Method.NEURON, tree)
    theta = rng.normal(size=parts.n_theta)
    n = net.lmi_size
    total = np.zeros((n, n))
    for members, part in zip(tree.cliques, parts.parts):
        minus = (part.G @ theta + part.g).reshape(part.side, part.side, order="F")
        total[np.ix_(members, members)] -= minus  # parts read -(clique matrix) >= 0
    lam, rho = theta[: net.n_w], theta[-1]
    expected = lmi_matrix(net, lam, rho).toarray()
    np.testing.assert_allclose(total, expected, atol=1e-9 * max(1.0, np.abs(expected).max()))


@cache
def _conv_net() -> Network:
    """Two convolutions on 8x8 with 4 channels and a 1x1 head: LMI side 64 + 512 = 576."""
    return random_convnet((1, 8, 8), [Conv(4), Conv(4)], Conv(2, kernel=1, padding=0), seed=3).form


def test_chordal_solve_matches_the_full_lipsdp_and_is_above_the_lower_bound() -> None:
    net = random_convnet((1, 6, 6), [Conv(3), Conv(3)], Conv(2, kernel=1, padding=0), seed=3).form  # LMI 252
    full = certify_block(net, Method.NEURON)
    split = certify_block(net, Method.NEURON, clique_target=80)
    assert split.source == full.source == "lipsdp-neuron"
    assert len(split.cliques) > 1 and max(split.cliques) < net.lmi_size
    assert split.lmi_size_solved == max(split.cliques)
    assert abs(split.bound - full.bound) <= 0.01 * full.bound
    assert split.bound >= empirical_lower_bound(net, samples=100)


def test_choice_refuses_what_it_cannot_verify_or_fit(monkeypatch) -> None:
    net = _conv_net()
    choice = decompose.chordal_choice(net, 600)
    assert choice is not None and choice.largest <= 600 and choice.n_cliques > 1
    assert decompose.chordal_choice(net, 10) is None  # no clique fits a budget of 10
    monkeypatch.setattr(decompose, "CHORDAL_LIMIT", net.lmi_size - 1)
    assert decompose.chordal_choice(net, 600) is None  # the full LMI is above the chordal path's limit


def test_coupled_split_couples_the_depth_groups_within_one_percent_of_the_full_lipsdp() -> None:
    """--split 2x2 cuts digits_chain in depth; coupled solves it whole over chordal cliques no larger
    than the plan's blocks, where the product of the groups is 50% above the full LipSDP."""
    from pathlib import Path

    from lipcert.estimate import EstimateOptions, estimate
    from lipcert.load import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "sample_models" / "digits_chain.onnx")
    full = certify_block(model.network, Method.NEURON)
    coupled = estimate(model, EstimateOptions(split=(2, 2), combine="coupled"))
    overlap = estimate(model, EstimateOptions(split=(2, 2), combine="overlap"))
    assert len(overlap.groups) == 2 and len(coupled.groups) == 1
    (block,) = coupled.blocks
    assert "chordal cliques" in block.source
    assert block.size <= max(b.size for b in overlap.blocks)  # no PSD constraint above the plan's blocks
    assert abs(coupled.bound - full.bound) <= 0.01 * full.bound < overlap.bound - full.bound
    assert any("chordal extension" in note for note in coupled.notes)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convnets())
def test_the_clique_lower_bound_is_reached_by_the_clique_tree(net: Network) -> None:
    # every clique of the pattern lies in some clique of its chordal extension, whatever the ordering
    assert chordal.chordal_tree(net).largest >= chordal.clique_lower_bound(net)


def test_a_dense_layer_wider_than_any_clique_is_refused_without_an_ordering(monkeypatch) -> None:
    from test_verify import chain

    rng = np.random.default_rng(0)
    net = chain(
        [rng.standard_normal((280, 300)), rng.standard_normal((270, 280)), rng.standard_normal((3, 270))], ["relu"] * 2
    )
    bound = chordal.clique_lower_bound(net)
    assert bound > decompose.MAX_CLIQUE  # each input neighbours all 280 first-layer neurons, and so on
    assert chordal.chordal_tree(net).largest >= bound

    def no_ordering(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the minimum-degree ordering ran")

    monkeypatch.setattr(decompose, "chordal_tree", no_ordering)
    assert decompose.chordal_choice(net, 600) is None
