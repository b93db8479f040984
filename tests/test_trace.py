"""Property test: on random small torch networks, the form reproduces the model exactly.

Each network goes through the real path (ONNX export, onnx2torch, the fx tracer), and
the form's forward pass and Jacobian are compared with torch's own in float64.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lipcert.errors import UnsupportedModelError
from lipcert.load.onnx_loader import load_onnx_proto
from lipcert.load.torch_loader import export_onnx
from lipcert.network.trace import trace_network

# Exported activation patterns (GELU, SiLU, HardSwish, ...) have their own tests: tests/test_activations.py.
ACTS = [
    nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.Tanh, nn.Sigmoid, nn.ELU, nn.Softplus,
    nn.GELU, nn.SiLU, nn.Hardswish, nn.ReLU6, nn.PReLU,
]  # fmt: skip


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Concat(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


@st.composite
def conv_nets(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(draw(st.integers(0, 10_000)))
    side = draw(st.integers(5, 8))
    channels = draw(st.sampled_from([2, 4]))
    act = draw(st.sampled_from(ACTS))
    stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 2]))
    layers: list[nn.Module] = [
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        act(),
        nn.Conv2d(channels, channels, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups),
    ]
    kind = draw(st.sampled_from(["residual", "concat", "pool", "maxpool", "plain"]))
    if kind == "residual":
        layers.append(Residual(nn.Sequential(act(), nn.Conv2d(channels, channels, 3, padding=1))))
    elif kind == "concat":
        layers.append(Concat(nn.Conv2d(channels, 1, 1), nn.Identity()))
    elif kind == "pool":
        layers.append(nn.AvgPool2d(2, ceil_mode=False))
    elif kind == "maxpool":  # ties only between saturated values, whose derivative is 0 either way
        layers.append(draw(st.sampled_from([nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(3, stride=2, padding=1)])))
    layers += [act(), nn.Flatten()]
    model = nn.Sequential(*layers)
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)  # a BatchNorm that does something
    bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        width = model(torch.zeros(1, 1, side, side)).shape[1]
    return nn.Sequential(model, nn.Linear(width, 3)).eval(), (1, 1, side, side)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_form_matches_torch_on_random_conv_nets(case: tuple[nn.Module, tuple[int, ...]]) -> None:
    model, shape = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = export_onnx(model, shape, Path("random"))
    gm, shape = load_onnx_proto(proto, Path("random"))
    net = trace_network(gm, shape)
    reference = copy.deepcopy(model).double()
    # Exported GELU stores sqrt(2) in float32, which moves the function by ~1e-8 relative; the form
    # reads the file exactly (tests/test_activations.py compares it with the converted module at 1e-9).
    tol = 1e-6 if any(isinstance(m, nn.GELU) for m in model.modules()) else 1e-9
    x = np.random.default_rng(0).standard_normal((3, net.n_x))
    with torch.no_grad():
        expected = reference(torch.tensor(x.reshape(3, *shape[1:]))).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=tol, atol=tol)
    jac = torch.autograd.functional.jacobian(lambda t: reference(t.reshape(shape)).reshape(-1), torch.tensor(x[0]))
    np.testing.assert_allclose(net.jacobian(x[0]), jac.numpy(), rtol=10 * tol, atol=tol)


def test_erf_outside_gelu_is_refused_by_node() -> None:
    """Exported GELU is rewritten (tests/test_activations.py); an Erf in any other form stays refused."""
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
        helper.make_node("Erf", ["h"], ["e"], name="stray_erf"),
        helper.make_node("Mul", ["h", "e"], ["y"], name="times_x"),  # x * erf(x): no 0.5 (1 + ...)
    ]
    weight = numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "W")
    graph = helper.make_graph(
        nodes, "erf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedModelError, match="node 'stray_erf' has op type Erf"):
        load_onnx_proto(proto, Path("erf"))
