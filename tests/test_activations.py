"""Activations as torch.onnx.export writes them, at opsets 11 to 18: read exactly, with proven slopes.

Each small net is exported (both with and without constant folding), loaded through the real
path (clean-up, pattern rewrites, onnx2torch, the tracer), and its form's Jacobian is compared
with the converted module's (rtol 1e-9: the same float64 function, up to rounding) and with
the original torch module's (rtol 1e-6: the file stores constants such as sqrt(2) in float32,
which moves the function by ~1e-8 relative). The slope bounds are then checked on a grid.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from lipcert.load.onnx_loader import load_onnx_proto
from lipcert.network.activations import ACTIVATIONS
from lipcert.network.trace import trace_network

OPSETS = range(11, 19)
CASES = {
    "gelu": (lambda: nn.GELU(), "gelu"),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), "gelu_tanh"),
    "silu": (lambda: nn.SiLU(), "silu"),
    "hardswish": (lambda: nn.Hardswish(), "hard_swish"),
    "hardsigmoid": (lambda: nn.Hardsigmoid(), "hard_sigmoid"),
    "relu6": (lambda: nn.ReLU6(), "clip"),
    "prelu": (lambda: nn.PReLU(), "prelu"),
    "prelu_channels": (lambda: nn.PReLU(4), "prelu"),
}
GRID = np.linspace(-30.0, 30.0, 600_001)


def export(model: nn.Module, shape: tuple[int, ...], opset: int, fold: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(shape),), buffer, dynamo=False, opset_version=opset, do_constant_folding=fold,
            training=torch.onnx.TrainingMode.EVAL, input_names=["input"],
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def jacobian(module: nn.Module, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    model = copy.deepcopy(module).double().eval()
    return torch.autograd.functional.jacobian(lambda t: model(t.reshape(shape)).reshape(-1), torch.tensor(x)).numpy()


def grid_slopes_within(key: str, param: object, alpha: float, beta: float) -> None:
    act = ACTIVATIONS[key]
    d = act.derivative(GRID, param)
    assert d.min() >= alpha - 1e-12 and d.max() <= beta + 1e-12
    values = act.apply(GRID, param)
    secant = np.diff(values) / np.diff(GRID)
    assert secant.min() >= alpha - 1e-9 and secant.max() <= beta + 1e-9


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_exported_activation_is_read_exactly(case: str, opset: int) -> None:
    make, key = CASES[case]
    torch.manual_seed(opset)
    act = make()
    model = nn.Sequential(nn.Conv2d(1, 4, 3), act, nn.Conv2d(4, 2, 3), nn.Flatten()).eval()
    if isinstance(act, nn.PReLU):
        with torch.no_grad():
            act.weight.uniform_(-0.5, 1.5)  # slopes on both sides of 1, different per channel
    shape = (1, 1, 6, 6)
    gm, shape = load_onnx_proto(export(model, shape, opset, fold=opset % 2 == 0), Path(case))
    net = trace_network(gm, shape)
    (layer,) = net.layers
    assert layer.activation == key and layer.size == 64
    x = np.random.default_rng(opset).standard_normal(net.n_x)
    got = net.jacobian(x)
    converted, original = jacobian(gm, shape, x), jacobian(model, shape, x)
    np.testing.assert_allclose(got, converted, rtol=1e-9, atol=1e-9 * np.abs(converted).max())
    np.testing.assert_allclose(got, original, rtol=1e-6, atol=1e-6 * np.abs(original).max())
    if case == "prelu_channels":
        slopes = act.weight.detach().double().numpy()
        np.testing.assert_array_equal(net.alpha, np.repeat(np.minimum(slopes, 1.0), 16))
        np.testing.assert_array_equal(net.beta, np.repeat(np.maximum(slopes, 1.0), 16))
        for a in slopes:
            grid_slopes_within(key, float(a), min(a, 1.0), max(a, 1.0))
    else:
        grid_slopes_within(key, layer.param, layer.alpha, layer.beta)


@pytest.mark.parametrize(
    "key, param, expected",
    [
        ("hard_swish", (1 / 6, 0.5), (-0.5, 1.5)),
        ("hard_sigmoid", (1 / 6, 0.5), (0.0, 1 / 6)),
        ("hard_sigmoid", (0.2, 0.5), (0.0, 0.2)),
        ("clip", (0.0, 6.0), (0.0, 1.0)),
        ("clip", (-1.0, 2.5), (0.0, 1.0)),
        ("prelu", 0.25, (0.25, 1.0)),
        ("prelu", 1.7, (1.0, 1.7)),
    ],
)
def test_analytic_slopes_are_exact(key: str, param: object, expected: tuple[float, float]) -> None:
    """The proven interval is the derivative's true range: both ends are reached on the grid."""
    alpha, beta = (float(v) for v in ACTIVATIONS[key].slopes(param))
    assert (alpha, beta) == pytest.approx(expected, abs=1e-15)
    grid_slopes_within(key, param, alpha, beta)
    d = ACTIVATIONS[key].derivative(GRID, param)
    assert d.min() == pytest.approx(alpha, abs=1e-3) and d.max() == pytest.approx(beta, abs=1e-3)


@pytest.mark.parametrize(
    "key, param",
    [
        ("gelu", 1 / np.sqrt(2)),
        ("gelu", 0.5),
        ("gelu_tanh", (np.sqrt(2 / np.pi), 0.044715)),
        ("silu", 1.0),
        ("silu", 1.702),
    ],
)
def test_numeric_slopes_hold_with_their_margin(key: str, param: object) -> None:
    """Sound (every grid slope inside), tight (within the 1e-3 margin), and the margin's premise sup|f''| < 1."""
    act = ACTIVATIONS[key]
    alpha, beta = act.slopes(param)
    grid_slopes_within(key, param, alpha, beta)
    d = act.derivative(GRID, param)
    assert d.min() - alpha <= 1.01e-3 and beta - d.max() <= 1.01e-3
    if key != "silu" or param == 1.0:  # x sigmoid(s x) has f'' scaled by s; its bound is SiLU's by the identity
        second = np.diff(d) / np.diff(GRID)
        assert np.abs(second).max() < 1.0


def test_per_channel_prelu_is_certified_whole_and_in_tiles(tmp_path: Path) -> None:
    """Tiles of a PReLU layer keep the per-neuron slopes of the neurons they hold (network.subnet)."""
    from lipcert.estimate import EstimateOptions, estimate
    from lipcert.load import load_model
    from lipcert.lower import lower_bound

    torch.manual_seed(0)
    act = nn.PReLU(4)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.1, 0.5, -0.3, 1.4]))
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), act, nn.Conv2d(4, 2, 3, padding=1), nn.Flatten()).eval()
    onnx.save(export(model, (1, 1, 4, 4), 17, fold=True), tmp_path / "prelu.onnx")
    loaded = load_model(tmp_path / "prelu.onnx")
    assert loaded.network.layers[0].alphas is not None
    # The converted module's PReLU is lipcert's vmap-friendly one (torch's F.prelu fails under vmap).
    lower = lower_bound(loaded.module, (1, 1, 4, 4), starts=4, steps=5).value
    whole = estimate(loaded, EstimateOptions(split=(1, 1))).bound
    tiled = estimate(loaded, EstimateOptions(split=(2, 2), combine="overlap")).bound
    assert lower <= whole <= tiled * (1 + 1e-9)
