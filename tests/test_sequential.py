"""The whole-chain point (lipcert/sdp/sequential.py): recognised chains, sound proofs, and its use by estimate."""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipcert.combine import combine_depth
from lipcert.estimate import EstimateOptions, estimate
from lipcert.load import LoadedModel
from lipcert.naive import naive_bound
from lipcert.sdp import verify
from lipcert.sdp.certify import certify_block
from lipcert.sdp.lipsdp import input_diagonal, multiplier_terms, stacked_maps
from lipcert.sdp.sequential import chain_weights, recursion_multipliers, sequential_bound
from lipcert.sdp.verify import verify_multipliers
from lipcert.vocabulary import Method
from tests.conftest import MODELS_DIR, load_cached, published_lower_bounds, requires_shared_models
from tests.convnets import Conv, _assemble, random_convnet
from tests.test_verify import TIGHT, chain, jacobian_lower_bound


def scaled_chain(seed: int, sizes: list[int], exponents: list[int], activation: str = "relu"):  # noqa: ANN201
    """A random chain whose layer k is multiplied by 2**exponents[k]: the LMI spans many magnitudes."""
    rng = np.random.default_rng(seed)
    weights = [2.0**e * rng.standard_normal((m, n)) / np.sqrt(n) for n, m, e in zip(sizes[:-1], sizes[1:], exponents)]
    return chain(weights, [activation] * (len(sizes) - 2)), weights


def eclipse_fast(weights: list[np.ndarray]) -> float:
    """ECLipsE-Fast for ReLU (m = 1/2), written from the paper's recursion, independently of lipcert."""
    X = np.eye(weights[0].shape[1])
    for W in weights[:-1]:
        K = W @ np.linalg.inv(X) @ W.T
        lam = 1.0 / (2 * 0.25 * np.linalg.eigvalsh(K).max())
        X = lam * np.eye(W.shape[0]) - lam**2 * 0.25 * K
    return float(np.sqrt(np.linalg.eigvals(weights[-1].T @ weights[-1] @ np.linalg.inv(X)).real.max()))


def exact_min_eigenvalue(net, lam: np.ndarray, rho: float) -> mpmath.mpf:  # noqa: ANN001
    """The smallest eigenvalue of −L(λ, ρ), with every product and sum in 50-digit arithmetic."""
    mpmath.mp.dps = 50
    n = net.lmi_size
    _, Y = stacked_maps(net)
    Y = Y.toarray()
    L = mpmath.matrix(n, n)
    for i in range(n):
        for j in range(n):
            L[i, j] = mpmath.fsum(mpmath.mpf(Y[k, i]) * mpmath.mpf(Y[k, j]) for k in range(Y.shape[0]))
    for j, r, c, v in zip(*multiplier_terms(net, False)):
        L[r, c] += mpmath.mpf(lam[j]) * mpmath.mpf(v)
    for i, p in enumerate(input_diagonal(net, None)):
        L[i, i] -= mpmath.mpf(rho) * mpmath.mpf(p)
    return min(mpmath.eigsy(-L, eigvals_only=True))


def test_chain_weights_recovers_the_layers() -> None:
    net, weights = scaled_chain(0, [5, 4, 3, 2], [0, 0, 0])
    found = chain_weights(net)
    assert found is not None and len(found) == len(weights)
    for got, want in zip(found, weights):
        np.testing.assert_array_equal(got, want)


def test_a_residual_net_is_not_a_chain() -> None:
    # The third stage adds the first one's output: it reads two layers.
    net = _assemble(random_convnet((1, 4, 4), [Conv(2), Conv(2), Conv(2, skip_from=0)], Conv(2, 4, 1, 0)))
    assert chain_weights(net) is None and sequential_bound(net) is None


def test_one_relu_layer_is_exact() -> None:
    # y = W1 relu(W0 x) with W0 = I: every multiplier direction is one scalar, and the best ρ* is ||W1|| ||W0||-tight.
    net = chain([np.eye(3), np.diag([3.0, 2.0, 1.0])], ["relu"])
    found = sequential_bound(net)
    assert found is not None and found.certified
    assert 3.0 <= found.bound <= 3.0 * (1 + 1e-6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    sizes=st.lists(st.integers(1, 5), min_size=3, max_size=5),
    exponents=st.lists(st.integers(-8, 8), min_size=4, max_size=4),
    activation=st.sampled_from(["relu", "leaky_relu", "tanh"]),
)
def test_the_proven_bound_is_sound_in_exact_arithmetic(
    seed: int, sizes: list[int], exponents: list[int], activation: str
) -> None:
    net, weights = scaled_chain(seed, sizes, exponents[: len(sizes) - 1], activation)
    found = sequential_bound(net, seconds=2.0)
    assert found is not None and found.certified, found
    assert exact_min_eigenvalue(net, found.multipliers, found.rho) >= 0  # the proof's claim, checked exactly
    assert found.bound >= jacobian_lower_bound(net, samples=100) * (1 - 1e-9)
    if activation == "relu":  # the same direction, with ρ minimised rather than fixed: never looser
        # compared before the proof's margin, which at weights of 2^-8 is absolute rounding error
        # (about 1e-14 on ρ ~ 1e-9) and so may exceed any relative tolerance
        assert np.sqrt(found.rho_estimate) <= eclipse_fast(weights) * (1 + 1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    narrow=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    wide=st.lists(st.booleans(), min_size=2, max_size=4),
)
def test_wide_layers_held_by_woodbury_give_the_same_recursion(seed: int, narrow: list[int], wide: list[bool]) -> None:
    """A layer wider than `width` (never two in a row, nor one right after wide inputs) is never formed:
    its X_i is held by Woodbury. λ and c must still be ECLipsE-Fast's, computed independently with
    explicit inverses (tests' eclipse_fast), to 1e-8: the two differ only by rounding in well-conditioned
    solves (X_i ⪰ λ_i I/2 by the recursion's choice of λ_i)."""
    width = 4
    hidden: list[int] = []
    for n, is_wide in zip(narrow[1:], wide):
        hidden.append(width + 1 + n if is_wide and (not hidden or hidden[-1] <= width) else n)
    if all(n <= width for n in hidden):
        hidden[0] += width  # at least one wide layer, right after the (narrow) inputs
    net, weights = scaled_chain(seed, [narrow[0], *hidden, 2], [0] * (len(hidden) + 1))
    found = recursion_multipliers(net, chain_weights(net), width=width)
    assert found is not None
    lam, c = found
    np.testing.assert_allclose(np.sqrt(c), eclipse_fast(weights), rtol=1e-8)
    dense_lam, dense_c = recursion_multipliers(net, chain_weights(net), width=10**6)
    np.testing.assert_allclose(lam, dense_lam, rtol=1e-8)


def test_two_wide_layers_in_a_row_are_not_held() -> None:
    net, _ = scaled_chain(4, [3, 6, 7, 2], [0, 0, 0])
    assert recursion_multipliers(net, chain_weights(net), width=5) is None
    assert recursion_multipliers(net, chain_weights(net), width=7) is not None


def test_layer_rescaling_reaches_the_lipsdp_layer_value() -> None:
    # The search runs over one factor per layer, so its limit is LipSDP-Layer's optimum (solved here by SCS).
    net, _ = scaled_chain(3, [6, 8, 8, 8, 3], [0, 1, -1, 0])
    found = sequential_bound(net, seconds=20.0)
    layer = certify_block(net, method=Method.LAYER, settings=TIGHT)
    assert found is not None and found.certified
    assert abs(found.bound / layer.bound - 1) < 0.01, (found.bound, layer.bound)
    start, c = recursion_multipliers(net, chain_weights(net))
    assert found.bound <= verify_multipliers(net, 1.001 * c * start).bound  # the rescaling only helps


def test_a_deep_badly_scaled_chain_needs_the_scaled_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every layer ×2^8: ρ ~ 1e29 against multipliers ~ 1, so one rounding margin in the original units
    # swamps the activation block; the proof in power-of-two Jacobi-scaled coordinates still holds.
    net, _ = scaled_chain(1, [4, 6, 6, 6, 6, 6, 2], [8] * 6)
    found = sequential_bound(net, seconds=3.0)
    assert found is not None and found.certified, found
    assert exact_min_eigenvalue(net, found.multipliers, found.rho) >= 0
    original = verify._proven
    monkeypatch.setattr(verify, "_proven", lambda H, T, scale, k: scale is None and original(H, T, None, k))
    unscaled = verify_multipliers(net, found.multipliers)
    assert not unscaled.certified and "Cholesky proof failed" in unscaled.how


def _loaded(net) -> LoadedModel:  # noqa: ANN001
    return LoadedModel(Path("chain.onnx"), "onnx", net, None, (1, net.n_x), "0" * 64, 0.0)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def deep_chain():  # noqa: ANN201
    return scaled_chain(7, [8, 12, 12, 12, 12, 12, 12, 4], [1, 0, 1, 0, 1, 0, 0])[0]


def test_the_default_certifies_the_whole_chain_below_the_product_and_the_chain_point(deep_chain) -> None:  # noqa: ANN001
    options = EstimateOptions(max_block_size=30, workers=1)  # 6 hidden layers of 12: several depth groups
    cert = estimate(_loaded(deep_chain), options)
    assert len(cert.groups) >= 2
    assert [n for n in cert.notes if n.startswith("whole network")]  # the whole-network certificate is described
    chain = sequential_bound(deep_chain)
    # the descent starts at the chain point and keeps the best verified point: never above it
    assert chain is not None and cert.bound <= chain.bound
    if cert.combined_by == "whole":
        assert cert.bound < combine_depth([g.bound for g in cert.groups])
    assert cert.bound >= jacobian_lower_bound(deep_chain)
    paper = estimate(_loaded(deep_chain), EstimateOptions(max_block_size=30, workers=1, combine="paper"))
    assert paper.bound == combine_depth([g.bound for g in paper.groups])  # explicit modes are left alone
    assert not [n for n in paper.notes if n.startswith("whole network")]


@requires_shared_models
@pytest.mark.parametrize("name", ["mnistfc__mnist-net_256x2.onnx", "eran__mnist_relu_9_200.onnx"])
def test_real_chains_stay_above_their_published_lower_bound(name: str) -> None:
    # The default's whole-chain candidate on the real MLPs: certified, and never below a true lower bound.
    net = load_cached(str(MODELS_DIR / name)).network
    found = sequential_bound(net, seconds=5.0)
    assert found is not None and found.certified, found
    assert found.bound >= published_lower_bounds()[name]
    assert found.bound <= naive_bound(net) * (1 + 1e-9)  # and no looser than the product of norms
