"""Coupled mode (d): one SDP over a group's tiles, built from the one LMI assembly, verified by the one verifier."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from convnets import Conv, empirical_lower_bound, linear_map, random_convnet

from lipcert.combine import combine_overlap, combine_paper, combine_pou, pou_weights
from lipcert.defaults import SolverSettings
from lipcert.network.form import Layer, Network
from lipcert.partition.tiles import Tile, extract_tile, spatial_tiles
from lipcert.sdp import coupled
from lipcert.sdp.certify import certify_block
from lipcert.sdp.model import build_problem
from lipcert.sdp.solve import solve_lipsdp
from lipcert.sdp.verify import verify_multipliers
from lipcert.vocabulary import Method
from tests.support import dense_lipsdp

NEURON = Method.NEURON
LOOSE = SolverSettings(eps=1e-3)
SLOPPY = SolverSettings(eps=1e-2, eps_min=1e-2)  # one solve at 1e-2: bounds are verified anyway


@cache
def _example() -> Network:
    """MATH.md §4's shape: 8x8 input, 4 channels, ReLU, two convolutions."""
    return random_convnet((1, 8, 8), [Conv(4)], Conv(4), seed=0).form


def _tiles(net: Network, rows: int, cols: int) -> list[Tile]:
    return [extract_tile(net, t) for t in spatial_tiles(net.output_shape, rows, cols)]


def _full_lmi(net: Network, lam: np.ndarray, rho: float) -> np.ndarray:
    """L(λ, ρ) written densely from MATH.md §2, independently of lipcert's assembly."""
    M = np.hstack([net.A.toarray(), net.B.toarray()])
    Y = np.hstack([net.C.toarray(), net.D.toarray()])
    n_x = net.n_x
    E = np.eye(net.lmi_size)[n_x:]
    L = Y.T @ Y
    L[np.arange(n_x), np.arange(n_x)] -= rho
    a, b = net.alpha, net.beta
    for j in range(net.n_w):
        m, e = M[j][:, None], E[j][:, None]
        L += lam[j] * (-a[j] * b[j] * m @ m.T + 0.5 * (a[j] + b[j]) * (m @ e.T + e @ m.T) - e @ e.T)
    return L


@cache
def _tiny() -> Network:
    """4x4 input, 2 channels: LMI side 48, small enough for an interior-point reference."""
    return random_convnet((1, 4, 4), [Conv(2)], Conv(2), seed=0).form


def test_coupled_matches_full_lipsdp_and_every_mode_is_above_the_lower_bound() -> None:
    net = _tiny()
    lower = empirical_lower_bound(net, samples=100)
    full = dense_lipsdp(net)  # an independent interior-point reference
    tiles = _tiles(net, 2, 2)
    both = certify_block(net, NEURON, LOOSE, tiles=tiles)
    assert both.source == "lipsdp-neuron" and both.cliques == tuple(t.net.lmi_size for t in tiles)
    assert full <= both.bound <= 1.01 * full
    per_tile = [certify_block(t.net, NEURON, SLOPPY).bound for t in tiles]
    K = [t.input_index for t in tiles]
    weights = pou_weights(K, net.n_x)
    rhos = [certify_block(t.net, NEURON, SLOPPY, input_weights=w).bound ** 2 for t, w in zip(tiles, weights)]
    modes = {
        "paper": combine_paper(per_tile),
        "overlap": combine_overlap(per_tile, K, net.n_x),
        "pou": combine_pou(rhos),
        "coupled": both.bound,
        "full": full,
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
    full = certify_block(net, NEURON, SLOPPY)
    assert full.bound >= true
    both = certify_block(net, NEURON, SLOPPY, tiles=_tiles(net, 2, 2))
    assert both.bound >= true
    assert both.bound <= 1.05 * true  # and LipSDP is nearly exact here


def test_tile_certificates_sum_to_a_full_lmi_certificate() -> None:
    """The soundness argument, numerically: λ_j = Σ_i λ_ij and the SDP's ρ make the full LMI ⪯ 0
    (up to the solver's tolerance), and the verified bound of those multipliers is at most sqrt(ρ)."""
    net, _ = _nonnegative_net()
    tiles = _tiles(net, 2, 2)
    problem = build_problem(net, NEURON, tiles=tiles)
    outcome = solve_lipsdp(problem, SolverSettings(eps=1e-6, max_iters=100_000))
    assert outcome.status == "optimal"
    lam, rho = outcome.multipliers, outcome.raw_objective
    top = np.linalg.eigvalsh(_full_lmi(net, lam, rho)).max()
    assert top <= 1e-5 * rho
    check = verify_multipliers(net, lam)
    assert check.certified and check.bound**2 <= rho * (1 + 1e-5)


def test_stitched_multipliers_are_each_neurons_tile_sum() -> None:
    net, _ = _nonnegative_net()
    tiles = _tiles(net, 2, 1)
    parts = coupled.coupled_parts(net, NEURON, tiles)
    theta = np.arange(parts.n_theta, dtype=float) + 1.0
    expected = np.zeros(net.n_w)
    at = 0
    for tile in tiles:
        expected[tile.neuron_index] += theta[at : at + tile.neuron_index.size]
        at += tile.neuron_index.size
    np.testing.assert_array_equal(parts.lam_map @ theta, expected)
    # the cover rows: Σ_{i ∋ k} d_i(k) − ρ for every pixel read
    assert parts.linear.shape[0] == np.unique(np.concatenate([t.input_index for t in tiles])).size
    assert np.all(parts.linear[:, -1].toarray() == -1.0)


def _one_neuron(a: float, d: float) -> Network:
    layer = Layer("h", "relu", 0, 1, (1,), 0.0, 1.0)
    A, D = sp.csr_matrix([[a]]), sp.csr_matrix([[d]])
    return Network(A, sp.csr_matrix((1, 1)), sp.csr_matrix((1, 1)), D, np.zeros(1), np.zeros(1), (layer,), (1,), (1,))


@pytest.mark.parametrize(("lam_factor", "expected"), [(2.0, 1.0), (3.0, 9.0 / 8.0)])
def test_verification_finds_the_smallest_rho_for_given_multipliers(lam_factor: float, expected: float) -> None:
    """y = d relu(a x): L = [[-rho, lam a/2], [lam a/2, d^2 - lam]], so rho = lam^2 a^2 / (4 (lam - d^2))."""
    a, d = 1.5, 0.8
    lam = np.array([lam_factor * d * d])
    check = verify_multipliers(_one_neuron(a, d), lam)
    exact = expected * (a * d) ** 2
    assert check.how == "verified"
    assert exact <= check.rho <= exact * (1 + 1e-9)


def test_verification_refuses_an_indefinite_neuron_block() -> None:
    check = verify_multipliers(_one_neuron(1.0, 1.0), np.array([0.5]))  # lam < d^2: R is not negative definite
    assert not check.certified and np.isinf(check.bound)


def test_redundant_slack_pairs_are_pruned() -> None:
    """2x2 grid: the diagonal neighbours share only the centre, which the other two tiles hold."""
    net = _example()
    index = [coupled.coordinates(net, t) for t in _tiles(net, 2, 2)]
    pairs = coupled.overlapping_pairs(index)
    assert sorted((p.i, p.j) for p in pairs) == [(0, 1), (0, 2), (1, 3), (2, 3)]


def test_slacks_make_the_coupled_sdp_tighter() -> None:
    """MATH.md §4: coupled without the overlap slacks is looser than with them (there 1.328 against 1.163)."""
    net = _tiny()
    tiles = _tiles(net, 2, 2)
    with_slacks = build_problem(net, NEURON, tiles=tiles)
    without = build_problem(net, NEURON, tiles=tiles, slacks=False)
    tight = solve_lipsdp(with_slacks, SolverSettings(eps=1e-4))
    loose = solve_lipsdp(without, SolverSettings(eps=1e-4))
    assert tight.raw_objective < 0.9 * loose.raw_objective


def test_tiles_must_partition_the_outputs() -> None:
    net = _example()
    tiles = _tiles(net, 2, 2)
    with pytest.raises(ValueError, match="partition"):
        coupled.coupled_parts(net, NEURON, tiles[:3])
    assert certify_block(net, NEURON, LOOSE, tiles=tiles[:3]).is_fallback  # never an exception from a block


def test_weights_are_checked() -> None:
    net = _example()
    with pytest.raises(ValueError, match="64 positive"):
        certify_block(net, NEURON, LOOSE, input_weights=np.zeros(net.n_x))


def test_linear_tile_solve_bounds_its_norm() -> None:
    """Identity activations (slopes [1, 1]): the LipSDP value is ||W||_2 (approached from above)."""
    convnet = random_convnet((1, 4, 4), [Conv(2, activation="leaky_relu", param=1.0)], Conv(1), seed=4)
    net = convnet.form
    cert = certify_block(net, NEURON, LOOSE)
    true = float(np.linalg.norm(linear_map(net), 2))
    assert true <= cert.bound <= 1.02 * true


def test_a_coupled_solve_honours_the_time_limit() -> None:
    """A tiny --time-limit stops the coupled SDP; the block then says so and falls back soundly."""
    net = _example()
    cert = certify_block(net, NEURON, SolverSettings(time_limit_secs=1e-4), tiles=_tiles(net, 2, 2))
    assert cert.solver_status == "time_limit" and "time_limit" in cert.source
    assert cert.bound >= empirical_lower_bound(net, samples=100)


def test_neurons_outside_every_cone_are_dropped_before_verification() -> None:
    """A stride-2 convolution that never reads the last row of the first layer's map leaves neurons no
    tile owns; they change nothing of y, and the coupled bound is still verified (not a fallback)."""
    convnet = random_convnet((1, 7, 7), [Conv(1, kernel=3, padding=0)], Conv(1, kernel=2, stride=3, padding=0), seed=6)
    net = convnet.form
    tiles = _tiles(net, 1, 2)
    live = np.unique(np.concatenate([t.neuron_index for t in tiles]))
    assert live.size < net.n_w  # the premise: some neurons are in no cone
    cert = certify_block(net, NEURON, LOOSE, tiles=tiles)
    assert not cert.is_fallback
    assert cert.bound >= dense_lipsdp(net) * (1 - 1e-6)
