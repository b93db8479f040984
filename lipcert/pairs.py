"""Bounds for many selections of outputs (every class pair), sharing all the work they can.

Every selection is certified with the same plan in one solve pass (estimate_many), so blocks
that do not depend on the selection (all groups before the output map) are solved once, and
the blocks of different pairs run in parallel under --jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lipcert.errors import BadInputError
from lipcert.estimate import EstimateOptions, ProgressCallback, estimate_many
from lipcert.load import LoadedModel
from lipcert.outputs import all_pairs, pair_row
from lipcert.result import Certificate


@dataclass(frozen=True)
class PairBound:
    i: int
    j: int
    bound: float  # certified Lipschitz bound of f_i - f_j
    certificate: Certificate


def estimate_pairs(
    model: LoadedModel,
    options: EstimateOptions,
    pairs: list[tuple[int, int]] | None = None,
    progress: ProgressCallback | None = None,
) -> list[PairBound]:
    n_y = model.network.n_y
    if n_y < 2:
        raise BadInputError(f"{model.path}: class pairs need at least 2 outputs; the model has {n_y}")
    pairs = all_pairs(n_y) if pairs is None else pairs
    selected = [replace(options, selection=pair_row(n_y, i, j), selection_label=f"pair {i},{j}") for i, j in pairs]
    certificates = estimate_many(model, selected, progress)
    return [PairBound(i, j, cert.bound, cert) for (i, j), cert in zip(pairs, certificates)]
