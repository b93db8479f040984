"""The float64 verification of LipSDP multipliers (lipcert/sdp/verify.py), on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lipcert.network.activations import ACTIVATIONS
from lipcert.network.form import Layer, Network
from lipcert.sdp.certify import certify_block
from lipcert.sdp.descent import polish_multipliers
from lipcert.sdp.lipsdp import compress_inputs, lmi_matrix, scale_inputs
from lipcert.sdp.schur import schur_rho
from lipcert.sdp.solve import SolverSettings
from lipcert.sdp.verify import prove_rho, verify_multipliers
from lipcert.vocabulary import Method

TIGHT = SolverSettings(eps=1e-6, eps_min=1e-7, target_gap=1e-7)


def chain(weights: list[np.ndarray], activations: list[str], param: float = 0.1) -> Network:
    """x → W0 → φ0 → W1 → … → W_L, as the (A, B, C=0, D) form with zero biases."""
    hidden = [w.shape[0] for w in weights[:-1]]
    starts = np.concatenate([[0], np.cumsum(hidden)]).astype(int)
    n_w, n_x, n_y = int(starts[-1]), weights[0].shape[1], weights[-1].shape[0]
    A, B, D = sp.lil_matrix((n_w, n_x)), sp.lil_matrix((n_w, n_w)), sp.lil_matrix((n_y, n_w))
    A[: hidden[0]] = weights[0]
    for k in range(1, len(hidden)):
        B[starts[k] : starts[k + 1], starts[k - 1] : starts[k]] = weights[k]
    D[:, starts[-2] :] = weights[-1]
    layers = []
    for k, act in enumerate(activations):
        a, b = ACTIVATIONS[act].slopes(param)
        layers.append(Layer(f"l{k}", act, int(starts[k]), int(starts[k + 1]), (hidden[k],), a, b, param))
    zeros_y = sp.csr_matrix((n_y, n_x))
    return Network(
        A.tocsr(), B.tocsr(), zeros_y, D.tocsr(), np.zeros(n_w), np.zeros(n_y), tuple(layers), (n_x,), (n_y,)
    )


def one_neuron(a: float, d: float) -> Network:
    """y = d·relu(a·x). LipSDP: [[−ρ, λa/2], [λa/2, d² − λ]] ⪯ 0."""
    return chain([np.array([[a]]), np.array([[d]])], ["relu"])


def one_neuron_rho(a: float, d: float, lam: float) -> float:
    """Closed form for one_neuron: λ > d² and ρ*(λ) = λ²a² / (4(λ − d²)); optimum λ = 2d², ρ = a²d²."""
    return lam * lam * a * a / (4.0 * (lam - d * d))


def random_chain(seed: int, sizes: list[int], activations: list[str]) -> Network:
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((m, n)) / np.sqrt(n) for n, m in zip(sizes[:-1], sizes[1:])]
    return chain(weights, activations)


def jacobian_lower_bound(net: Network, samples: int = 300, seed: int = 0) -> float:
    points = np.random.default_rng(seed).standard_normal((samples, net.n_x)) * 2.0
    return max(float(np.linalg.norm(net.jacobian(x), 2)) for x in points)


# --- the LMI itself ----------------------------------------------------------------


def test_lmi_quadratic_form_matches_definition() -> None:
    net = random_chain(3, [3, 4, 5, 2], ["leaky_relu", "gelu"])
    rng = np.random.default_rng(0)
    lam, rho = rng.random(net.n_w), 1.7
    L = lmi_matrix(net, lam, rho).toarray()
    assert np.allclose(L, L.T, atol=0)
    M = np.hstack([net.A.toarray(), net.B.toarray()])
    Y = np.hstack([net.C.toarray(), net.D.toarray()])
    for _ in range(5):
        z = rng.standard_normal(net.lmi_size)
        dx, dw, dv = z[: net.n_x], z[net.n_x :], M @ z
        slope_terms = (dw - net.alpha * dv) * (net.beta * dv - dw)
        expected = np.sum((Y @ z) ** 2) - rho * dx @ dx + lam @ slope_terms
        assert z @ L @ z == pytest.approx(expected, rel=1e-12, abs=1e-12)


# --- closed forms --------------------------------------------------------------------


@pytest.mark.parametrize("a,d", [(2.0, 3.0), (-0.5, 1.5), (1e-3, 7.0)])
def test_one_neuron_closed_form(a: float, d: float) -> None:
    for lam in (1.5 * d * d, 2.0 * d * d, 5.0 * d * d):
        check = verify_multipliers(one_neuron(a, d), np.array([lam]))
        exact = one_neuron_rho(a, d, lam)
        assert check.how == "verified"
        assert check.rho >= exact
        # The margin is relative to ρ and absolute on the scale of the LMI's entries (~λ).
        assert check.rho == pytest.approx(exact, rel=1e-8, abs=1e-12 * lam)
        assert check.bound >= np.sqrt(exact)
    optimal = verify_multipliers(one_neuron(a, d), np.array([2.0 * d * d]))
    assert optimal.bound == pytest.approx(abs(a * d), rel=1e-6)
    assert optimal.bound >= abs(a * d)


def test_one_neuron_solved_matches_closed_form() -> None:
    cert = certify_block(one_neuron(2.0, 3.0), Method.NEURON, TIGHT)
    assert cert.source == "lipsdp-neuron"
    assert 6.0 <= cert.bound <= 6.0 * (1 + 1e-5)


def test_two_scalar_layers_is_product() -> None:
    """x → relu(a x) → relu(b ·) → c ·: the Lipschitz constant and LipSDP are both |abc|."""
    a, b, c = 1.5, -2.0, 0.7
    net = chain([np.array([[a]]), np.array([[b]]), np.array([[c]])], ["relu", "relu"])
    for method in (Method.NEURON, Method.LAYER):
        cert = certify_block(net, method, TIGHT)
        assert cert.source == str(method)
        assert abs(a * b * c) <= cert.bound <= abs(a * b * c) * (1 + 1e-5)


def test_linear_network_is_spectral_norm() -> None:
    """Identity activations: the network is W2 W1, and LipSDP tends to ||W2 W1||² as λ → ∞.

    For y = W2 w, w = v = W1 x: ρ*(λ) = λ_max(W1ᵀ λG(λI − G)⁻¹ W1), G = W2ᵀW2 (maximise
    over w in closed form).
    """
    rng = np.random.default_rng(1)
    W1, W2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    net = chain([W1, W2], ["leaky_relu"], param=1.0)  # LeakyReLU(1) is the identity: α = β = 1
    G = W2.T @ W2
    for lam in (1e2, 1e4):
        exact = np.linalg.eigvalsh(W1.T @ (lam * G @ np.linalg.inv(lam * np.eye(4) - G)) @ W1)[-1]
        check = verify_multipliers(net, np.full(4, lam))
        assert check.rho >= exact
        assert check.rho == pytest.approx(exact, rel=1e-8)
    norm = np.linalg.norm(W2 @ W1, 2)
    # The infimum is approached as λ → ∞ and not attained, so a solver gets close only.
    cert = certify_block(net, Method.LAYER, SolverSettings(eps=1e-4, eps_min=1e-4))
    assert norm <= cert.bound <= norm * (1 + 1e-3)


def test_input_weights_closed_form_and_scaling() -> None:
    """−ρ π x² instead of −ρ x²: ρ*(λ) = λ²a² / (4π(λ − d²)); scale_inputs gives the same ρ*."""
    a, d, lam, pi = 2.0, 3.0, 18.0, np.array([0.25])
    net = one_neuron(a, d)
    weighted = verify_multipliers(net, np.array([lam]), input_weights=pi)
    assert weighted.rho == pytest.approx(one_neuron_rho(a, d, lam) / pi[0], rel=1e-8)
    assert weighted.rho >= one_neuron_rho(a, d, lam) / pi[0]
    big = random_chain(5, [6, 5, 4, 3], ["relu", "tanh"])
    weights = np.random.default_rng(2).uniform(0.2, 1.0, big.n_x)
    lam_big = 1.5 * certify_block(big, Method.NEURON).multipliers
    direct = schur_rho(big, lam_big, weights)
    scaled = schur_rho(scale_inputs(big, weights), lam_big)
    assert direct == pytest.approx(scaled, rel=1e-10)


# --- soundness under perturbation and repair ------------------------------------------


def test_proof_dominates_estimate_and_matrix_is_nsd() -> None:
    net = random_chain(7, [5, 8, 6, 3], ["relu", "sigmoid"])
    cert = certify_block(net, Method.NEURON)
    lam = cert.multipliers
    rho_star = schur_rho(net, lam)
    rho_hat = prove_rho(net, lam, rho_star)
    assert rho_hat is not None and rho_hat >= rho_star
    assert rho_hat <= rho_star * (1 + 1e-6)
    assert np.linalg.eigvalsh(lmi_matrix(net, lam, rho_hat).toarray())[-1] <= 1e-12 * rho_hat


def test_perturbed_multipliers_stay_sound() -> None:
    net = random_chain(11, [4, 10, 10, 3], ["relu", "leaky_relu"])
    lower = jacobian_lower_bound(net)
    best = certify_block(net, Method.NEURON, TIGHT)
    rng = np.random.default_rng(0)
    certified = 0
    for scale in (0.01, 0.1, 0.3):
        for _ in range(5):
            lam = best.multipliers * np.exp(scale * rng.standard_normal(net.n_w))
            check = verify_multipliers(net, lam)
            if check.certified:
                certified += 1
                assert check.bound >= lower
                assert check.bound >= best.bound * (1 - 1e-5)  # nothing beats the optimum
    assert certified >= 10


def test_repair_when_activation_block_is_singular() -> None:
    """λ = d² makes R = 0: not negative definite; scaling λ up repairs it (ρ is then huge but sound)."""
    a, d = 2.0, 3.0
    check = verify_multipliers(one_neuron(a, d), np.array([d * d]))
    assert check.certified
    assert check.how.startswith("repaired")
    assert check.bound >= abs(a * d)
    repaired = float(check.multipliers[0])
    assert check.rho >= one_neuron_rho(a, d, repaired)


def test_not_certified_when_repairs_fail() -> None:
    check = verify_multipliers(one_neuron(2.0, 3.0), np.array([0.5 * 9.0]))  # λ < d²: R > 0
    assert not check.certified
    assert check.how.startswith("not certified")
    assert check.bound == np.inf


@pytest.mark.parametrize("lam", [np.array([np.nan]), np.array([np.inf]), np.array([1.0, 2.0])])
def test_bad_multipliers_are_rejected(lam: np.ndarray) -> None:
    check = verify_multipliers(one_neuron(2.0, 3.0), lam)
    assert not check.certified and check.bound == np.inf


def test_negative_multipliers_are_clipped() -> None:
    net = random_chain(19, [3, 4, 2], ["relu"])
    lam = certify_block(net, Method.NEURON).multipliers.copy()
    lam_neg = lam.copy()
    lam[0], lam_neg[0] = 0.0, -5.0
    clipped, negative = verify_multipliers(net, lam), verify_multipliers(net, lam_neg)
    assert negative.bound == clipped.bound
    assert negative.multipliers is None or bool(np.all(negative.multipliers >= 0))


def test_polish_never_worsens_and_keeps_layer_structure() -> None:
    net = random_chain(13, [4, 9, 7, 2], ["tanh", "relu"])
    rough = certify_block(net, Method.LAYER, SolverSettings(eps=1e-2, eps_min=1e-2, polish_steps=0))
    groups = np.repeat([0, 1], [9, 7])
    lam_layer = np.array([rough.multipliers[0], rough.multipliers[9]])
    polished = polish_multipliers(net, lam_layer, groups)
    assert schur_rho(net, polished[groups]) <= schur_rho(net, lam_layer[groups])
    assert polished.shape == (2,)


def test_compression_keeps_schur_value() -> None:
    net = random_chain(17, [40, 6, 5, 2], ["relu", "relu"])
    small = compress_inputs(net)
    assert small.n_x <= 6
    lam = 1.5 * certify_block(net, Method.NEURON).multipliers
    assert schur_rho(small, lam) == pytest.approx(schur_rho(net, lam), rel=1e-9)
