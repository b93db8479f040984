"""From a loaded model to a certificate: plan, prepare blocks, certify the whole network, solve, combine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lipcert.blocks import PreparedGroup, distinct_jobs, prepare_groups
from lipcert.combine import combine_depth
from lipcert.conclude import combine_groups, product_floor, stitched_certificate
from lipcert.defaults import (
    DEFAULT_COMBINE,
    DEFAULT_MAX_BLOCK_SIZE,
    DEFAULT_TIME_LIMIT,
    DESCENT_ITERATIONS,
    FINAL_RESERVE,
    FIRST_DESCENT_SHARE,
    MIN_DESCENT_ITERATIONS,
    PROOF_RESERVE,
    SolverSettings,
)
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
from lipcert.sdp.whole import WholeCertificate, default_starts, whole_network_certificate
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
    time_limit: float = DEFAULT_TIME_LIMIT  # seconds for the whole estimate (a safety stop: see estimate_many)

    def __post_init__(self) -> None:
        for name, kind in (("method", Method), ("combine", Combine)):
            value = getattr(self, name)
            if value is None:
                continue
            if value not in kind._value2member_map_:
                raise BadInputError(f"--{name} '{value}' is not one of {choices(kind)}")
            object.__setattr__(self, name, kind(value))
        if not self.time_limit > 0:  # also refuses NaN
            raise BadInputError(f"--time-limit must be a positive number of seconds, found {self.time_limit}")


ProgressCallback = Callable[[BlockOutcome, int, int], None]  # outcome, done, total


def after_loading(options: EstimateOptions, began: float) -> EstimateOptions:
    """The options with loading's time (since time.perf_counter() read `began`) taken from the budget,
    so that --time-limit bounds the command, not only its solves (at least 1 s is left)."""
    return replace(options, time_limit=max(options.time_limit - (time.perf_counter() - began), 1.0))


def estimate(model: LoadedModel, options: EstimateOptions, progress: ProgressCallback | None = None) -> Certificate:
    return estimate_many(model, [options], progress)[0]


@dataclass
class _Prepared:
    """One certificate's plan and blocks, before solving, and what was proven before the blocks."""

    options: EstimateOptions
    net: Network
    plan: Plan
    groups: list[PreparedGroup]
    whole: WholeCertificate | None = None  # the first whole-network certificate (default starts)
    naive: float = float("inf")  # the whole network's naive bound
    floor: float = 0.0  # the product of these groups' bounds cannot go below this (an estimate)
    solve_blocks: bool = True

    @property
    def one_block(self) -> bool:
        return len(self.groups) == 1 and len(self.groups[0].jobs) == 1 and len(self.groups[0].tiles) == 1

    @property
    def descends_instead(self) -> bool:
        """The automatic plan, auto, one block over the size budget (solved only through chordal cliques): the
        whole-network descent replaces its SCS solve, which on ReLU MLPs of 600-1600 neurons took
        2-5 minutes for what the descent reaches within 1% in seconds (benchmarks/bench_mlps.py)."""
        automatic = self.options.split is None and self.options.plan_path is None
        big = self.net.lmi_size > self.options.max_block_size
        return automatic and self.plan.combine is Combine.AUTO and self.one_block and big

    @property
    def wants_whole(self) -> bool:
        """auto and global certify the whole network, where the plan would otherwise cut it."""
        combine, method = self.plan.combine, self.plan.method
        cut = not self.one_block or self.descends_instead
        return combine in (Combine.AUTO, Combine.GLOBAL) and method is Method.NEURON and cut


def estimate_many(
    model: LoadedModel, options: list[EstimateOptions], progress: ProgressCallback | None = None
) -> list[Certificate]:
    """Certificates for several option sets (e.g. every class pair) from one solve pass.

    Work goes cheapest first. Where a plan cuts the network (auto, global), the whole network is
    first certified by descent on ρ*(λ) (lipcert.sdp.whole). Then every distinct block of every
    certificate that can still gain from them goes to the executor at once, so blocks shared
    between certificates are solved once and blocks of different certificates run in parallel;
    then the solved blocks' multipliers, stitched, start a second descent. The executor, cache
    and time budget (options[0].time_limit, for the whole run) are options[0]'s.
    """
    start = time.perf_counter()
    deadline = start + options[0].time_limit
    done: dict[int, Certificate] = {}
    prepared: list[tuple[int, _Prepared]] = []
    for k, opts in enumerate(options):
        net = model.network if opts.selection is None else select_outputs(model.network, opts.selection)
        plan = choose_plan(net, opts)
        if plan.method is Method.NAIVE and opts.split is None and opts.plan_path is None:
            done[k] = _naive_certificate(model, net, plan, opts, start)
            continue
        plan, target = plan_to_run(net, plan, opts)
        naive_groups = _oversized_groups(net, plan, opts)
        if naive_groups:
            labels = ", ".join(plan.groups[g].label for g in sorted(naive_groups))
            note = f"{labels}: no tiling fits --max-block-size {opts.max_block_size}; bounded naively"
            plan = replace(plan, warnings=(*plan.warnings, note))
        settings = resolve_settings(plan, opts)
        groups = prepare_groups(net, plan, settings, opts.max_block_size, target, opts.chordal, naive_groups)
        prepared.append((k, _Prepared(opts, net, plan, groups)))
    whole = [p for _, p in prepared if p.wants_whole]
    iterations = max(MIN_DESCENT_ITERATIONS, DESCENT_ITERATIONS // max(len(whole), 1))
    for k, p in enumerate(whole):
        # The first descents share FIRST_DESCENT_SHARE of what is left; a single one may go on
        # until PROOF_RESERVE of the budget is left, should no block be able to beat it.
        until = deadline - PROOF_RESERVE * options[0].time_limit if len(whole) == 1 else None
        _certify_whole_first(
            p, iterations, FIRST_DESCENT_SHARE * (deadline - time.perf_counter()) / (len(whole) - k), until
        )
    if prepared:
        needed = [g for _, p in prepared if p.solve_blocks for g in p.groups]
        reserve = FINAL_RESERVE * options[0].time_limit if whole else 0.0
        blocks_until = time.time() + max(deadline - reserve - time.perf_counter(), 0.0)
        outcomes, cached = _solve(needed, prepared[0][1].options, progress, blocks_until)
        for k, p in prepared:
            seconds = max(deadline - time.perf_counter(), 0.0) / max(len(whole), 1)
            done[k] = _certificate(model, p, outcomes, cached, start, iterations, seconds)
    return [done[k] for k in range(len(options))]


def _certify_whole_first(p: _Prepared, iterations: int, seconds: float, until: float | None) -> None:
    """naive, then the whole-network descent from the default starts; then whether blocks can still help.

    Each group's bound is at least the norm of its linear maps with slopes in [α, β], so the
    product cannot go below their product (the floor): when the whole network is already there,
    the blocks cannot help, and they are not solved. Under auto, a descent that is below the floor
    when its `seconds` (from the call) run out goes on, up to `until` (time.perf_counter(); None:
    it does not), since no block will need the time.
    """
    began = time.perf_counter()
    p.naive = naive_bound(p.net)
    auto = p.plan.combine is Combine.AUTO
    p.floor = product_floor(p.groups) if auto and not p.descends_instead else 0.0
    starts = default_starts(p.net)
    now = time.perf_counter()
    extension = None
    if auto and until is not None and until > began + seconds:
        extension = (until - now, lambda rho: float(np.sqrt(rho)) < p.floor)
    p.whole = whole_network_certificate(p.net, starts, iterations, max(began + seconds - now, 0.0), extension)
    if auto and p.whole is not None and p.whole.verification.certified:
        p.solve_blocks = p.floor < min(p.whole.bound, p.naive) and not p.descends_instead


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
        combined_by="naive",
    )


def _certificate(
    model: LoadedModel,
    p: _Prepared,
    outcomes: dict[str, BlockOutcome],
    cached: int,
    start: float,
    iterations: int,
    seconds: float,
) -> Certificate:
    if p.solve_blocks:
        _, reused = distinct_jobs(p.groups)
        blocks, bounds, notes = combine_groups(p.groups, outcomes)
        notes.append(f"identical-block reuse saved {reused} solves")
    else:
        blocks, bounds, notes = _unsolved_groups(p)
    product = "product of the depth groups" if p.solve_blocks else "product of the groups' naive bounds"
    candidates = {product: combine_depth(bounds)}
    if p.wants_whole:
        candidates["naive bound of the whole network"] = p.naive
        certs = [p.whole]
        if p.solve_blocks:
            certs.append(stitched_certificate(p.net, p.plan, p.groups, outcomes, bounds, iterations, seconds))
        for cert in (c for c in certs if c is not None):
            notes.append(cert.describe())
            if cert.verification.certified:
                key = f"whole-network certificate from the {cert.start}"
                candidates[key] = min(cert.bound, candidates.get(key, np.inf))
    winner = _winner(p.plan.combine, candidates, p.wants_whole)
    if len(candidates) > 1:
        others = [f"{name} {value:.6g}" for name, value in candidates.items() if name != winner]
        notes.append(f"the bound is the {winner}; also proven: {', '.join(others)}")
    return Certificate(
        model=str(model.path),
        sha256=model.sha256,
        bound=candidates[winner],
        method=p.plan.method,
        combine=p.plan.combine if p.plan.method is not Method.NAIVE else None,
        plan=describe(p.plan),
        blocks=tuple(blocks),
        seconds=time.perf_counter() - start,
        input_shape=p.net.input_shape,
        output_shape=p.net.output_shape,
        notes=(*p.plan.warnings, *notes),
        groups=tuple(GroupResult(g.index, g.label, g.plan.tiling, g.rule, b) for g, b in zip(p.groups, bounds)),
        cached_blocks=cached if p.solve_blocks else 0,
        selection=p.options.selection_label,
        combined_by="product" if winner.startswith("product") else "naive" if winner.startswith("naive") else "whole",
    )


def _winner(combine: Combine, candidates: dict[str, float], whole: bool) -> str:
    """auto: the smallest proven bound; global: the whole network's (or naive, if smaller); else the product."""
    names = list(candidates)
    if whole and combine is Combine.GLOBAL and any(n.startswith("whole") for n in names):
        names = [n for n in names if not n.startswith("product")]
    if not whole:
        names = [n for n in names if n.startswith("product")]
    return min(names, key=lambda n: candidates[n])


def _unsolved_groups(p: _Prepared) -> tuple[list[BlockResult], list[float], list[str]]:
    """Groups whose blocks were not solved (they could not beat the whole-network certificate),
    each shown with its naive bound, one row per group."""
    blocks, bounds = [], []
    why = (
        f"not solved: the whole-network certificate {p.whole.bound:.6g} is at or below the lowest product "
        f"these groups can give ({p.floor:.6g})"
    )
    if p.descends_instead:
        why = (
            f"not solved: auto certifies one block above --max-block-size {p.options.max_block_size} by the "
            "whole-network descent (an explicit --split 1x1 solves its full LipSDP with SCS)"
        )
    for group in p.groups:
        bound = naive_bound(group.net)
        blocks.append(BlockResult(group.index, 0, group.net.lmi_size, bound, 0.0, f"naive; {why}"))
        bounds.append(bound)
    return blocks, bounds, [f"blocks {why}"]


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


def _oversized_groups(net: Network, plan: Plan, options: EstimateOptions) -> set[int]:
    """Groups with a block above the limit: refused for an explicit --split or --plan (the size and
    a way out), bounded naively in the automatic plan (which never refuses a model it can load)."""
    if plan.method is Method.NAIVE:
        return set()
    budget = options.max_block_size
    solved = solved_block_sizes(net, plan, budget if options.chordal else None)
    over = {k for k, side in enumerate(solved) if side > budget}
    if not over or (options.split is None and options.plan_path is None):
        return over
    k = min(over)
    group, largest = plan.groups[k], int(max(plan_block_sizes(net, plan)[k]))
    whole = len(plan.groups) == 1 and group.n_tiles == 1
    what = "the full LipSDP matrix" if whole else f"a block of group {group.label}"
    if options.plan_path is not None:
        way = f"give that group a finer grid or fewer layers in {options.plan_path}, or leave out --plan"
    elif options.split == (1, 1):
        way = "use --split 2x2 or finer, or leave out --split for the automatic plan"
    else:
        rows, cols = options.split
        way = f"use a finer --split than {rows}x{cols}, or leave out --split for the automatic plan"
    raise ModelTooLargeError(
        f"{what} would be {largest}x{largest}, above the block limit of {budget} (--max-block-size), and no "
        f"chordal decomposition of it fits that limit; raise --max-block-size, {way}"
    )


def _solve(
    groups: list[PreparedGroup], options: EstimateOptions, progress: ProgressCallback | None, until: float
) -> tuple[dict[str, BlockOutcome], int]:
    """Outcomes by job key, and how many distinct blocks came from the on-disk cache.

    `until` (time.time()) bounds every solve; a block it stops short or skips is sound, but not
    cached, so a rerun with more time solves it again.
    """
    jobs, _ = distinct_jobs(groups)
    jobs = [replace(job, deadline=until) for job in jobs]
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
        if cache is not None and not outcome.cut_short:
            cache.put(outcome)
        if progress is not None:
            progress(outcome, done, total)

    outcomes.update(run_jobs(todo, options.workers, options.scheduler, on_done))
    return outcomes, cached
