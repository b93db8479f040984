"""The models the benchmark harness runs: real checkpoints, anchors, samples and a random conv-net series.

Real models and anchors are read in place from ../shared (never copied); the scaling series is
written as ONNX files into a cache folder (seeded, so the same weights every time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ANCHORS_DIR, GLIPSDP_PEERS, MODELS_DIR, published_lower_bounds
from tests.support import SAMPLES as SAMPLES_DIR


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    family: str  # "fc" (fully connected chain: ECLipsE applies, spatial splits do not) or "cnn"
    source: str  # "sample", "anchor (lipsdp)", "anchor (glipsdp)", "shared", "scaling"
    quick: bool = False  # part of `make bench-quick`
    selections: tuple[str, ...] = ("all",)  # "all" outputs, or "logit 7"
    known_lower: dict[str, tuple[float, str]] = field(default_factory=dict)  # selection -> (value, source)
    scaling: tuple[int, int, int] | None = None  # (depth, channels, input side) of a random conv net


SAMPLES = ("digits_chain", "digits_tanh", "digits_residual")
FC_SHARED = {"mnistfc__mnist-net_256x2.onnx", "eran__mnist_relu_9_200.onnx"}
QUICK_ANCHORS = {"random_2-10-30-20-2.onnx", "mnist_784-50-10.onnx", "digits_fnn2_seed0.onnx", "digits_fnn3_seed0.onnx"}
# (depth, channels, input side): a base net, then one axis at a time
SCALING = [
    (2, 4, 8),
    (3, 4, 8),
    (4, 4, 8),
    (6, 4, 8),
    (8, 4, 8),
    (2, 8, 8),
    (2, 16, 8),
    (2, 32, 8),
    (2, 4, 16),
    (2, 4, 24),
    (2, 4, 32),
]
QUICK_SCALING = {(2, 4, 8), (3, 4, 8), (2, 4, 16)}


def scaling_name(depth: int, channels: int, side: int) -> str:
    return f"conv_d{depth}_c{channels}_{side}x{side}"


def all_models(cache_dir: Path, quick: bool = False) -> list[ModelSpec]:
    """Every model, in run order: samples, anchors, scaling series, then the large real models."""
    specs: list[ModelSpec] = []
    for name in SAMPLES:
        specs.append(ModelSpec(name, SAMPLES_DIR / f"{name}.onnx", "cnn", "sample", quick=True))
    lipsdp = ANCHORS_DIR / "lipsdp"
    for file in ("random_2-10-30-20-2.onnx", "mnist_784-50-10.onnx"):
        if (lipsdp / file).exists():
            in_quick = file in QUICK_ANCHORS  # not `quick`: that is the caller's choice of set, used below
            specs.append(ModelSpec(Path(file).stem, lipsdp / file, "fc", "anchor (lipsdp)", quick=in_quick))
    glipsdp = ANCHORS_DIR / "glipsdp"
    for file, peer in GLIPSDP_PEERS.items():
        if not (glipsdp / file).exists():
            continue
        fc = "fnn" in file
        # the peer's sampled lower bound of logit 7 describes the real network only for the fnns
        known = {"logit 7": (peer[4], "GLipSDP's sampled lower bound")} if fc else {}
        specs.append(
            ModelSpec(
                Path(file).stem,
                glipsdp / file,
                "fc" if fc else "cnn",
                "anchor (glipsdp)",
                quick=file in QUICK_ANCHORS,
                selections=("all", "logit 7"),
                known_lower=known,
            )
        )
    for depth, channels, side in SCALING:
        path = cache_dir / "scaling" / f"{scaling_name(depth, channels, side)}.onnx"
        specs.append(
            ModelSpec(
                scaling_name(depth, channels, side),
                path,
                "cnn",
                "scaling",
                quick=(depth, channels, side) in QUICK_SCALING,
                scaling=(depth, channels, side),
            )
        )
    lower = published_lower_bounds()
    order = [
        "mnistfc__mnist-net_256x2.onnx",
        "eran__mnist_relu_9_200.onnx",
        "oval21__cifar_base_kw.onnx",
        "eran-mnist__convSmallRELU__Point.onnx",
        "oval21__cifar_deep_kw.onnx",
        "cifar10_resnet__resnet_2b.onnx",
        "oval21__cifar_wide_kw.onnx",
        "verivital__Convnet_avgpool.onnx",
    ]
    present = sorted(p.name for p in MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []
    for file in [f for f in order if f in present] + [f for f in present if f not in order]:
        known = {"all": (lower[file], "../shared/models README")} if file in lower else {}
        family = "fc" if file in FC_SHARED else "cnn"
        specs.append(ModelSpec(Path(file).stem, MODELS_DIR / file, family, "shared", known_lower=known))
    if not quick:
        return specs
    slow = {"digits_residual"}  # quick: the residual sample (slow SDPs) last, where the budget may cut it
    return [s for s in specs if s.quick and s.name not in slow] + [s for s in specs if s.quick and s.name in slow]


def build_scaling_model(spec: ModelSpec) -> Path:
    """Write the seeded random conv net: `depth` 3x3 convolutions (padding 1), ReLU between them."""
    if spec.path.exists() or spec.scaling is None:
        return spec.path
    import torch
    from torch import nn

    depth, channels, side = spec.scaling
    seed = int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16)
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    in_channels = 1
    for k in range(depth):
        layers.append(nn.Conv2d(in_channels, channels, 3, padding=1))
        if k < depth - 1:
            layers.append(nn.ReLU())
        in_channels = channels
    model = nn.Sequential(*layers).eval()
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    scratch = spec.path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(
            model, (torch.zeros(1, 1, side, side),), str(scratch), dynamo=False, opset_version=17, input_names=["input"]
        )
    scratch.replace(spec.path)
    return spec.path


def neurons(spec: ModelSpec) -> int | None:
    if spec.scaling is None:
        return None
    depth, channels, side = spec.scaling
    return (depth - 1) * channels * side * side
