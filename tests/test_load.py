"""Loading: the form's Jacobian equals the original model's, for every format and real model."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from tests.conftest import MODELS_DIR, SAMPLES, load_cached, requires_shared_models, shared_model_names

SAMPLE_CLASSES = {
    "digits_chain": "DigitsChain",
    "digits_residual": "DigitsResidual",
    "digits_tanh": "DigitsTanh",
    "digits_lenet": "DigitsLeNet",
}


def torch_jacobian(module: torch.nn.Module, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """The original model's Jacobian by reverse-mode autograd, in float64."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = copy.deepcopy(module).double().eval()
    xt = torch.tensor(x, dtype=torch.float64)

    def f(flat: torch.Tensor) -> torch.Tensor:
        return model(flat.reshape(shape)).reshape(-1)

    return torch.autograd.functional.jacobian(f, xt).numpy()


def assert_jacobians_match(loaded, seeds=(0, 1)) -> None:  # noqa: ANN001
    net = loaded.network
    for seed in seeds:
        x = np.random.default_rng(seed).random(net.n_x)
        expected = torch_jacobian(loaded.module, loaded.input_shape, x)
        got = net.jacobian(x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


@requires_shared_models
@pytest.mark.parametrize("name", shared_model_names())
def test_shared_model_jacobian_matches(name: str) -> None:
    assert_jacobians_match(load_cached(str(MODELS_DIR / name)))


@pytest.mark.parametrize("name", sorted(SAMPLE_CLASSES))
@pytest.mark.parametrize("suffix", [".onnx", ".ts", ".pt2", ".state_dict.pt", ".pickle.pt"])
def test_sample_formats_jacobian_matches(name: str, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SAMPLES))  # the pickles name their classes' module 'architectures'
    kwargs: dict = {}
    if suffix in (".ts", ".state_dict.pt", ".pickle.pt"):
        kwargs["input_shape"] = (1, 8, 8)
    if suffix == ".state_dict.pt":
        kwargs["arch"] = f"{SAMPLES / 'architectures.py'}:{SAMPLE_CLASSES[name]}"
    if suffix == ".pickle.pt":
        kwargs["trust_pickle"] = True
    loaded = load_cached(str(SAMPLES / f"{name}{suffix}"), **kwargs)
    assert loaded.network.input_shape == (1, 8, 8)
    assert loaded.network.output_shape == (10,)
    assert_jacobians_match(loaded)


def test_every_format_gives_the_same_form() -> None:
    a = load_cached(str(SAMPLES / "digits_residual.onnx")).network
    b = load_cached(str(SAMPLES / "digits_residual.pt2")).network
    for name in "ABCD":
        assert abs(getattr(a, name) - getattr(b, name)).max() < 1e-12


def test_batchnorm_is_folded_into_the_form() -> None:
    loaded = load_cached(str(SAMPLES / "digits_residual.onnx"))
    assert any(op.op == "BatchNorm2d" for op in loaded.network.ops)
    x = np.random.default_rng(3).random((4, loaded.network.n_x))
    with torch.no_grad():
        expected = loaded.module.double()(torch.tensor(x.reshape(4, 1, 8, 8))).numpy()
    np.testing.assert_allclose(loaded.network.forward(x), expected, rtol=1e-10, atol=1e-10)
