"""From a loaded model to a certificate: plan, prepare blocks, solve (with reuse), combine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lipcert.blocks import PreparedGroup, distinct_jobs, prepare_groups
from lipcert.combine import RULES, combine_depth
from lipcert.defaults import DEFAULT_COMBINE, DEFAULT_MAX_BLOCK_SIZE, DESCENT_SECONDS, SolverSettings
from lipcert.errors import BadInputError, ModelTooLargeError
from lipcert.execute import run_jobs
from lipcert.jobs import BlockOutcome
from lipcert.load import LoadedModel
from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.outputs import select_outputs
from lipcert.partition.plan import (
    Plan,
    auto_plan,
    couple_across_groups,
    load_plan,
    plan_block_sizes,
    solved_block_sizes,
    split_plan,
    whole_plan,
)
from lipcert.result import BlockResult, Certificate, GroupResult
from lipcert.sdp.sequential import sequential_bound
from lipcert.vocabulary import Combine, GroupRule, Method, choices


@dataclass(frozen=True)
class EstimateOptions:
    """What to certify and how. Strings are accepted for method and combine (e.g. "lipsdp-layer")."""

    method: Method | None = None  # None: the plan's, else lipsdp-neuron
    split: tuple[int, int] | None = None
    plan_path: Path | None = None
    combine: Combine | None = None  # None: the plan's, else DEFAULT_COMBINE
    solver: dict | None = None  # overrides of the plan's solver settings (eps, max_iters, time_limit, warm_start)
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
    workers: int = 1
    scheduler: str | None = None
    cache_dir: Path | None = None
    selection: np.ndarray | None = None  # (k, n_y): certify x -> selection @ f(x) instead of f
    selection_label: str = "all outputs"
    chordal: bool = True  # False: every block one PSD constraint (benchmarks compare against it)

    def __post_init__(self) -> None:
        for name, kind in (("method", Method), ("combine", Combine)):
            value = getattr(self, name)
            if value is None:
                continue
            if value not in kind._value2member_map_:
                raise BadInputError(f"--{name} '{value}' is not one of {choices(kind)}")
            object.__setattr__(self, name, kind(value))


ProgressCallback = Callable[[BlockOutcome, int, int], None]  # outcome, done, total


def estimate(model: LoadedModel, options: EstimateOptions, progress: ProgressCallback | None = None) -> Certificate:
    return estimate_many(model, [options], progress)[0]


@dataclass(frozen=True)
class _Prepared:
    """One certificate's plan and blocks, before solving."""

    options: EstimateOptions
    net: Network
    plan: Plan
    groups: list[PreparedGroup]


def estimate_many(
    model: LoadedModel, options: list[EstimateOptions], progress: ProgressCallback | None = None
) -> list[Certificate]:
    """Certificates for several option sets (e.g. every class pair) from one solve pass.

    Every distinct block of every certificate goes to the executor at once, so blocks
    shared between them (all groups before the output map) are solved once, and blocks of
    different certificates run in parallel. The executor and cache of options[0] are used.
    """
    start = time.perf_counter()
    done: dict[int, Certificate] = {}
    prepared: list[tuple[int, _Prepared]] = []
    for k, opts in enumerate(options):
        net = model.network if opts.selection is None else select_outputs(model.network, opts.selection)
        plan = choose_plan(net, opts)
        if plan.method is Method.NAIVE and opts.split is None and opts.plan_path is None:
            done[k] = _naive_certificate(model, net, plan, opts, start)
            continue
        plan, target = plan_to_run(net, plan, opts)
        _check_block_sizes(net, plan, opts)
        settings = resolve_settings(plan, opts)
        groups = prepare_groups(net, plan, settings, opts.max_block_size, target, opts.chordal)
        prepared.append((k, _Prepared(opts, net, plan, groups)))
    if prepared:
        every_group = [g for _, p in prepared for g in p.groups]
        outcomes, cached = _solve(every_group, prepared[0][1].options, progress)
        chain_seconds = DESCENT_SECONDS / len(prepared)  # e.g. 45 class pairs share one budget
        for k, p in prepared:
            done[k] = _certificate(model, p, outcomes, cached, start, chain_seconds)
    return [done[k] for k in range(len(options))]


def _naive_certificate(
    model: LoadedModel, net: Network, plan: Plan, opts: EstimateOptions, start: float
) -> Certificate:
    block = _whole_naive(net)
    return Certificate(
        model=str(model.path),
        sha256=model.sha256,
        bound=block.bound,
        method=plan.method,
        combine=None,
        plan="whole network",
        blocks=(block,),
        seconds=time.perf_counter() - start,
        input_shape=net.input_shape,
        output_shape=net.output_shape,
        notes=("naive: product of certified norms over the whole network",),
        groups=(GroupResult(0, "whole network", (1,), GroupRule.SINGLE, block.bound),),
        selection=opts.selection_label,
    )


def _certificate(
    model: LoadedModel,
    p: _Prepared,
    outcomes: dict[str, BlockOutcome],
    cached: int,
    start: float,
    chain_seconds: float = DESCENT_SECONDS,
) -> Certificate:
    _, reused = distinct_jobs(p.groups)
    blocks, bounds, notes = _combine_groups(p.groups, outcomes)
    group_results = tuple(GroupResult(g.index, g.label, g.plan.tiling, g.rule, b) for g, b in zip(p.groups, bounds))
    bound, chain_notes = whole_chain_bound(p.net, p.plan, len(p.groups), combine_depth(bounds), chain_seconds)
    notes += chain_notes
    return Certificate(
        model=str(model.path),
        sha256=model.sha256,
        bound=bound,
        method=p.plan.method,
        combine=p.plan.combine if p.plan.method is not Method.NAIVE else None,
        plan=describe(p.plan),
        blocks=tuple(blocks),
        seconds=time.perf_counter() - start,
        input_shape=p.net.input_shape,
        output_shape=p.net.output_shape,
        notes=(*p.plan.warnings, *notes, f"identical-block reuse saved {reused} solves"),
        groups=group_results,
        cached_blocks=cached,
        selection=p.options.selection_label,
    )


def whole_chain_bound(
    net: Network, plan: Plan, n_groups: int, product: float, seconds: float = DESCENT_SECONDS
) -> tuple[float, list[str]]:
    """The default over several depth groups of a chain also tries one whole-network point.

    Multiplying group bounds loses the coupling between groups; on a chain,
    lipcert.sdp.sequential gives a verified whole-network bound in seconds (eran 9x200:
    331969 against the product's 729699). Both are proven, so the smaller is certified.
    Explicit combination modes stay as they are, so that they can be compared.
    """
    if n_groups < 2 or plan.combine is not Combine.AUTO or plan.method is Method.NAIVE:
        return product, []
    start = time.perf_counter()
    found = sequential_bound(net, seconds)
    if found is None or not found.certified:
        return product, []
    what = (
        f"whole network: layer multipliers from the chain recursion, rescaled per layer and verified on the "
        f"full LMI, give {found.bound:.6g} ({time.perf_counter() - start:.1f} s)"
    )
    if found.bound < product:
        return found.bound, [f"{what}, below the product of the depth groups {product:.6g}: the bound is this"]
    return product, [f"{what}, not below the product of the depth groups {product:.6g}"]


def choose_plan(net: Network, options: EstimateOptions) -> Plan:
    """--plan FILE, else --split RxC, else the automatic plan; CLI choices override the file's."""
    if options.plan_path is not None:
        plan = load_plan(options.plan_path, net)
    elif options.split == (1, 1):
        plan = whole_plan(net)  # --split 1x1 is the full LipSDP: one block, no depth cuts
    elif options.split is not None:
        plan = split_plan(net, *options.split, max_block_size=options.max_block_size)
    else:
        plan = auto_plan(net, options.max_block_size, chordal=options.chordal)
    overrides = {}
    if options.method is not None:
        overrides["method"] = options.method
    if options.combine is not None or options.plan_path is None:
        overrides["combine"] = options.combine or DEFAULT_COMBINE
    return replace(plan, **overrides) if overrides else plan


def plan_to_run(net: Network, plan: Plan, options: EstimateOptions) -> tuple[Plan, int | None]:
    """The plan as it is solved, and the chordal merge target of its one block (None: none forced).

    `coupled` over several depth groups becomes one block over chordal cliques where that fits
    (partition.auto.couple_across_groups); everything else runs as planned.
    """
    return couple_across_groups(net, plan, options.max_block_size) if options.chordal else (plan, None)


def resolve_settings(plan: Plan, options: EstimateOptions) -> SolverSettings:
    solver = {**plan.solver, **(options.solver or {})}
    return SolverSettings(
        eps=float(solver["eps"]),
        max_iters=int(solver["max_iters"]),
        time_limit_secs=float(solver["time_limit"] or 0.0),
        warm_start=bool(solver["warm_start"]),
    )


def describe(plan: Plan) -> str:
    parts = []
    for group in plan.groups:
        tiling = "x".join(str(t) for t in group.tiling) if group.grid else f"{group.parts} part(s)"
        parts.append(f"{group.label} {tiling}")
    return "; ".join(parts)


def _whole_naive(net: Network) -> BlockResult:
    start = time.perf_counter()
    bound = naive_bound(net)
    return BlockResult(0, 0, net.lmi_size, bound, time.perf_counter() - start, "naive")


def effective_lmi_size(net: Network) -> int:
    """The LMI side SCS sees for a whole block: inputs compress to the rows reading them (MATH.md §2)."""
    from lipcert.partition.plan import block_size

    return block_size(net)


def _check_block_sizes(net: Network, plan: Plan, options: EstimateOptions) -> None:
    """Refuse before solving when a block is above the limit, with the size and a way out."""
    if plan.method is Method.NAIVE:
        return
    budget = options.max_block_size
    solved = solved_block_sizes(net, plan, budget if options.chordal else None)
    for group, sizes, side in zip(plan.groups, plan_block_sizes(net, plan), solved):
        if side > budget:
            largest = int(max(sizes))
            whole = len(plan.groups) == 1 and group.n_tiles == 1
            what = "the full LipSDP matrix" if whole else f"a block of group {group.label}"
            raise ModelTooLargeError(
                f"{what} would be {largest}x{largest}, above the block limit of {budget} "
                "(--max-block-size), and no chordal decomposition of it fits that limit; use a finer "
                "--split (e.g. --split 2x2) or leave out --split for the automatic plan"
            )


def _solve(
    groups: list[PreparedGroup], options: EstimateOptions, progress: ProgressCallback | None
) -> tuple[dict[str, BlockOutcome], int]:
    """Outcomes by job key, and how many distinct blocks came from the on-disk cache."""
    jobs, _ = distinct_jobs(groups)
    cache = None
    if options.cache_dir is not None:
        from lipcert.cache import BlockCache

        cache = BlockCache(options.cache_dir)
    outcomes: dict[str, BlockOutcome] = {}
    todo = []
    for job in jobs:
        hit = cache.get(job.key) if cache else None
        if hit is not None:
            outcomes[job.key] = hit
        else:
            todo.append(job)
    total, done = len(jobs), len(outcomes)
    cached = len(outcomes)

    def on_done(outcome: BlockOutcome) -> None:
        nonlocal done
        done += 1
        if cache is not None:
            cache.put(outcome)
        if progress is not None:
            progress(outcome, done, total)

    outcomes.update(run_jobs(todo, options.workers, options.scheduler, on_done))
    return outcomes, cached


def _combine_groups(
    prepared: list[PreparedGroup], outcomes: dict[str, BlockOutcome]
) -> tuple[list[BlockResult], list[float], list[str]]:
    results: list[BlockResult] = []
    bounds: list[float] = []
    notes: list[str] = []
    seen: set[str] = set()
    for group in prepared:
        group_outcomes = [outcomes[job.key] for job in group.jobs]
        for tile, (job, outcome) in enumerate(zip(group.jobs, group_outcomes)):
            reused = job.key in seen
            seen.add(job.key)
            results.append(_block_result(group.index, tile, outcome, reused))
        bound = _combine_group(group, group_outcomes)
        naive = naive_bound(group.net)
        if naive < bound:  # both are sound; report the tighter, and say so
            notes.append(f"group {group.label}: the naive bound {naive:.6g} beat {group.rule} {bound:.6g}")
            bound = naive
        bounds.append(bound)
    return results, bounds, notes


def _combine_group(group: PreparedGroup, outcomes: list[BlockOutcome]) -> float:
    values = [o.bound for o in outcomes]
    return RULES[group.rule].bound(values, [t.input_index for t in group.tiles], group.net.n_x)


def _block_result(group: int, tile: int, outcome: BlockOutcome, reused: bool) -> BlockResult:
    return BlockResult(
        group=group,
        tile=tile,
        size=outcome.size,
        bound=outcome.bound,
        seconds=0.0 if reused else outcome.seconds,
        source=outcome.source,
        reused=reused,
        key=outcome.key,
        raw_objective=outcome.raw_objective,
        fallback=outcome.fallback,
    )
