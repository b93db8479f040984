"""From a partition plan to the blocks to solve: depth groups, their tiles, and jobs.

Identical blocks (interior tiles of a convolution) share a job key, so each distinct
block is solved once and its verified result reused (MATH.md §4, "Identical blocks").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipcert.combine import RULES, Solves, pou_weights, resolve_rule
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE, SolverSettings
from lipcert.jobs import BlockJob, job_key
from lipcert.network.form import Network
from lipcert.partition.decompose import block_decomposition
from lipcert.partition.plan import GroupPlan, Plan, group_network, group_tiles
from lipcert.partition.tiles import Tile, block_key, extract_tile
from lipcert.vocabulary import GroupRule, Method


@dataclass(frozen=True)
class PreparedGroup:
    index: int
    plan: GroupPlan
    net: Network  # the depth group as a network of its own
    tiles: tuple[Tile, ...]
    jobs: tuple[BlockJob, ...]  # one per tile (in tile order), or one for the whole group
    rule: GroupRule  # how this group's tile results combine

    @property
    def label(self) -> str:
        return self.plan.label


def prepare_groups(
    net: Network,
    plan: Plan,
    settings: SolverSettings,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    clique_target: int | None = None,
    chordal: bool = True,
    naive_groups: set[int] | None = None,
) -> list[PreparedGroup]:
    """The plan's groups, tiles and jobs. clique_target forces a one-block plan's chordal solve;
    chordal=False solves every block as one PSD constraint; naive_groups (indices) are bounded
    naively as one block (the automatic plan's groups that fit no tiling)."""
    naive_groups = naive_groups or set()
    return [
        _naive_group(net, k, group, plan, settings)
        if k in naive_groups
        else _prepare(net, k, group, plan, settings, max_block_size, clique_target, chordal)
        for k, group in enumerate(plan.groups)
    ]


def _naive_group(net: Network, index: int, group: GroupPlan, plan: Plan, settings: SolverSettings) -> PreparedGroup:
    gnet = group_network(net, group, plan)
    tile = extract_tile(gnet, np.arange(gnet.n_y))
    job = BlockJob(job_key(block_key(gnet), Method.NAIVE, settings, None), gnet, Method.NAIVE, settings)
    return PreparedGroup(index, group, gnet, (tile,), (job,), GroupRule.SINGLE)


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
    method = Method(plan.method)
    rule = resolve_rule(plan.combine, method, [t.net.lmi_size for t in tiles], max_block_size)
    budget = max_block_size if chordal else None  # None: no chordal decisions
    solves = RULES[rule].solves
    if solves is Solves.GROUP:
        jobs = (_job(gnet, method, settings, None, budget, clique_target),)  # compressed unless chordal
    elif solves is Solves.COUPLED:
        jobs = (_coupled_job(gnet, method, tiles, settings),)
    elif solves is Solves.WEIGHTED_TILES:
        weights = pou_weights([t.input_index for t in tiles], gnet.n_x)
        jobs = tuple(_job(t.net, method, settings, w, budget) for t, w in zip(tiles, weights))
    else:
        jobs = tuple(_job(t.net, method, settings, None, budget) for t in tiles)
    return PreparedGroup(index, group, gnet, tiles, jobs, rule)


def _job(
    block: Network,
    method: Method,
    settings: SolverSettings,
    weights: np.ndarray | None,
    max_block_size: int | None,
    target: int | None = None,
) -> BlockJob:
    key = block_key(block)
    if target is None and max_block_size is not None and method is Method.NEURON and weights is None:
        choice = block_decomposition(block, max_block_size, key)
        target = choice.target if choice is not None else None
    solve_key = job_key(key, method, settings, weights, target)
    return BlockJob(solve_key, block, method, settings, weights, clique_target=target)


def _coupled_job(gnet: Network, method: Method, tiles: tuple[Tile, ...], settings: SolverSettings) -> BlockJob:
    keys = "|".join([block_key(gnet), *(block_key(t.net) for t in tiles)])
    return BlockJob(job_key(keys, "coupled", settings, None), gnet, method, settings, tiles=tiles)


def distinct_jobs(groups: list[PreparedGroup]) -> tuple[list[BlockJob], int]:
    """The jobs to run, each key once, and how many blocks reuse an earlier one's result."""
    seen: dict[str, BlockJob] = {}
    total = 0
    for group in groups:
        for job in group.jobs:
            total += 1
            seen.setdefault(job.key, job)
    return list(seen.values()), total - len(seen)
