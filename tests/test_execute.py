"""Executors agree bit for bit; the block cache returns exactly what was solved."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from lipcert.estimate import EstimateOptions, estimate
from tests.conftest import SAMPLES, load_cached

OPTIONS = EstimateOptions(split=(2, 2), combine="overlap")


@pytest.fixture(scope="module")
def loaded():  # noqa: ANN201
    return load_cached(str(SAMPLES / "digits_tanh.onnx"))


def test_local_pool_and_dask_agree_bit_for_bit(loaded) -> None:  # noqa: ANN001
    distributed = pytest.importorskip("distributed")
    one = estimate(loaded, replace(OPTIONS, workers=1))
    two = estimate(loaded, replace(OPTIONS, workers=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dask's own start-up chatter
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        try:
            dask = estimate(loaded, replace(OPTIONS, scheduler=cluster.scheduler_address))
        finally:
            cluster.close()
    assert one.bound == two.bound == dask.bound
    assert [b.bound for b in one.blocks] == [b.bound for b in two.blocks] == [b.bound for b in dask.blocks]


def test_cache_returns_what_was_solved(loaded, tmp_path: Path) -> None:  # noqa: ANN001
    options = replace(OPTIONS, workers=1, cache_dir=tmp_path)
    calls: list[int] = []
    first = estimate(loaded, options, lambda outcome, done, total: calls.append(done))
    again = estimate(loaded, options, lambda outcome, done, total: calls.append(-1))
    assert first.cached_blocks == 0 and again.cached_blocks == len(first.blocks) - first.reused_blocks
    assert -1 not in calls, "nothing is solved twice"
    assert again.bound == first.bound


def test_unreachable_scheduler_is_a_clear_error(loaded) -> None:  # noqa: ANN001
    from lipcert.errors import BadInputError

    pytest.importorskip("distributed")
    with pytest.raises(BadInputError, match="cannot reach the Dask scheduler"):
        estimate(loaded, replace(OPTIONS, scheduler="tcp://127.0.0.1:9"))
