"""The whole-network certificate in estimate (MATH.md §5): global, auto's choice, the blocks it skips,
the slope-box floor that decides it, and a default that never refuses a model it can load."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipcert import EstimateOptions, load_model
from lipcert.conclude import worst_vertex_norm
from lipcert.errors import ModelTooLargeError
from lipcert.estimate import estimate
from lipcert.network.form import Network
from tests.support import dense_lipsdp
from tests.test_sequential import _loaded, eclipse_fast, scaled_chain
from tests.test_verify import jacobian_lower_bound

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


@pytest.fixture(scope="module")
def digits_chain():  # noqa: ANN201
    return load_model(SAMPLES / "digits_chain.onnx")


def test_global_stitches_the_tiles_and_beats_their_product(digits_chain) -> None:  # noqa: ANN001
    overlap = estimate(digits_chain, EstimateOptions(split=(2, 2), combine="overlap", workers=1))
    whole = estimate(digits_chain, EstimateOptions(split=(2, 2), combine="global", workers=1))
    assert len(overlap.groups) == 2 and overlap.combined_by == "product"
    assert whole.combined_by == "whole"
    # the report still shows the partition (its groups' rules chosen as under auto); the bound is the whole network's
    assert [g.tiling for g in whole.groups] == [g.tiling for g in overlap.groups]
    assert whole.bound < np.prod([g.bound for g in whole.groups])
    assert any("stitched block multipliers" in n for n in whole.notes)
    assert jacobian_lower_bound(digits_chain.network) <= whole.bound < 0.8 * overlap.bound


def test_explicit_modes_stay_pure_and_auto_takes_the_smallest(digits_chain) -> None:  # noqa: ANN001
    paper = estimate(digits_chain, EstimateOptions(split=(2, 2), combine="paper", workers=1))
    assert paper.combined_by == "product" and not [n for n in paper.notes if n.startswith("whole network")]
    auto = estimate(digits_chain, EstimateOptions(split=(2, 2), workers=1))
    proven = [n for n in auto.notes if "also proven" in n]
    assert len(proven) == 1 and auto.combined_by in ("product", "whole", "naive")
    others = [float(part.rsplit(" ", 1)[1]) for part in proven[0].split("also proven: ")[1].split(", ")]
    assert all(auto.bound <= value for value in others)  # the smallest of everything proven


def test_auto_skips_blocks_that_cannot_beat_the_whole_certificate() -> None:
    net = scaled_chain(7, [8, 12, 12, 12, 12, 12, 12, 4], [1, 0, 1, 0, 1, 0, 0])[0]
    cert = estimate(_loaded(net), EstimateOptions(max_block_size=30, workers=1))
    assert len(cert.groups) >= 2 and cert.combined_by == "whole"
    skipped = [n for n in cert.notes if n.startswith("blocks not solved")]
    if skipped:  # then every group row is its naive bound, and their product is above the bound
        floor = float(skipped[0].rsplit("(", 1)[1].rstrip(")"))
        assert cert.bound <= floor <= np.prod([g.bound for g in cert.groups])
    assert cert.bound >= jacobian_lower_bound(net)


def test_auto_descends_instead_of_solving_one_block_over_the_budget() -> None:
    """A single block above --max-block-size (solvable only by chordal cliques) is certified by the
    whole-network descent; the same block's SCS solve (the full LipSDP-Neuron, the block within the
    budget) is the reference it must come within 2% of, and nothing may go below the Jacobian bound."""
    net, weights = scaled_chain(3, [64, 60, 60, 60, 60, 10], [0, 0, 0, 0, 0])
    descended = estimate(_loaded(net), EstimateOptions(max_block_size=250, workers=1))
    solved = estimate(_loaded(net), EstimateOptions(max_block_size=320, workers=1))
    assert len(descended.blocks) == len(solved.blocks) == 1 and net.lmi_size == 304
    assert descended.combined_by == "whole" and descended.blocks[0].source.startswith("naive; not solved")
    assert solved.combined_by == "product" and "chordal" in solved.blocks[0].source
    assert descended.bound <= 1.02 * solved.bound
    assert descended.bound <= 0.9 * eclipse_fast(weights)
    assert min(descended.bound, solved.bound) >= jacobian_lower_bound(net)


def _jacobian(net: Network, slopes: np.ndarray) -> np.ndarray:
    """C + D S (I - B S)⁻¹... written out densely: w = S(Ax + Bw), so w = (I - S B)⁻¹ S A x."""
    S = np.diag(slopes)
    A, B, C, D = (m.toarray() if sp.issparse(m) else np.asarray(m) for m in (net.A, net.B, net.C, net.D))
    return C + D @ np.linalg.solve(np.eye(net.n_w) - S @ B, S @ A)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2))
def test_the_slope_box_floor_is_a_vertex_norm_below_lipsdp(seed: int, hidden: list[int]) -> None:
    net = scaled_chain(seed, [3, *hidden, 2], [0] * (len(hidden) + 1))[0]
    vertices = [np.where(np.array(bits), net.beta, net.alpha) for bits in itertools.product([0, 1], repeat=net.n_w)]
    norms = [np.linalg.norm(_jacobian(net, s), 2) for s in vertices]
    floor = worst_vertex_norm(net)
    # the sign ascent starts at all-β and only moves to better vertices; Lanczos may be a hair low
    assert np.linalg.norm(_jacobian(net, net.beta), 2) * (1 - 1e-6) <= floor <= max(norms) * (1 + 1e-9)
    assert floor <= dense_lipsdp(net) * (1 + 1e-6)  # every LipSDP bound covers every slope vertex


def test_an_automatic_plan_never_refuses_an_explicit_one_names_the_way_out() -> None:
    loaded = load_model(SAMPLES / "digits_residual.onnx")
    cert = estimate(loaded, EstimateOptions(max_block_size=40, workers=1, time_limit=60))
    assert cert.bound >= jacobian_lower_bound(loaded.network)
    with pytest.raises(ModelTooLargeError) as refused:
        estimate(loaded, EstimateOptions(split=(1, 1), max_block_size=40, chordal=False, workers=1))
    message = str(refused.value)
    assert "--max-block-size" in message and "use --split 2x2 or finer" in message
    assert "leave out --split" in message  # the user gave --split: leaving it out is a real way out


def test_the_time_budget_bounds_the_whole_estimate() -> None:
    loaded = load_model(SAMPLES / "digits_residual.onnx")
    began = time.perf_counter()
    cert = estimate(loaded, EstimateOptions(workers=1, time_limit=5))
    # the budget is a safety stop checked between steps; one step (an eigen-solve, a proof) may overrun it
    assert time.perf_counter() - began < 40
    assert np.isfinite(cert.bound) and cert.bound >= jacobian_lower_bound(loaded.network)
    with pytest.raises(Exception, match="--time-limit"):
        EstimateOptions(time_limit=float("nan"))


def _certified_by_default(model, side: int):  # noqa: ANN001, ANN202 - torch module; (Certificate, naive, lower)
    from lipcert import certify
    from lipcert.load import load_module
    from lipcert.naive import naive_bound
    from tests.convnets import empirical_lower_bound

    net = load_module(model, (3, side, side)).network
    cert = certify(model, input_shape=(3, side, side), workers=1)
    return cert, naive_bound(net), empirical_lower_bound(net, samples=50)


def test_a_residual_cnn_is_certified_by_default_at_half_its_naive_bound() -> None:
    """A ResNet of 4 residual blocks (1x1 projection shortcuts, BN), seeded, at 16x16 so that the
    default run stays quick (the 32x32 CIFAR shapes, and the 8-conv plain net, are the slow test below)."""
    from tests.support import cifar_resnet

    cert, naive, lower = _certified_by_default(cifar_resnet(side=16), 16)
    assert lower <= cert.bound <= 0.5 * naive
    assert cert.combined_by == "whole"


@pytest.mark.slow
@pytest.mark.parametrize("build", ["resnet", "plain"])
def test_cifar_resnet_and_plain_net_are_certified_by_default(build: str) -> None:
    from tests.support import cifar_plain, cifar_resnet

    model = cifar_resnet() if build == "resnet" else cifar_plain()
    cert, naive, lower = _certified_by_default(model, 32)
    assert lower <= cert.bound <= 0.5 * naive
