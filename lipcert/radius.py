"""Certified L2 robustness radii from class-pair Lipschitz bounds.

If the top class t at x beats class j by m_j(x) = f_t(x) - f_j(x), and L_tj bounds the
Lipschitz constant of f_t - f_j, then for ||d|| < m_j / L_tj the margin stays positive.
So no perturbation smaller than r(x) = min_j m_j(x) / L_tj changes the prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lipcert.errors import BadInputError
from lipcert.load import check_readable
from lipcert.quiet import quiet_torch

MARGIN_SLACK = 1e-9  # relative: the logits are computed in float64, not exactly


@dataclass(frozen=True)
class Radii:
    predicted: np.ndarray  # (N,) top class
    margins: np.ndarray  # (N, n_y) f_top - f_j (0 for j = top)
    radius: np.ndarray  # (N,) certified L2 radius

    def certified_fraction(self, eps: float) -> float:
        """Inputs whose prediction provably holds for every perturbation of norm <= eps."""
        return float(np.mean(self.radius > eps)) if self.radius.size else 0.0


def load_inputs(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Inputs from .npy, .npz (array 'x' or 'inputs', or the only one) or .pt; shape (N, *input_shape)."""
    check_readable(path, "file of inputs")
    array = _read_array(path)
    n = int(np.prod(input_shape))
    if array.ndim >= 1 and array.size % n == 0 and (array.shape[1:] == input_shape or array.shape[1:] == (n,)):
        array = array.reshape(-1, *input_shape)
    elif array.shape == input_shape:
        array = array[None]
    else:
        raise BadInputError(
            f"{path}: inputs have shape {tuple(array.shape)}; the model expects (N, "
            f"{', '.join(map(str, input_shape))}) or (N, {n})"
        )
    if len(array) == 0:
        raise BadInputError(f"--inputs {path} holds no inputs (shape {tuple(array.shape)}): nothing to certify")
    bad = int(np.size(array) - np.isfinite(array).sum())
    if bad:
        raise BadInputError(f"{path}: the inputs hold {bad} NaN or infinite value(s)")
    return array.astype(np.float64)


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = [k for k in ("x", "inputs") if k in archive] or list(archive)
                if len(names) != 1 and names[0] not in ("x", "inputs"):
                    raise BadInputError(f"{path}: name the inputs 'x' or 'inputs' (found {', '.join(names)})")
                return np.asarray(archive[names[0]])
        if path.suffix == ".pt":
            data = torch.load(str(path), map_location="cpu", weights_only=True)
            data = data.get("x", data.get("inputs")) if isinstance(data, dict) else data
            if not isinstance(data, torch.Tensor):
                raise BadInputError(f"{path}: expected a tensor (or a dict with 'x' or 'inputs')")
            return data.detach().double().numpy()
    except BadInputError:
        raise
    except Exception as err:
        raise BadInputError(f"{path}: cannot read the inputs ({type(err).__name__}: {err})") from None
    raise BadInputError(f"{path}: inputs must be .npy, .npz or .pt files")


def logits(module: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    import copy

    with quiet_torch(), torch.no_grad():
        model = copy.deepcopy(module).double().eval()
        return model(torch.from_numpy(inputs)).reshape(len(inputs), -1).numpy()


def certified_radii(outputs: np.ndarray, pair_bounds: dict[tuple[int, int], float]) -> Radii:
    """Radii from the logits and the pair bounds (keyed by unordered (i, j), i < j)."""
    n, n_y = outputs.shape
    predicted = outputs.argmax(axis=1)
    margins = outputs[np.arange(n), predicted][:, None] - outputs
    safe = np.maximum(margins * (1.0 - MARGIN_SLACK) - MARGIN_SLACK, 0.0)
    radius = np.full(n, np.inf)
    for j in range(n_y):
        lips = np.array([pair_bounds[tuple(sorted((int(t), j)))] if t != j else np.inf for t in predicted])
        radius = np.minimum(radius, np.where(predicted == j, np.inf, safe[:, j] / lips))
    return Radii(predicted, margins, np.where(np.isinf(radius), 0.0, radius))


def read_pair_bounds(path: Path, sha256: str) -> dict[tuple[int, int], float]:
    """Pair bounds from `lipcert estimate --pairs all --format json`, checked against the model's hash."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(f"--bounds {path}: cannot read it as JSON ({err})") from None
    if not isinstance(data, dict) or data.get("kind") != "pairs":
        raise BadInputError(f"--bounds {path}: not a pair-bounds file (make one with estimate --pairs all)")
    if data.get("sha256") != sha256:
        raise BadInputError(
            f"--bounds {path} was made for another model (sha256 {str(data.get('sha256'))[:12]}..., "
            f"this model {sha256[:12]}...)"
        )
    try:
        found = {tuple(sorted((int(p["i"]), int(p["j"])))): float(p["bound"]) for p in data["pairs"]}
    except (KeyError, TypeError, ValueError):
        raise BadInputError(f"--bounds {path}: 'pairs' must be a list of {{i, j, bound}} entries") from None
    # A certified bound is a positive finite number: anything else would give NaN or infinite radii
    # (and invalid JSON), or certify inputs on the strength of nothing.
    bad = [f"{i},{j} ({bound})" for (i, j), bound in found.items() if not (np.isfinite(bound) and bound > 0)]
    if bad:
        raise BadInputError(f"--bounds {path}: pair bound(s) not a positive finite number: {', '.join(bad)}")
    return found
