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
from lipcert.partition.plan import GroupPlan, Plan, group_network, group_tiles
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


def prepare_groups(net: Network, plan: Plan, settings: SolverSettings) -> list[PreparedGroup]:
    return [_prepare(net, k, group, plan, settings) for k, group in enumerate(plan.groups)]


def _prepare(net: Network, index: int, group: GroupPlan, plan: Plan, settings: SolverSettings) -> PreparedGroup:
    gnet = group_network(net, group, plan)
    tiles = tuple(extract_tile(gnet, rows) for rows in group_tiles(net, group, plan))
    method = plan.method.removeprefix("lipsdp-")
    combine = "single" if len(tiles) == 1 else plan.combine
    if combine == "coupled" and method != "neuron":
        combine = "overlap"  # the coupled SDP splits per-neuron multipliers; see README
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
