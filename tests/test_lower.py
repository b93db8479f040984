"""The empirical lower bound: seeded, below every certified bound, above independent samples."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.lower import lower_bound
from lipcert.naive import naive_bound
from tests.conftest import MODELS_DIR, SAMPLES, load_cached, published_lower_bounds, requires_shared_models


@pytest.mark.parametrize("name", ["digits_chain", "digits_residual", "digits_tanh"])
def test_lower_is_a_jacobian_norm_below_the_naive_bound(name: str) -> None:
    loaded = load_cached(str(SAMPLES / f"{name}.onnx"))
    found = lower_bound(loaded.module, loaded.input_shape, starts=4, steps=5)
    exact_there = np.linalg.norm(loaded.network.jacobian(found.point), 2)  # independent: the form
    assert found.value == pytest.approx(exact_there, rel=1e-9)
    assert found.value <= naive_bound(loaded.network)
    samples = np.random.default_rng(9).random((4, loaded.network.n_x))
    assert found.value >= max(np.linalg.norm(loaded.network.jacobian(x), 2) for x in samples) * 0.5


def test_lower_is_reproducible_for_a_seed() -> None:
    loaded = load_cached(str(SAMPLES / "digits_chain.onnx"))
    a = lower_bound(loaded.module, loaded.input_shape, starts=3, steps=3, seed=7)
    b = lower_bound(loaded.module, loaded.input_shape, starts=3, steps=3, seed=7)
    assert a.value == b.value


@requires_shared_models
def test_lower_reaches_the_published_lower_bound() -> None:
    name = "mnistfc__mnist-net_256x2.onnx"
    loaded = load_cached(str(MODELS_DIR / name))
    assert lower_bound(loaded.module, loaded.input_shape).value >= published_lower_bounds()[name]


def test_lower_command_and_with_lower() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["lower", str(SAMPLES / "digits_chain.onnx"), "--starts", "2", "--steps", "2"])
    assert result.exit_code == 0 and "empirical lower bound:" in result.output
    result = runner.invoke(app, ["estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--with-lower"])
    assert result.exit_code == 0 and "upper/lower ratio" in result.output
