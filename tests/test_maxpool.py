"""MaxPool read exactly: a tree of ReLU neurons per window, and what LipSDP gains over cutting there."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.load import load_model
from lipcert.load.onnx_loader import load_onnx_proto
from lipcert.load.torch_loader import export_onnx
from lipcert.network.trace import trace_network
from lipcert.partition.depth import valid_cuts
from tests.conftest import SAMPLES
from tests.maxpool_nets import NETS, measure, overlap, vgg

POOLS = {
    "2x2": (nn.MaxPool2d(2), (1, 2, 6, 6)),
    "odd_input_floor": (nn.MaxPool2d(2), (1, 2, 7, 5)),
    "3x3_stride2_pad1": (nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 7, 7)),
    "ceil_mode": (nn.MaxPool2d(3, stride=2, ceil_mode=True), (1, 1, 8, 6)),
    "dilation_ceil": (nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (1, 2, 10, 9)),
    "rect_kernel": (nn.MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)), (1, 1, 5, 7)),
    "stride_over_kernel": (nn.MaxPool2d(2, stride=3), (1, 1, 8, 8)),
    "1d": (nn.MaxPool1d(3, stride=2, padding=1), (1, 2, 9)),
    "1d_ceil_dilation": (nn.MaxPool1d(2, stride=2, dilation=2, ceil_mode=True), (1, 1, 11)),
}


def _conv(rank: int, channels: int) -> nn.Module:
    return (nn.Conv1d if rank == 1 else nn.Conv2d)(1, channels, 3, padding=1)


def assert_form_matches(model: nn.Module, shape: tuple[int, ...], seeds: int = 3):  # noqa: ANN201 - a Network
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = export_onnx(model, shape, Path("pool"))
    gm, shape = load_onnx_proto(proto, Path("pool"))
    net = trace_network(gm, shape)
    reference = copy.deepcopy(model).double()
    x = np.random.default_rng(0).standard_normal((seeds, net.n_x))  # ties have probability 0
    with torch.no_grad():
        expected = reference(torch.tensor(x.reshape(seeds, *shape[1:]))).reshape(seeds, -1).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda t: reference(t.reshape(shape)).reshape(-1), torch.tensor(row))
        np.testing.assert_allclose(net.jacobian(row), jac.numpy(), rtol=1e-9, atol=1e-12)
    return net


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool_form_is_exact(name: str) -> None:
    pool, shape = POOLS[name]
    torch.manual_seed(0)
    model = nn.Sequential(_conv(len(shape) - 2, shape[1]), nn.ReLU(), pool, nn.Flatten()).eval()
    net = assert_form_matches(model, (1, 1, *shape[2:]))
    tree = sum(layer.size for layer in net.layers[1:])
    with torch.no_grad():
        n_out = pool(torch.zeros(shape)).numel()
    assert all(layer.activation == "relu" for layer in net.layers)
    if name == "2x2":
        assert tree == 3 * n_out  # k - 1 neurons per window of k = 4 inputs


def test_asymmetric_onnx_pads_and_global_max_pool() -> None:
    """ONNX pads [0, 0, 1, 1] (onnx2torch: -inf padding + pool) and GlobalMaxPool (rewritten to MaxPool)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("GlobalMaxPool", ["p"], ["g"], name="gpool"),
        helper.make_node("Flatten", ["g"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "W")],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    gm, shape = load_onnx_proto(proto, Path("pools"))
    net = trace_network(gm, shape)
    from onnx.reference import ReferenceEvaluator

    from lipcert.load.cleanup import as_float64

    reference = ReferenceEvaluator(as_float64(proto))
    for row in rng.standard_normal((3, net.n_x)):
        expected = reference.run(None, {"x": row.reshape(1, 1, 5, 5)})[0].ravel()
        np.testing.assert_allclose(net.forward(row[None])[0], expected, rtol=1e-12, atol=1e-12)
    # Per channel, the 3x3 output windows hold 4, 4, 2 / 4, 4, 2 / 2, 2, 1 inputs (pads end the last
    # row and column): 12 pairs, then 4; GlobalMaxPool's 9 candidates take 4, 2, 1, 1.
    assert [(layer.name, layer.size) for layer in net.layers] == [
        ("pool_max1", 24), ("pool_max2", 8), ("gpool_max1", 8), ("gpool_max2", 4), ("gpool_max3", 2), ("gpool_max4", 2),
    ]  # fmt: skip


def test_cuts_before_each_pool_stay_valid() -> None:
    net = load_model(SAMPLES / "digits_lenet.onnx").network
    names = [layer.name for layer in net.layers]
    assert valid_cuts(net) == [names.index("pool1_max_pool_max1"), names.index("pool2_max_pool_max1")]


def test_inspect_shows_the_added_neurons() -> None:
    result = CliRunner().invoke(app, ["inspect", str(SAMPLES / "digits_lenet.onnx")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "pool1_max_pool" in line and "ReLU levels" in line]
    assert len(rows) == 1 and " 144 " in rows[0]  # 48 windows of 4 inputs: 3 ReLU neurons each


def _check(m) -> None:  # noqa: ANN001 - a Measured
    assert m.lower <= m.full <= m.naive_cut
    assert m.full < m.lipsdp_cut  # the rewritten pool beats cutting there


@pytest.mark.parametrize("make", [lambda: vgg(side=4), lambda: overlap(side=5)], ids=["vgg_4x4", "overlap_5x5"])
def test_small_pool_nets_certified_between_lower_and_pool_cut_bounds(make) -> None:  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check(measure(make()))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_pool_nets_certified_between_lower_and_pool_cut_bounds(name: str) -> None:
    """The issue's three nets at full size (README gives the numbers): about 30 s to several minutes each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check(measure(NETS[name]()))
