"""ρ*(λ) and its subgradients at any size (lipcert/sdp/schur.py) against the dense Schur complement."""

from __future__ import annotations

import numpy as np
import pytest

from lipcert.sdp import schur
from lipcert.sdp.schur import _dense_rho_and_gradient as schur_rho_and_gradient
from lipcert.sdp.schur import rho_and_gradient, schur_eigen, schur_rho, sparse_schur_rho
from tests.nets import feasible_multipliers, random_net
from tests.test_verify import one_neuron, one_neuron_rho, random_chain

# Both paths compute the same λ_max in float64 by different factorizations (dense Cholesky of −R
# vs sparse LDLᵀ of the lifted N) and orders; the complement's entries agree to a few ulps of its
# norm times the condition of −R, so 1e-9 relative is far from both rounding and from any real bug.
RHO_REL = 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_sparse_rho_and_gradient_match_dense(seed: int) -> None:
    net = random_net(seed)
    lam = feasible_multipliers(net, seed)
    dense_rho, dense_grad = schur_rho_and_gradient(net, lam)
    found = schur_eigen(net, lam, 2, dense=False)
    assert found is not None
    assert found.rho == pytest.approx(dense_rho, rel=RHO_REL)
    # The gradient is that of the top eigenvector; it is determined only where θ₁ is simple, and
    # its error is ~ (rounding of the complement) / gap: compare where the gap is ≥ 1e-6 relative.
    if net.n_x > 1 and found.values[0] - found.values[1] > 1e-6 * abs(found.values[0]):
        scale = max(float(np.abs(dense_grad).max()), 1e-300)
        assert np.abs(found.gradient - dense_grad).max() <= 1e-6 * scale


def test_lanczos_operator_matches_explicit_complement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eigsh path (used above EXPLICIT_INPUTS inputs) on a net with enough inputs to run it."""
    net = random_chain(4, [40, 30, 20, 5], ["relu", "gelu"])
    lam = feasible_multipliers(net, 4)
    explicit = schur_eigen(net, lam, 3, dense=False)
    monkeypatch.setattr(schur, "EXPLICIT_INPUTS", 0)
    lanczos = schur_eigen(net, lam, 3, dense=False, tol=1e-12)
    assert np.allclose(lanczos.values, explicit.values, rtol=1e-9)
    dense_rho = schur_rho(net, lam)
    assert lanczos.rho == pytest.approx(dense_rho, rel=RHO_REL)
    again = schur_eigen(net, lam, 3, dense=False, tol=1e-12)
    assert np.array_equal(again.values, lanczos.values)  # the fixed start vector: reproducible


def test_gradient_matches_finite_differences() -> None:
    """Where θ₁ is simple, ρ* is differentiable and its gradient is the Danskin vector."""
    for seed in (2, 5, 8):
        net = random_net(seed)
        lam = feasible_multipliers(net, seed)
        found = schur_eigen(net, lam, 2, dense=False)
        if net.n_x > 1 and found.values[0] - found.values[1] < 1e-3 * found.values[0]:
            continue
        rng = np.random.default_rng(seed)
        for j in rng.choice(net.n_w, size=min(4, net.n_w), replace=False):
            h = 1e-5 * lam[j]
            up, down = lam.copy(), lam.copy()
            up[j] += h
            down[j] -= h
            fd = (sparse_schur_rho(net, up) - sparse_schur_rho(net, down)) / (2 * h)
            # central differences: O(h²) truncation plus rounding ~ ε ρ / h
            tol = 1e-4 * max(abs(fd), abs(found.gradient[j])) + 1e-9 * found.rho / h
            assert found.gradient[j] == pytest.approx(fd, abs=tol)


def test_closed_form_and_input_weights() -> None:
    a, d = 2.0, 3.0
    for lam in (12.0, 18.0, 40.0):
        assert sparse_schur_rho(one_neuron(a, d), np.array([lam])) == pytest.approx(
            one_neuron_rho(a, d, lam), rel=1e-12
        )
    net = random_net(7)
    lam = feasible_multipliers(net, 7)
    weights = np.random.default_rng(0).uniform(0.2, 1.0, net.n_x)
    assert sparse_schur_rho(net, lam, weights) == pytest.approx(schur_rho(net, lam, weights), rel=RHO_REL)


def test_infinite_when_activation_block_is_not_negative_definite() -> None:
    net = one_neuron(2.0, 3.0)
    assert sparse_schur_rho(net, np.array([4.5])) == np.inf  # R = 9 − 4.5 > 0
    assert sparse_schur_rho(net, np.array([9.0])) == np.inf  # R = 0
    rho, grad = rho_and_gradient(net, np.array([4.5]))
    assert rho == np.inf and not np.any(grad)
    conv = random_net(1)
    assert schur_eigen(conv, np.zeros(conv.n_w), dense=False) is None


def test_multiple_eigenpairs_match_dense() -> None:
    net = random_net(3)
    lam = feasible_multipliers(net, 3)
    sparse, dense = schur_eigen(net, lam, 3, dense=False), schur_eigen(net, lam, 3, dense=True)
    assert np.allclose(sparse.values, dense.values, rtol=1e-9, atol=1e-12 * abs(dense.values[0]))
    gaps = np.diff(dense.values[::-1])[::-1]  # θ_i − θ_{i+1}
    for i in range(2):
        if gaps[i] > 1e-6 * dense.values[0] and (i == 0 or gaps[i - 1] > 1e-6 * dense.values[0]):
            scale = float(np.abs(dense.gradients[i]).max())
            assert np.abs(sparse.gradients[i] - dense.gradients[i]).max() <= 1e-6 * scale


@pytest.mark.parametrize("seed", range(6))
def test_the_input_coupled_neurons_are_those_q_touches_and_the_dense_path_agrees(seed: int) -> None:
    """The dense path factors −R with the neurons that Q (the x–w block) touches last and solves only
    with the factor's trailing block. Which neurons those are is read off the terms
    (lifted.dense_layout); here against lmi_matrix's Q at random λ (no cancellation), on nets
    where a later stage also reads x and leaky slopes couple x with earlier neurons through v_k².
    Then ρ* and the gradient against the sparse path (an LDLᵀ of the whole N, no reordering)."""
    from lipcert.sdp.lifted import dense_layout
    from lipcert.sdp.lipsdp import lmi_matrix
    from tests.convnets import INPUT, Conv, random_convnet

    act = ["relu", "leaky_relu", "tanh"][seed % 3]
    stages = [Conv(1, activation=act, param=0.1), Conv(1, activation=act, param=0.1, skip_from=INPUT)]
    net = random_convnet(
        (1, 4, 4),
        stages[: 1 + seed % 2] + [Conv(1, activation="leaky_relu", param=0.2)],
        Conv(2, kernel=3, padding=0),
        seed=seed,
    ).form
    lam = np.random.default_rng(seed).uniform(0.5, 2.0, net.n_w)
    Q = lmi_matrix(net, lam, 0.0).toarray()[: net.n_x, net.n_x :]
    layout = dense_layout(net)
    order, n_free = layout.order, layout.n_free
    coupled = np.sort(order[net.n_x + n_free :] - net.n_x)
    np.testing.assert_array_equal(coupled, np.flatnonzero(np.abs(Q).sum(axis=0) > 0))
    assert 0 < n_free < net.n_w
    lam = feasible_multipliers(net, seed)
    dense_rho, dense_grad = schur_rho_and_gradient(net, lam)
    found = schur_eigen(net, lam, 2, dense=False)
    assert found is not None and found.rho == pytest.approx(dense_rho, rel=RHO_REL)
    if found.values[0] - found.values[1] > 1e-6 * abs(found.values[0]):
        assert np.abs(found.gradient - dense_grad).max() <= 1e-6 * max(float(np.abs(dense_grad).max()), 1e-300)


@pytest.mark.parametrize("seed", range(6))
def test_a_rank_deficient_complement_comes_from_its_small_gram_matrix(seed: int) -> None:
    """ReLU/tanh chains reading x have P(λ, 0) = 0: S = FᵀF has rank ≤ the first layer's width, and its
    top eigenpairs come from F Fᵀ. Against the explicit n_x × n_x complement's eigh, and ρ* against the
    sparse path; a leaky first layer (P ≠ 0) must not take the shortcut."""
    from lipcert.sdp.lifted import dense_layout
    from tests.test_verify import chain

    rng = np.random.default_rng(seed)
    act = ["relu", "tanh", "leaky_relu"][seed % 3]
    sizes = [12, 4, 5, 3]
    net = chain([rng.standard_normal((m, n)) / np.sqrt(n) for n, m in zip(sizes, sizes[1:])], [act, "relu"])
    assert dense_layout(net).inputs_block_zero == (act != "leaky_relu")
    lam = feasible_multipliers(net, seed)
    parts = schur._schur_parts(net, lam, None)
    values, vectors = parts.top(3)
    exact_values, exact_vectors = np.linalg.eigh(parts.complement())
    np.testing.assert_allclose(values, exact_values[::-1][:3], rtol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=0), 1.0, rtol=1e-9)
    gap = values[0] - exact_values[-2]
    if gap > 1e-6 * values[0]:  # a simple top eigenvalue: its vector is determined up to sign
        assert abs(abs(vectors[:, 0] @ exact_vectors[:, -1]) - 1.0) < 1e-8
    assert sparse_schur_rho(net, lam) == pytest.approx(values[0], rel=RHO_REL)
