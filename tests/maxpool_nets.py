"""The three MaxPool nets of issue 14, and the bounds they are judged by.

- lenet: the trained sample sample_models/digits_lenet (two conv + ReLU + MaxPool 2x2 stages);
- vgg: a seeded VGG-style block, two 3x3 convs + ReLU, then MaxPool 2x2, then a linear map;
- overlap: a seeded conv + ReLU, then an overlapping MaxPool 3x3 / stride 2 / padding 1.

Each net is a list of stages, pools between them. The comparisons, all computed from the
stages independently of lipcert's MaxPool rewrite:

- pool-cut naive bound: the product over stages of their naive bounds, times each pool's
  own constant (1 for disjoint windows, sqrt(largest number of windows sharing an input)
  otherwise, counted by back-propagating ones through an average pool);
- cut-at-pool LipSDP: the same product with each stage's full LipSDP instead;
- the full LipSDP of the whole net, where the pools are rewritten into ReLU neurons.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lipcert.estimate import EstimateOptions, estimate
from lipcert.load import LoadedModel, load_model
from lipcert.lower import lower_bound
from lipcert.naive import naive_bound

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
FULL = EstimateOptions(split=(1, 1))  # one block: the full LipSDP-Neuron


@dataclass(frozen=True)
class PoolNet:
    name: str
    stages: list[nn.Module]  # stage k maps the output of pool k-1 to the input of pool k
    pools: list[nn.MaxPool2d]
    input_shape: tuple[int, ...]  # batch first

    def module(self) -> nn.Module:
        parts: list[nn.Module] = []
        for k, stage in enumerate(self.stages):
            parts.append(stage)
            if k < len(self.pools):
                parts.append(self.pools[k])
        return nn.Sequential(*parts).eval()

    def stage_inputs(self) -> list[tuple[int, ...]]:
        shapes, x = [], torch.zeros(self.input_shape)
        with torch.no_grad():
            for k, stage in enumerate(self.stages):
                shapes.append(tuple(x.shape))
                x = stage(x)
                if k < len(self.pools):
                    x = self.pools[k](x)
        return shapes


def lenet() -> PoolNet:
    if str(SAMPLES) not in sys.path:
        sys.path.insert(0, str(SAMPLES))
    from architectures import DigitsLeNet

    m = DigitsLeNet()
    m.load_state_dict(torch.load(SAMPLES / "digits_lenet.state_dict.pt", weights_only=True))
    m.eval()
    stages = [nn.Sequential(m.conv1, m.relu1), nn.Sequential(m.conv2, m.relu2), nn.Sequential(m.flatten, m.fc)]
    return PoolNet("lenet", stages, [m.pool1, m.pool2], (1, 1, 8, 8))


def vgg(seed: int = 0, side: int = 6) -> PoolNet:
    torch.manual_seed(seed)
    block = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.Flatten(), nn.Linear(2 * (side // 2) ** 2, 5))
    return PoolNet("vgg", [block, head], [nn.MaxPool2d(2)], (1, 1, side, side))


def overlap(seed: int = 0, side: int = 7) -> PoolNet:
    torch.manual_seed(seed)
    out = (side + 1) // 2  # 3x3 windows, stride 2, padding 1
    stages = [
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(2 * out * out, 5)),
    ]  # noqa: E501
    return PoolNet("overlap", stages, [nn.MaxPool2d(3, stride=2, padding=1)], (1, 1, side, side))


NETS = {"lenet": lenet, "vgg": vgg, "overlap": overlap}


def pool_constant(pool: nn.MaxPool2d, shape: tuple[int, ...]) -> float:
    """sqrt of the largest number of windows holding one input (1 for disjoint windows)."""
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    counted = nn.functional.avg_pool2d(
        x, pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode, count_include_pad=True
    )
    (counted.sum() * k * k).backward()
    return math.sqrt(float(x.grad.max()))


def load_module(module: nn.Module, shape: tuple[int, ...], folder: Path, name: str) -> LoadedModel:
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path), dynamo=False, input_names=["input"])
    return load_model(path)


def _stage_bound(loaded: LoadedModel, lipsdp: bool) -> float:
    if lipsdp and loaded.network.layers:
        return estimate(loaded, FULL).bound
    return naive_bound(loaded.network)  # a linear stage: its certified spectral norm


@dataclass(frozen=True)
class Measured:
    name: str
    lower: float
    full: float  # full LipSDP with the pools rewritten
    naive_cut: float  # pool-cut naive bound
    lipsdp_cut: float  # cut-at-pool LipSDP product
    pool_constants: tuple[float, ...]
    neurons: int
    seconds_full: float
    seconds_cut: float


def measure(net: PoolNet) -> Measured:
    constants = tuple(pool_constant(p, s) for p, s in zip(net.pools, net.stage_inputs()[1:]))
    shapes = net.stage_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        whole = load_module(net.module(), net.input_shape, Path(tmp), net.name)
        pairs = enumerate(zip(net.stages, shapes))
        stages = [load_module(stage, shape, Path(tmp), f"{net.name}_{k}") for k, (stage, shape) in pairs]
        start = time.perf_counter()
        full = estimate(whole, FULL).bound
        seconds_full = time.perf_counter() - start
        start = time.perf_counter()
        lipsdp_cut = math.prod(_stage_bound(s, True) for s in stages) * math.prod(constants)
        seconds_cut = time.perf_counter() - start
        naive_cut = math.prod(_stage_bound(s, False) for s in stages) * math.prod(constants)
    lower = lower_bound(net.module(), net.input_shape).value
    n_w = whole.network.n_w
    return Measured(net.name, lower, full, naive_cut, lipsdp_cut, constants, n_w, seconds_full, seconds_cut)
