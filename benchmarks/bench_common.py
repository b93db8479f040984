"""Helpers shared by the benchmark scripts: quiet loading, selected-output lower bounds, peers' values.

Imported as a sibling module (`from bench_common import ...`): every script in benchmarks/ runs as
`python benchmarks/<script>.py`, which puts this folder first on sys.path.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS_DIR = SHARED / "models"
ANCHORS_DIR = SHARED / "anchors"
SAMPLES_DIR = REPO / "sample_models"

# ../shared/anchors/README.md, glipsdp/: logit 7 (0-based) w.r.t. the standardised input, MOSEK.
# file: (exact product, LipSDP-Neuron, GLipSDP, LipLT, sampled lower bound)
GLIPSDP_PEERS = {
    "digits_fnn2_seed0.onnx": (7.0922, 5.1097, 5.1097, 6.0642, 4.1054),
    "digits_fnn3_seed0.onnx": (14.694, 9.7286, 9.7286, 12.050, 6.8233),
    "digits_cnn2_seed0.onnx": (11.604, 5.1111, 10.579, 7.1208, 2.6398),
    "digits_cnn3_seed0.onnx": (33.920, 11.2005, 30.719, 19.667, 3.1689),
}
# The peers' LipSDP, LipLT and sampled lower bound of the CNNs describe a scrambled network; LipLT re-computed
# on the real networks (these ONNX files):
SCRAMBLED = {"digits_cnn2_seed0.onnx": 9.197, "digits_cnn3_seed0.onnx": 25.18}
# ../shared/anchors/README.md, lipsdp/: the whole output, LipSDP README (MOSEK) and ECLipsE-Fast measured there.
LIPSDP_PEERS = {
    "random_2-10-30-20-2.onnx": {"neuron": 36.482, "layer": 39.839, "product": 43.306, "eclipse-fast": 39.90},
    "mnist_784-50-10.onnx": {"neuron": 24.366, "layer": 26.256, "product": 31.504, "eclipse-fast": 26.81},
}


def load(path: Path):  # noqa: ANN201 - LoadedModel; lipcert (and torch) are imported lazily
    from lipcert.load import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(path)


def selected_lower(loaded, row: np.ndarray | None = None) -> float:  # noqa: ANN001 - LoadedModel
    """lipcert.lower's seeded hill climbing on x -> row @ f(x) (on f itself when row is None)."""
    from lipcert.lower import lower_bound
    from lipcert.outputs import selected_module

    module = loaded.module if row is None else selected_module(loaded.module, row)
    return lower_bound(module, loaded.input_shape).value


@cache
def published_lower_bounds() -> dict[str, float]:
    """The 'lower bound' column of ../shared/models/README.md (max ||J|| over 16 inputs), by file name."""
    readme = MODELS_DIR / "README.md"
    if not readme.exists():
        return {}
    bounds = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and cells[1].endswith(".onnx") and re.fullmatch(r"[0-9.]+", cells[5]):
            bounds[cells[1]] = float(cells[5])
    return bounds


def chain_weights(net, row: np.ndarray | None = None):  # noqa: ANN001, ANN201 - Network -> weights, slopes
    """A plain fully connected chain x -> W0 -> φ -> W1 -> ... -> WL read off the network form.

    Returns (dense weights, alphas, betas), or None when the form is not such a chain (a direct
    input-output term C, skip connections, or an activation reading anything but the previous layer).
    With `row`, the last weight is row @ WL: the chain of x -> row @ f(x).
    """
    layers = net.layers
    if not layers or net.C.nnz:
        return None
    A, B, D = net.A.tocsr(), net.B.tocsr(), net.D.tocsr()
    first, last = layers[0], layers[-1]
    if A[first.stop :].nnz:
        return None
    weights = [A[first.start : first.stop].toarray()]
    counted = 0
    for prev, layer in zip(layers[:-1], layers[1:]):
        block = B[layer.start : layer.stop, prev.start : prev.stop]
        counted += block.nnz
        weights.append(block.toarray())
    out = D[:, last.start : last.stop]
    if counted != B.nnz or out.nnz != D.nnz:
        return None
    final = out.toarray()
    weights.append(final if row is None else np.atleast_2d(row) @ final)
    return weights, [float(layer.alpha) for layer in layers], [float(layer.beta) for layer in layers]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
