"""From a loaded model to a certificate: plan, prepare blocks, solve (with reuse), combine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lipcert.blocks import PreparedGroup, distinct_jobs, prepare_groups
from lipcert.errors import BadInputError, ModelTooLargeError
from lipcert.execute import BlockOutcome, run_jobs
from lipcert.load import LoadedModel
from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.outputs import select_outputs
from lipcert.partition.combine import combine_depth, combine_overlap, combine_paper, combine_pou
from lipcert.partition.plan import GroupPlan, Plan, auto_plan, load_plan, split_plan
from lipcert.result import BlockResult, Certificate, GroupResult
from lipcert.sdp.sequential import DESCENT_SECONDS, sequential_bound
from lipcert.sdp.solve import SolverSettings

METHODS = ("naive", "lipsdp-neuron", "lipsdp-layer")
COMBINE_MODES = ("paper", "overlap", "pou", "coupled", "auto")
DEFAULT_MAX_BLOCK = 600  # LMI side per block: an SCS solve of seconds, not minutes, on 2 cores
DEFAULT_COMBINE = "auto"


@dataclass(frozen=True)
class EstimateOptions:
    method: str | None = None  # None: the plan's, else lipsdp-neuron
    split: tuple[int, int] | None = None
    plan_path: Path | None = None
    combine: str | None = None  # None: the plan's, else DEFAULT_COMBINE
    solver: dict | None = None  # overrides of the plan's solver settings (eps, max_iters, time_limit, warm_start)
    max_block_size: int = DEFAULT_MAX_BLOCK
    workers: int = 1
    scheduler: str | None = None
    cache_dir: Path | None = None
    selection: np.ndarray | None = None  # (k, n_y): certify x -> selection @ f(x) instead of f
    selection_label: str = "all outputs"
    chordal: bool = True  # False: every block one PSD constraint (benchmarks compare against it)


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
        if plan.method == "naive" and opts.split is None and opts.plan_path is None:
            done[k] = _naive_certificate(model, net, plan, opts, start)
            continue
        plan, target = couple_across_groups(net, plan, opts.max_block_size) if opts.chordal else (plan, None)
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
        groups=(GroupResult(0, "whole network", (1,), "single", block.bound),),
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
    group_results = tuple(GroupResult(g.index, g.label, g.plan.tiling, g.combine, b) for g, b in zip(p.groups, bounds))
    bound, chain_notes = whole_chain_bound(p.net, p.plan, len(p.groups), combine_depth(bounds), chain_seconds)
    notes += chain_notes
    return Certificate(
        model=str(model.path),
        sha256=model.sha256,
        bound=bound,
        method=p.plan.method,
        combine=p.plan.combine if p.plan.method != "naive" else None,
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
    if n_groups < 2 or plan.combine != "auto" or plan.method == "naive":
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
    if options.method is not None and options.method not in METHODS:
        raise BadInputError(f"--method '{options.method}' is not one of {', '.join(METHODS)}")
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


def couple_across_groups(net: Network, plan: Plan, max_block_size: int) -> tuple[Plan, int | None]:
    """`coupled` over several depth groups: the whole network as one SDP over chordal cliques.

    The product of group bounds loses what the cuts ignore (105.4 against the full 70.3
    on digits_chain at --split 2x2). The full LMI's chordal extension couples the groups
    exactly (lipcert.sdp.chordal); its cliques are merged up to the plan's largest block,
    so an SCS iteration costs about what the plan's blocks cost. Returns the plan to run
    and the merge target, or the plan unchanged (groups multiply) when the full LMI is too
    large to verify or its cliques do not fit max_block_size.
    """
    if plan.combine != "coupled" or plan.method != "lipsdp-neuron" or len(plan.groups) < 2:
        return plan, None
    from lipcert.partition.plan import plan_block_sizes
    from lipcert.sdp.chordal import MAX_CLIQUE, VERIFY_LIMIT, chordal_tree

    why = None
    limit = min(max_block_size, MAX_CLIQUE)
    if net.lmi_size > VERIFY_LIMIT:
        why = f"the full LMI ({net.lmi_size}) is above {VERIFY_LIMIT}, the largest verified in one piece"
    elif (largest := chordal_tree(net).largest) > limit:
        why = f"its chordal extension has a clique of {largest}, above {limit} (chordal solves use cliques up to that)"
    if why is not None:
        note = f"coupled: the depth groups multiply, because {why}"
        return replace(plan, warnings=(*plan.warnings, note)), None
    target = max(min(max(int(max(sizes)) for sizes in plan_block_sizes(net, plan)), limit), largest)
    note = (
        f"coupled: the {len(plan.groups)} depth groups are solved as one SDP over the cliques of the full "
        f"LMI's chordal extension, merged up to {target} (the plan's largest block); it equals the full LipSDP"
    )
    whole = replace(whole_plan(net), method=plan.method, combine=plan.combine, solver=plan.solver)
    return replace(whole, warnings=(*plan.warnings, note)), target


def whole_plan(net: Network) -> Plan:
    if not net.layers:
        raise BadInputError("the model has no activation layers: it is linear; use --method naive")
    return Plan((GroupPlan(net.layers[0].name, net.layers[-1].name, parts=1),))


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
    if plan.method == "naive":
        return
    from lipcert.partition.plan import plan_block_sizes

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


def solved_block_sizes(net: Network, plan: Plan, max_block_size: int | None) -> list[int]:
    """Per group, the side of the largest PSD constraint SCS will see.

    That is the largest block's LMI side, except for a one-block group above max_block_size
    that is solved over chordal cliques which fit it (blocks.block_decomposition): then the
    largest clique. max_block_size None: no chordal solves.
    """
    from lipcert.partition.plan import plan_block_sizes

    out = []
    for group, sizes in zip(plan.groups, plan_block_sizes(net, plan)):
        side = int(max(sizes))
        if max_block_size is not None and side > max_block_size:
            choice = _decomposition(net, plan, group, max_block_size)
            side = choice.largest if choice is not None else side
        out.append(side)
    return out


def _decomposition(net: Network, plan: Plan, group: GroupPlan, max_block_size: int):  # noqa: ANN202
    if group.n_tiles != 1 or plan.method != "lipsdp-neuron":
        return None
    from lipcert.blocks import block_decomposition
    from lipcert.partition.plan import group_network

    return block_decomposition(group_network(net, group, plan), max_block_size)


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
            notes.append(f"group {group.label}: the naive bound {naive:.6g} beat {group.combine} {bound:.6g}")
            bound = naive
        bounds.append(bound)
    return results, bounds, notes


def _combine_group(group: PreparedGroup, outcomes: list[BlockOutcome]) -> float:
    values = [o.bound for o in outcomes]
    if group.combine in ("single", "coupled"):
        return values[0]
    if group.combine == "paper":
        return combine_paper(values)
    if group.combine == "overlap":
        return combine_overlap(values, [t.input_index for t in group.tiles], group.net.n_x)
    from lipcert.linalg import round_up

    return combine_pou([round_up(v * v) for v in values])


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
    )
