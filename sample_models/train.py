"""Train the lipcert sample CNNs on the sklearn 8x8 digits data and export them in every format.

Usage: python sample_models/train.py [--out DIR]   (DIR defaults to the folder holding this script)

Runs single-threaded with fixed seeds and deterministic algorithms, so re-running it reproduces
the shipped files' weights. For each model NAME it writes NAME.onnx, NAME.ts, NAME.pt2,
NAME.state_dict.pt and NAME.pickle.pt, plus a README.md summarising the models.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx2torch
import torch
from architectures import MODELS
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
EPOCHS = 40
BATCH_SIZE = 64
LR = 1e-2
OPSET = 17
VERIFY_ATOL = 1e-5
EXPORT_SUFFIXES = (".onnx", ".ts", ".pt2", ".state_dict.pt", ".pickle.pt")
ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid)

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def configure_determinism() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    # One thread: multi-threaded CPU reductions may sum in a different order between runs.
    torch.set_num_threads(1)


def load_data() -> Data:
    """Digits as (N, 1, 8, 8) float32 in [0, 1]; returns x_train, y_train, x_test, y_test."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0)
    return torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te)


def train_model(name: str, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    # Re-seed per model so each model's weights do not depend on which models were trained before it.
    torch.manual_seed(SEED)
    model = MODELS[name]()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH_SIZE):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(dim=1) == y).float().mean().item()


def count_neurons(model: nn.Module) -> dict[str, int]:
    """Activation neurons per sample, by activation type (this is what sizes the LipSDP matrix).

    A k x k max pool (no padding) is k*k - 1 ReLU neurons per output in lipcert's form; it is
    counted under "MaxPool2d".
    """
    counts: dict[str, int] = {}

    def hook(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        key = type(module).__name__
        per_output = module.kernel_size**2 - 1 if isinstance(module, nn.MaxPool2d) else 1
        counts[key] = counts.get(key, 0) + out[0].numel() * per_output

    kinds = (*ACTIVATIONS, nn.MaxPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(torch.zeros(1, 1, 8, 8))
    for h in handles:
        h.remove()
    return counts


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # The legacy TorchScript exporter (dynamo=False) is wanted here; silence its deprecation notes.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            # EVAL mode would fuse BatchNorm into the conv; PRESERVE on an eval-mode model keeps an
            # inference BatchNormalization node so lipcert's own BN folding is exercised. Constant
            # folding is off because with PRESERVE it leaves stray Identity nodes around BN params.
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
        )


def export_all(model: nn.Module, name: str, out: Path, example: torch.Tensor) -> None:
    export_onnx(model, example, out / f"{name}.onnx")
    torch.jit.save(torch.jit.trace(model, example), str(out / f"{name}.ts"))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(out / f"{name}.pt2"))
    torch.save(model.state_dict(), out / f"{name}.state_dict.pt")
    torch.save(model, out / f"{name}.pickle.pt")


def load_onnx_as_torch(path: Path) -> nn.Module:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    # onnx2torch returns a module in training mode; BN would then use batch statistics.
    return onnx2torch.convert(proto).eval()


@torch.no_grad()
def verify_exports(model: nn.Module, name: str, out: Path, x: torch.Tensor) -> None:
    """Check that the ONNX, TorchScript and torch.export files reproduce the model's logits."""
    expected = model(x)
    loaded = {
        "onnx": load_onnx_as_torch(out / f"{name}.onnx"),
        "ts": torch.jit.load(str(out / f"{name}.ts")).eval(),
        "pt2": torch.export.load(str(out / f"{name}.pt2")).module(),
    }
    for fmt, module in loaded.items():
        err = (module(x) - expected).abs().max().item()
        if err > VERIFY_ATOL:
            raise RuntimeError(f"{name}.{fmt}: max |logit diff| {err:.2e} > {VERIFY_ATOL}")


README_HEAD = """# Sample models

Small CNNs trained on the sklearn 8x8 digits data (`sklearn.datasets.load_digits`, pixels / 16,
`train_test_split(test_size=0.25, random_state=0)`), used as lipcert examples and test fixtures.
Input shape `(N, 1, 8, 8)`, output `(N, 10)` logits. Architectures: `architectures.py`.

| model | class | architecture | test acc. | activation neurons |
|---|---|---|---|---|
"""

ARCH_TEXT = {
    "digits_chain": "Conv(1,4,3,p1) → ReLU → Conv(4,4,3,s2,p1) → ReLU → Flatten → Linear(64,10)",
    "digits_residual": "Conv(1,2,3,p1) → BN → ReLU → [x + Conv(2,2,3,p1) → ReLU → Conv(2,2,3,p1)]"
    " → ReLU → AvgPool(2) → Flatten → Linear(32,10)",
    "digits_tanh": "Conv(1,4,3,p1) → Tanh → Conv(4,4,3,s2,p1) → Sigmoid → Flatten → Linear(64,10)",
    "digits_lenet": "Conv(1,3,3,p1) → ReLU → MaxPool(2) → Conv(3,6,3,p1) → ReLU → MaxPool(2) → Flatten → Linear(24,10)",
}

README_TAIL = """
Files per model `NAME`:

- `NAME.onnx` — legacy TorchScript ONNX exporter, opset {opset}, input `input`, output `logits`,
  dynamic batch dimension `batch`. BatchNorm is kept as a `BatchNormalization` node (not fused).
  `digits_lenet`'s two `MaxPool` nodes are what lipcert rewrites into ReLU trees: its
  "activation neurons" count those (3 ReLU neurons per pooled output).
- `NAME.ts` — TorchScript archive (`torch.jit.trace`).
- `NAME.pt2` — `torch.export` program with a dynamic batch dimension.
- `NAME.state_dict.pt` — `torch.save(model.state_dict())`; load into the class from `architectures.py`.
- `NAME.pickle.pt` — `torch.save(model)`, a full pickle (to test that loaders refuse pickles
  unless trusted). Unpickling needs `sample_models/` on `sys.path` (classes live in `architectures`).

Regenerate (deterministic, single-threaded, a few seconds on a CPU):

    python sample_models/train.py [--out DIR]
"""


def write_readme(out: Path, rows: list[tuple[str, float, dict[str, int]]]) -> None:
    lines = [README_HEAD]
    for name, acc, neurons in rows:
        detail = ", ".join(f"{n} {k}" for k, n in neurons.items())
        total = sum(neurons.values())
        lines.append(f"| `{name}` | `{MODELS[name].__name__}` | {ARCH_TEXT[name]} | {acc:.4f} | {total} ({detail}) |\n")
    lines.append(README_TAIL.format(opset=OPSET))
    (out / "README.md").write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    configure_determinism()
    x_tr, y_tr, x_te, y_te = load_data()
    rows = []
    for name in MODELS:
        model = train_model(name, x_tr, y_tr)
        acc = accuracy(model, x_te, y_te)
        # Batch of 2 so tracing/export do not specialise the batch dimension to 1; clone so that
        # torch.export's saved sample input holds 2 rows, not the whole test set's storage.
        export_all(model, name, args.out, x_te[:2].clone())
        verify_exports(model, name, args.out, x_te)
        rows.append((name, acc, count_neurons(model)))
        print(f"{name}: test accuracy {acc:.4f}")
    write_readme(args.out, rows)
    seconds = time.perf_counter() - start
    print(f"wrote {len(MODELS) * len(EXPORT_SUFFIXES)} model files + README.md to {args.out} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
