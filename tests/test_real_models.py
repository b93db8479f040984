"""lipcert's default certificate on every real model in ../shared/models, against its published lower bound.

Slow (minutes per model on 2 cores): `make test-slow` runs it. The fast suite checks the naive
bound on the same models (test_naive.py) and every mode on small networks.
"""

from __future__ import annotations

import pytest

from lipcert.estimate import EstimateOptions, estimate
from tests.conftest import MODELS_DIR, load_cached, published_lower_bounds, requires_shared_models, shared_model_names


@pytest.mark.slow
@requires_shared_models
@pytest.mark.parametrize("name", shared_model_names())
def test_default_certificate_is_above_the_published_lower_bound(name: str) -> None:
    loaded = load_cached(str(MODELS_DIR / name))
    cert = estimate(loaded, EstimateOptions(workers=2))
    assert cert.bound >= published_lower_bounds()[name]
