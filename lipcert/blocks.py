"""From a partition plan to the blocks to solve: depth groups, their tiles, and jobs.

Identical blocks (interior tiles of a convolution) share a job key, so each distinct
block is solved once and its verified result reused (MATH.md §4, "Identical blocks").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipcert.execute import BlockJob, job_key
from lipcert.network.form import Network
from lipcert.partition.combine import pou_weights
from lipcert.partition.plan import DEFAULT_MAX_BLOCK_SIZE, GroupPlan, Plan, group_network, group_tiles
from lipcert.partition.tiles import Tile, block_key, extract_tile
from lipcert.sdp.solve import SolverSettings


@dataclass(frozen=True)
class PreparedGroup:
    index: int
    plan: GroupPlan
    net: Network  # the depth group as a network of its own
    tiles: tuple[Tile, ...]
    jobs: tuple[BlockJob, ...]  # one per tile (in tile order), or one for a coupled group
    combine: str  # how this group's tile results combine ("single" for one tile)

    @property
    def label(self) -> str:
        return self.plan.label


# combine "auto" couples a group's tiles when its one SDP costs at most this many SCS iterations of
# blocks at the size budget (the cost of an iteration is cubic in each PSD block's side). Above it,
# the tiles are solved as independent blocks (reused where identical, run in parallel) and
# combined by "overlap": on the CIFAR nets the coupled SDP of 64 tiles of ~440 took over 50 min.
COUPLED_BUDGET = 4


def prepare_groups(
    net: Network, plan: Plan, settings: SolverSettings, max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
) -> list[PreparedGroup]:
    return [_prepare(net, k, group, plan, settings, max_block_size) for k, group in enumerate(plan.groups)]


def resolve_combine(combine: str, method: str, tiles: tuple[Tile, ...], max_block_size: int) -> str:
    """The mode a group's tiles actually combine by ("single" for one tile)."""
    if len(tiles) == 1:
        return "single"
    if combine == "auto":
        cost = sum(float(t.net.lmi_size) ** 3 for t in tiles)
        combine = "coupled" if cost <= COUPLED_BUDGET * float(max_block_size) ** 3 else "overlap"
    if combine == "coupled" and method != "neuron":
        return "overlap"  # the coupled SDP splits per-neuron multipliers; see README
    return combine


def _prepare(
    net: Network, index: int, group: GroupPlan, plan: Plan, settings: SolverSettings, max_block_size: int
) -> PreparedGroup:
    gnet = group_network(net, group, plan)
    tiles = tuple(extract_tile(gnet, rows) for rows in group_tiles(net, group, plan))
    method = plan.method.removeprefix("lipsdp-")
    combine = resolve_combine(plan.combine, method, tiles, max_block_size)
    if combine == "single":
        jobs = (_job(gnet, method, settings, None),)  # whole group: input compression applies
    elif combine == "coupled":
        jobs = (_coupled_job(gnet, tiles, settings),)
    elif combine == "pou":
        weights = pou_weights([t.input_index for t in tiles], gnet.n_x)
        jobs = tuple(_job(t.net, method, settings, w) for t, w in zip(tiles, weights))
    else:
        jobs = tuple(_job(t.net, method, settings, None) for t in tiles)
    return PreparedGroup(index, group, gnet, tiles, jobs, combine)


def _job(block: Network, method: str, settings: SolverSettings, weights: np.ndarray | None) -> BlockJob:
    key = job_key(block_key(block), method, settings, weights)
    return BlockJob(key, block, method, settings, weights)


def _coupled_job(gnet: Network, tiles: tuple[Tile, ...], settings: SolverSettings) -> BlockJob:
    keys = "|".join([block_key(gnet), *(block_key(t.net) for t in tiles)])
    return BlockJob(job_key(keys, "coupled", settings, None), gnet, "coupled", settings, tiles=tiles)


def distinct_jobs(groups: list[PreparedGroup]) -> tuple[list[BlockJob], int]:
    """The jobs to run, each key once, and how many blocks reuse an earlier one's result."""
    seen: dict[str, BlockJob] = {}
    total = 0
    for group in groups:
        for job in group.jobs:
            total += 1
            seen.setdefault(job.key, job)
    return list(seen.values()), total - len(seen)
