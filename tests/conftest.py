"""Shared fixtures: where the real models live, their published lower bounds, loaded-model caches."""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"
SHARED = REPO.parent / "shared"
MODELS_DIR = SHARED / "models"
ANCHORS_DIR = SHARED / "anchors"

requires_shared_models = pytest.mark.skipif(
    not MODELS_DIR.is_dir(), reason=f"{MODELS_DIR} is absent: real-model tests read ../shared/models"
)
requires_anchors = pytest.mark.skipif(
    not ANCHORS_DIR.is_dir(), reason=f"{ANCHORS_DIR} is absent: anchor tests read ../shared/anchors"
)


def shared_model_names() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []


@cache
def published_lower_bounds() -> dict[str, float]:
    """The 'lower bound' column of ../shared/models/README.md, by file name."""
    text = (MODELS_DIR / "README.md").read_text(encoding="utf-8")
    bounds = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and cells[1].endswith(".onnx") and re.fullmatch(r"[0-9.]+", cells[5]):
            bounds[cells[1]] = float(cells[5])
    return bounds


@cache
def load_cached(path: str, **kwargs):  # noqa: ANN003, ANN201 - a test helper over load_model
    from lipcert.load import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(path, **kwargs)
