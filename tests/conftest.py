"""Shared fixtures. The helpers themselves live in tests/support.py, which the benchmarks share."""

from __future__ import annotations

from functools import cache

from tests.support import (  # noqa: F401 - re-exported for the tests that import them from here
    ANCHORS_DIR,
    MODELS_DIR,
    REPO,
    SAMPLES,
    SHARED,
    load_quietly,
    published_lower_bounds,
    requires_anchors,
    requires_shared_models,
    shared_model_names,
)


@cache
def load_cached(path: str, **kwargs):  # noqa: ANN003, ANN201 - a test helper over load_model
    return load_quietly(path, **kwargs)
