"""From a partition plan to the blocks to solve: depth groups, their tiles, and jobs.

Identical blocks (interior tiles of a convolution) share a job key, so each distinct
block is solved once and its verified result reused (MATH.md §4, "Identical blocks").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipcert.execute import BlockJob, job_key
from lipcert.network.form import Network
from lipcert.partition.block_sizes import block_size
from lipcert.partition.combine import pou_weights
from lipcert.partition.plan import DEFAULT_MAX_BLOCK_SIZE, GroupPlan, Plan, group_network, group_tiles
from lipcert.partition.tiles import Tile, block_key, extract_tile
from lipcert.sdp.chordal import ChordalChoice, chordal_choice
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
    net: Network,
    plan: Plan,
    settings: SolverSettings,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    clique_target: int | None = None,
    chordal: bool = True,
) -> list[PreparedGroup]:
    """The plan's groups, tiles and jobs. clique_target forces a one-block plan's chordal solve;
    chordal=False solves every block as one PSD constraint."""
    return [
        _prepare(net, k, group, plan, settings, max_block_size, clique_target, chordal)
        for k, group in enumerate(plan.groups)
    ]


def block_decomposition(block: Network, max_block_size: int) -> ChordalChoice | None:
    """How a block is solved: over chordal cliques (when that pays and fits), else None (one constraint)."""
    return _decomposition(block_key(block), block, max_block_size)


_DECISIONS: dict[tuple[str, int], ChordalChoice | None] = {}


def _decomposition(key: str, block: Network, max_block_size: int) -> ChordalChoice | None:
    # Interior tiles repeat, and the minimum-degree ordering costs up to seconds: decide once per block.
    if (key, max_block_size) not in _DECISIONS:
        _DECISIONS[key, max_block_size] = chordal_choice(block, max_block_size, block_size(block))
    return _DECISIONS[key, max_block_size]


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
    net: Network,
    index: int,
    group: GroupPlan,
    plan: Plan,
    settings: SolverSettings,
    max_block_size: int,
    clique_target: int | None = None,
    chordal: bool = True,
) -> PreparedGroup:
    gnet = group_network(net, group, plan)
    tiles = tuple(extract_tile(gnet, rows) for rows in group_tiles(net, group, plan))
    method = plan.method.removeprefix("lipsdp-")
    combine = resolve_combine(plan.combine, method, tiles, max_block_size)
    budget = max_block_size if chordal else None  # None: no chordal decisions
    if combine == "single":
        jobs = (_job(gnet, method, settings, None, budget, clique_target),)  # compressed unless chordal
    elif combine == "coupled":
        jobs = (_coupled_job(gnet, tiles, settings),)
    elif combine == "pou":
        weights = pou_weights([t.input_index for t in tiles], gnet.n_x)
        jobs = tuple(_job(t.net, method, settings, w, budget) for t, w in zip(tiles, weights))
    else:
        jobs = tuple(_job(t.net, method, settings, None, budget) for t in tiles)
    return PreparedGroup(index, group, gnet, tiles, jobs, combine)


def _job(
    block: Network,
    method: str,
    settings: SolverSettings,
    weights: np.ndarray | None,
    max_block_size: int | None,
    target: int | None = None,
) -> BlockJob:
    key = block_key(block)
    if target is None and max_block_size is not None and method == "neuron" and weights is None:
        choice = _decomposition(key, block, max_block_size)
        target = choice.target if choice is not None else None
    solve_key = job_key(key, method, settings, weights, target)
    return BlockJob(solve_key, block, method, settings, weights, clique_target=target)


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
