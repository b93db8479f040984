"""Coupled mode (d) and the verified single-block solves it shares its machinery with."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from convnets import Conv, empirical_lower_bound, linear_map, random_convnet

from lipcert.network.form import Layer, Network
from lipcert.partition import coupled, tile_lmi
from lipcert.partition.combine import combine_overlap, combine_paper, combine_pou, pou_weights
from lipcert.partition.coupled import SdpSettings, coupled_lipsdp, weighted_lipsdp
from lipcert.partition.tiles import Tile, extract_tile, spatial_tiles

LOOSE = SdpSettings(eps=1e-3)


@cache
def _example() -> Network:
    """MATH.md §4's shape: 8x8 input, 4 channels, ReLU, two convolutions."""
    return random_convnet((1, 8, 8), [Conv(4)], Conv(4), seed=0).form


def _tiles(net: Network, rows: int, cols: int) -> list[Tile]:
    return [extract_tile(net, t) for t in spatial_tiles(net.output_shape, rows, cols)]


def test_coupled_matches_full_lipsdp_and_every_mode_is_above_the_lower_bound() -> None:
    net = _example()
    lower = empirical_lower_bound(net, samples=100)
    full = weighted_lipsdp(net, settings=LOOSE)
    tiles = _tiles(net, 2, 2)
    both = coupled_lipsdp(net, tiles, LOOSE)
    assert abs(both.bound - full.bound) <= 0.01 * full.bound
    sloppy = SdpSettings(eps=1e-2)  # the tile bounds are verified anyway; only the order matters here
    per_tile = [weighted_lipsdp(t.net, settings=sloppy).bound for t in tiles]
    K = [t.input_index for t in tiles]
    weights = pou_weights(K, net.n_x)
    rhos = [weighted_lipsdp(t.net, w, sloppy).rho for t, w in zip(tiles, weights)]
    modes = {
        "paper": combine_paper(per_tile),
        "overlap": combine_overlap(per_tile, K, net.n_x),
        "pou": combine_pou(rhos),
        "coupled": both.bound,
        "full": full.bound,
    }
    assert all(value >= lower for value in modes.values()), (lower, modes)
    assert modes["overlap"] <= modes["paper"]


def _nonnegative_net() -> tuple[Network, float]:
    """Nonnegative weights: every Jacobian D S A is entrywise <= D A, so L = ||D A||_2 exactly."""
    convnet = random_convnet((1, 6, 6), [Conv(3)], Conv(2), seed=3)
    convnet.weights = [w.abs() for w in convnet.weights]
    net = convnet.form
    active = net.jacobian(np.ones(net.n_x) * 10.0)  # every ReLU on: the Jacobian is D A
    return net, float(np.linalg.norm(active, 2))


def test_verified_bounds_are_sound_even_from_a_loose_solve() -> None:
    net, true = _nonnegative_net()
    sloppy = SdpSettings(eps=1e-2, retries=3)
    full = weighted_lipsdp(net, settings=sloppy)
    assert full.bound >= true
    both = coupled_lipsdp(net, _tiles(net, 2, 2), sloppy)
    assert both.bound >= true
    assert both.bound <= 1.05 * true  # and LipSDP is nearly exact here
    assert all(s >= 0 for s in both.raised_by)


def test_coupled_rho_is_the_worst_pixel_sum_of_the_verified_weights() -> None:
    net, _ = _nonnegative_net()
    tiles = _tiles(net, 2, 1)
    cert = coupled_lipsdp(net, tiles, SdpSettings(eps=1e-2, retries=3))
    sums = np.zeros(net.n_x)
    for tile, d in zip(tiles, cert.input_weights):
        sums[tile.input_index] += d
    assert cert.rho >= sums.max() and cert.rho <= sums.max() * (1 + 1e-12)
    assert cert.bound**2 >= cert.rho


def test_tile_certificates_sum_to_a_full_lmi_certificate() -> None:
    """The soundness argument, numerically: lam_j = sum_i lam_ij and rho make the full LMI <= 0."""
    net, _ = _nonnegative_net()
    tiles = _tiles(net, 2, 2)
    cert = coupled_lipsdp(net, tiles, SdpSettings(eps=1e-2, retries=3))
    lam = np.zeros(net.n_w)
    for tile, lam_i in zip(tiles, cert.multipliers):
        lam[tile.neuron_index] += lam_i
    full = tile_lmi.tile_lmi(net)
    M = tile_lmi.assemble(full, lam, ())
    M[np.arange(net.n_x), np.arange(net.n_x)] -= cert.rho
    assert np.linalg.eigvalsh(M).max() <= 1e-9 * np.abs(M).max()


def _one_neuron(a: float, d: float) -> Network:
    layer = Layer("h", "relu", 0, 1, (1,), 0.0, 1.0)
    A, D = sp.csr_matrix([[a]]), sp.csr_matrix([[d]])
    return Network(A, sp.csr_matrix((1, 1)), sp.csr_matrix((1, 1)), D, np.zeros(1), np.zeros(1), (layer,), (1,), (1,))


@pytest.mark.parametrize(("lam_factor", "expected"), [(2.0, 1.0), (3.0, 9.0 / 8.0)])
def test_verification_finds_the_smallest_rho_for_given_multipliers(lam_factor: float, expected: float) -> None:
    """y = d relu(a x): M = [[-rho, lam a/2], [lam a/2, d^2 - lam]], so rho = lam^2 a^2 / (4 (lam - d^2))."""
    a, d = 1.5, 0.8
    lmi = tile_lmi.tile_lmi(_one_neuron(a, d))
    lam = np.array([lam_factor * d * d])
    rho = tile_lmi.verify_block(lmi, lam, (), np.zeros(1), np.ones(1))
    exact = expected * (a * d) ** 2
    assert exact <= rho <= exact * (1 + 1e-9)


def test_verification_refuses_an_indefinite_neuron_block() -> None:
    lmi = tile_lmi.tile_lmi(_one_neuron(1.0, 1.0))
    with pytest.raises(tile_lmi.NotDefinite):
        tile_lmi.verify_block(lmi, np.array([0.5]), (), np.zeros(1), np.ones(1))  # lam < d^2


def test_redundant_slack_pairs_are_pruned() -> None:
    """2x2 grid: the diagonal neighbours share only the centre, which the other two tiles hold."""
    net = _example()
    stage = coupled.Stage(tuple(_tiles(net, 2, 2)), np.arange(net.n_x), net.n_x + np.arange(net.n_w))
    pairs = coupled._overlapping_pairs([c.index for c in coupled._cliques([stage])])
    assert sorted((p.i, p.j) for p in pairs) == [(0, 1), (0, 2), (1, 3), (2, 3)]


def test_tiles_must_partition_the_outputs() -> None:
    net = _example()
    tiles = _tiles(net, 2, 2)
    with pytest.raises(ValueError, match="partition"):
        coupled_lipsdp(net, tiles[:3], LOOSE)


def test_weights_are_checked() -> None:
    net = _example()
    with pytest.raises(ValueError, match="64 positive"):
        weighted_lipsdp(net, np.zeros(net.n_x), LOOSE)


def test_linear_tile_solve_bounds_its_norm() -> None:
    """Identity activations (slopes [1, 1]): the LipSDP value is ||W||_2 (approached from above)."""
    convnet = random_convnet((1, 4, 4), [Conv(2, activation="leaky_relu", param=1.0)], Conv(1), seed=4)
    net = convnet.form
    cert = weighted_lipsdp(net, settings=LOOSE)
    true = float(np.linalg.norm(linear_map(net), 2))
    assert true <= cert.bound <= 1.02 * true


def _two_stage_chain(net: Network) -> list[coupled.Stage]:
    """Stage 0: the first layer cut 2x2; stage 1: the second layer and the output, one tile."""
    from lipcert.partition.depth import depth_group

    first, second = net.layers
    g0, g1 = depth_group(net, 0, 0), depth_group(net, 1, 1)
    stage0 = coupled.Stage(tuple(_tiles(g0, 2, 2)), np.arange(net.n_x), net.n_x + np.arange(first.start, first.stop))
    tile1 = extract_tile(g1, np.arange(g1.n_y))
    x1, w1 = net.n_x + np.arange(first.start, first.stop), net.n_x + np.arange(second.start, second.stop)
    return [stage0, coupled.Stage((tile1,), x1, w1)]


def test_depth_coupled_chain_certifies_the_full_lmi_and_beats_the_product() -> None:
    """Two depth groups in one SDP: the summed multipliers make the full LMI <= 0 with rho, and the
    bound lies between the empirical lower bound and the product of the groups' own bounds."""
    from lipcert.partition.depth import depth_group

    convnet = random_convnet((1, 6, 6), [Conv(2), Conv(2)], Conv(1), seed=5)
    net = convnet.form
    stages = _two_stage_chain(net)
    cert = coupled.chain_lipsdp(stages, SdpSettings(eps=1e-4, retries=3))
    lam = np.zeros(net.n_w)
    for tile, lam_i, offset in zip([*stages[0].tiles, *stages[1].tiles], cert.multipliers, [0] * 4 + [1]):
        start = net.layers[offset].start
        lam[start + tile.neuron_index] += lam_i
    M = tile_lmi.assemble(tile_lmi.tile_lmi(net), lam, ())
    M[np.arange(net.n_x), np.arange(net.n_x)] -= cert.rho
    assert np.linalg.eigvalsh(M).max() <= 1e-9 * np.abs(M).max()
    product = math.prod(weighted_lipsdp(depth_group(net, k, k), settings=LOOSE).bound for k in (0, 1))
    lower = empirical_lower_bound(net, samples=100)
    assert lower <= cert.bound <= product
    assert cert.solver_rho <= cert.rho * (1 + 1e-2)  # verification raised the solver's value, if at all, a little


def test_a_chain_whose_stages_do_not_connect_is_refused() -> None:
    convnet = random_convnet((1, 6, 6), [Conv(2), Conv(2)], Conv(1), seed=5)
    stage0, stage1 = _two_stage_chain(convnet.form)
    wrong = coupled.Stage(stage1.tiles, stage1.x_global + 10_000, stage1.w_global + 10_000)  # reads nothing of stage 0
    with pytest.raises(ValueError, match="stages do not chain"):
        coupled.chain_lipsdp([stage0, wrong], SdpSettings(eps=1e-2, retries=3))
