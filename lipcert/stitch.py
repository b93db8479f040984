"""A plan's solved blocks, stitched into one per-neuron λ for the whole network (MATH.md §5).

Within a depth group, a neuron held by several tiles gets the sum of their multipliers. That is
the coupled argument (MATH.md §4d): the tile matrices, summed, are the group's LMI with
λ_j = Σ_i λ_ij, the output rows split and the input term Σ_i ρ_i I_{K_i} ⪯ (max_k Σ_{i∋k} ρ_i) I,
so the stitched λ certifies at least the overlap combination of the same tiles.

Across depth groups, group g's multipliers are scaled by s_g = Π_{h>g} ρ_h (ρ_h its bound
squared): with those scales the groups' input and output terms telescope, so the stitched λ
certifies at most the product of the group bounds; a coordinate search on the scales against
the exact ρ* (sequential.descend_layer_scales over the groups' neurons) then improves on it.
The result is a start for the whole-network descent (lipcert.sdp.whole), never a bound itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lipcert.blocks import PreparedGroup
from lipcert.combine import RULES, Solves
from lipcert.jobs import BlockOutcome
from lipcert.network.form import Network
from lipcert.partition.plan import Plan, group_span

FLOOR = 1e-6  # relative to its layer's mean: a zero multiplier would leave R(λ) singular


def group_neurons(net: Network, plan: Plan) -> list[slice | None]:
    """Per plan group, its neurons in the whole network (None for the output group, which has none)."""
    out: list[slice | None] = []
    for group in plan.groups:
        if group.output:
            out.append(None)
            continue
        first, last = group_span(net, group)
        out.append(slice(net.layers[first].start, net.layers[last].stop))
    return out


def stitched_multipliers(
    net: Network,
    plan: Plan,
    groups: Sequence[PreparedGroup],
    outcomes: dict[str, BlockOutcome],
    group_bounds: Sequence[float],
) -> np.ndarray | None:
    """The plan's block multipliers as one per-neuron λ of `net`, or None when a group has none."""
    lam = np.zeros(net.n_w)
    scale = 1.0
    spans = group_neurons(net, plan)
    for group, span, bound in reversed(list(zip(groups, spans, group_bounds))):
        if span is not None:
            local = _group_multipliers(group, outcomes)
            if local is None or local.size != span.stop - span.start:
                return None
            lam[span] = scale * local
        scale *= float(bound) ** 2
    return _floored(net, lam)


def _group_multipliers(group: PreparedGroup, outcomes: dict[str, BlockOutcome]) -> np.ndarray | None:
    """The group's per-neuron λ (its own network's neurons): its one block's, or its tiles' summed."""
    found = [outcomes[job.key].multipliers for job in group.jobs]
    if not found or any(lam is None for lam in found):
        return None
    if RULES[group.rule].solves in (Solves.GROUP, Solves.COUPLED):  # one job over the whole group
        return np.asarray(found[0], dtype=np.float64)
    total = np.zeros(group.net.n_w)
    for tile, lam in zip(group.tiles, found):
        total[tile.neuron_index] += np.asarray(lam, dtype=np.float64)
    return total


def _floored(net: Network, lam: np.ndarray) -> np.ndarray:
    for layer in net.layers:
        part = lam[layer.start : layer.stop]
        mean = float(part.mean()) if part.size else 0.0
        if mean <= 0:
            return lam  # a layer without multipliers: leave it to the caller's feasibility test
        lam[layer.start : layer.stop] = np.maximum(part, FLOOR * mean)
    return lam
