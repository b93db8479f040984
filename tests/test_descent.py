"""The per-neuron descent on ρ*(λ) (lipcert/sdp/descent.py): deterministic, never worse than its start,
close to the solved LipSDP, starting points for any form; real models (slow)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from lipcert.sdp import descent
from lipcert.sdp.certify import certify_block
from lipcert.sdp.schur import schur_rho, sparse_schur_rho
from lipcert.sdp.sequential import chain_point, chain_weights, descend_layer_scales
from lipcert.sdp.verify import verify_multipliers
from lipcert.vocabulary import Method
from tests.conftest import MODELS_DIR, load_cached, published_lower_bounds, requires_shared_models
from tests.nets import feasible_multipliers, random_net
from tests.test_verify import TIGHT, jacobian_lower_bound, random_chain


def test_descent_is_deterministic_and_never_worse() -> None:
    for seed in (0, 1, 4, 9):
        net = random_net(seed)
        lam = feasible_multipliers(net, seed)
        first = descent.minimise_rho(net, lam, iterations=15, seconds=60)
        second = descent.minimise_rho(net, lam, iterations=15, seconds=60)
        assert np.array_equal(first.lam, second.lam) and first.rho == second.rho
        assert first.rho <= first.start_rho
        # the start's ρ* comes from the top-k eigensolver: a few ulps from the top-1 one
        assert first.start_rho == pytest.approx(schur_rho(net, lam), rel=1e-12)
        assert first.rho == pytest.approx(schur_rho(net, first.lam), rel=1e-12)


def test_descent_approaches_the_solved_lipsdp() -> None:
    net = random_chain(21, [6, 12, 10, 3], ["relu", "tanh"])
    optimum = certify_block(net, Method.NEURON, TIGHT).bound
    lam = feasible_multipliers(net, 21)
    best, result = descent.minimise_and_verify(net, lam, iterations=150, seconds=120)
    assert best.certified
    assert best.bound >= optimum * (1 - 1e-5)  # nothing beats the SDP optimum (a sound bound)
    assert best.bound <= optimum * 1.02
    assert best.bound >= jacobian_lower_bound(net)
    assert best.bound <= verify_multipliers(net, lam).bound


def test_infeasible_start_is_returned_unchanged() -> None:
    net = random_net(1)
    lam = np.full(net.n_w, 1e-6)
    assert sparse_schur_rho(net, lam) == np.inf
    result = descent.minimise_rho(net, lam, iterations=5)
    assert result.rho == np.inf and np.array_equal(result.lam, lam)


def test_profile_start_works_where_a_uniform_lambda_cannot() -> None:
    """Residual conv nets: a uniform λ is never feasible when a cross term exceeds 1, at any scale."""
    for seed in (1, 3, 5):
        net = random_net(seed)
        lam = descent.layer_profile_start(net)
        assert lam is not None and np.isfinite(schur_rho(net, lam))
        result = descent.minimise_rho(net, lam, iterations=10)
        assert result.rho <= result.start_rho
    from tests.convnets import Conv, random_convnet

    strong = random_convnet((1, 3, 3), [Conv(1), Conv(1, skip_from=0)], Conv(1), seed=0, gain=6.0).form
    assert all(sparse_schur_rho(strong, np.full(strong.n_w, 2.0**e)) == np.inf for e in range(-10, 40, 5))
    assert descent.layer_profile_start(strong) is not None


def test_chain_start_uses_the_recursion() -> None:
    net = random_chain(5, [5, 8, 8, 3], ["relu", "relu"])
    blocks = chain_weights(net)
    assert blocks is not None and len(blocks) == 3
    lam = chain_point(net)
    assert lam is not None and np.isfinite(schur_rho(net, lam))
    layered = descend_layer_scales(net, lam, schur_rho(net, lam), seconds=60)
    assert schur_rho(net, layered) <= schur_rho(net, lam)


# --- real models (slow): the targets ----------------------------------------------


@pytest.mark.slow
@requires_shared_models
def test_mnistfc_reaches_target_within_a_minute() -> None:
    name = "mnistfc__mnist-net_256x2.onnx"
    net = load_cached(str(MODELS_DIR / name)).network
    start = time.perf_counter()
    lam = chain_point(net)
    result = descent.minimise_rho(net, lam, iterations=1000, seconds=50)
    check = verify_multipliers(net, result.lam)
    assert check.certified and check.bound >= published_lower_bounds()[name]
    assert check.bound <= 316.0
    assert time.perf_counter() - start <= 90  # 60 s target; slack for a loaded machine


def test_extension_goes_on_only_while_wanted() -> None:
    """Past its budget the descent goes on only if the extension's test holds for the best ρ*."""
    net = random_net(4)
    lam = feasible_multipliers(net, 4)
    asked: list[float] = []

    def never(rho: float) -> bool:
        asked.append(rho)
        return False

    stopped = descent.minimise_rho(net, lam, iterations=10, seconds=0.0, extension=(60.0, never))
    assert asked and stopped.history == []  # asked once at the budget, then stopped
    extended = descent.minimise_rho(net, lam, iterations=10, seconds=0.0, extension=(60.0, lambda rho: True))
    reference = descent.minimise_rho(net, lam, iterations=10, seconds=60.0)
    assert extended.rho == reference.rho and np.array_equal(extended.lam, reference.lam)


def test_budget_keeps_room_for_the_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock where every ρ* evaluation takes 1 s, a 12 s descent with reserve 4 stops while at least
    4 evaluations' worth of its budget is left (for verify_multipliers), and one with no reserve uses it."""
    net = random_net(4)
    lam = feasible_multipliers(net, 4)
    clock = [0.0]
    real_eigen = descent.schur_eigen

    def slow_eigen(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - a pass-through
        clock[0] += 1.0
        return real_eigen(*args, **kwargs)

    monkeypatch.setattr(descent, "schur_eigen", slow_eigen)
    monkeypatch.setattr(descent, "time", SimpleNamespace(perf_counter=lambda: clock[0]))  # descent's clock only
    used = {}
    for reserve in (4.0, 0.0):
        clock[0] = 0.0
        result = descent.minimise_rho(net, lam, iterations=1000, seconds=12.0, reserve=reserve)
        used[reserve] = clock[0]
        assert result.evaluations == clock[0]  # the fake clock counted every evaluation
    assert used[4.0] <= 12.0 - 4.0
    assert used[0.0] > used[4.0] and used[0.0] <= 12.0
