"""Certify one block: build LipSDP, solve with SCS, polish, verify in float64, else fall back.

The only number certify_block reports as a bound is either a verified LipSDP value
(verify.py) or the naive product-of-norms bound; which one, and why, is recorded in
`source`. Solver trouble of any kind (exceptions, NaN, infeasible, limits, failed
verification) ends in the fallback, never in an exception. A signal is not solver trouble:
an interrupted solve raises (lipcert.errors.Interrupted) and is never made a fallback bound.

Accuracy is reached by continuation: solve at a loose eps, polish and verify; while the
verified bound is further than `target_gap` above the solver's estimate of the SDP
value, tighten eps ×0.1 and re-solve warm-started from the previous point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lipcert.defaults import SolverSettings
from lipcert.errors import SolverError
from lipcert.network.form import Network
from lipcert.sdp.coupled import TileIndex, live_part
from lipcert.sdp.descent import polish_multipliers
from lipcert.sdp.lipsdp import input_diagonal, scale_inputs
from lipcert.sdp.model import LipSdpProblem, build_problem
from lipcert.sdp.solve import SolveOutcome, WarmPoint, solve_lipsdp
from lipcert.sdp.verify import Verification, verify_multipliers
from lipcert.vocabulary import Method

# Statuses whose multipliers are worth verifying. Limits are included: a verified bound
# from an unfinished solve is still sound (it is compared with the naive one below).
VERIFIABLE = ("optimal", "optimal_inaccurate", "iteration_limit", "time_limit")
CONVERGED = ("optimal", "optimal_inaccurate")
# Weighted fallback: the scaled weights are rounded (≤ 3u relative per entry); this
# factor covers the resulting change of the product of norms for any layer width here.
WEIGHTED_NAIVE_SLACK = 1.0 + 1e-10

Weights = np.ndarray | None


@dataclass(frozen=True)
class BlockCertificate:
    bound: float  # the certified upper bound on this block's Lipschitz constant
    source: str  # "lipsdp-neuron", "lipsdp-layer", "naive: <it was tighter>" or "fallback-naive: <reason>"
    method: Method
    lmi_size: int  # side of the full LMI (n_x + n_w)
    lmi_size_solved: int  # side after input compression (what SCS saw)
    raw_sqrt_objective: float  # sqrt of the solver's ρ: RAW, NOT A BOUND (MATH.md §3)
    solver_status: str
    iterations: int  # SCS iterations, summed over the continuation
    compile_seconds: float
    solve_seconds: float
    verify_seconds: float  # polishing and the float64 proof
    verification: str  # Verification.how, or why there was none
    eps: float = float("nan")  # the eps of the solve whose multipliers were certified
    message: str = ""
    multipliers: np.ndarray | None = field(default=None, repr=False)  # certified per-neuron λ
    warm: WarmPoint | None = field(default=None, repr=False)  # for warm-starting a twin block
    cliques: tuple[int, ...] = ()  # decomposed solves (chordal cliques, coupled tiles): each PSD constraint's side
    is_fallback: bool = False  # LipSDP could not be certified: the bound is the naive one, and source says why


def naive_block_bound(net: Network, input_weights: Weights = None) -> float:
    """The sound cheap bound used when LipSDP cannot be certified.

    SolverError (exit code 6) when even that cannot be certified: no sound bound is left.
    """
    from lipcert.naive import naive_bound  # lazy: keeps lipcert.sdp importable on its own

    try:
        if input_weights is None:
            return naive_bound(net)
        scaled = naive_bound(scale_inputs(net, input_weights)) * WEIGHTED_NAIVE_SLACK
    except (ArithmeticError, np.linalg.LinAlgError) as exc:
        raise SolverError(f"no sound bound for a block of {net.n_w} neurons: the naive bound failed ({exc})") from None
    return float(np.nextafter(scaled, np.inf))


@dataclass
class _Run:
    """Everything the continuation did, and the best verified result so far."""

    outcome: SolveOutcome | None = None
    best: Verification | None = None
    best_outcome: SolveOutcome | None = None
    best_eps: float = float("nan")
    compile_seconds: float = 0.0
    solve_seconds: float = 0.0
    verify_seconds: float = 0.0
    iterations: int = 0
    last_check: Verification | None = None
    notes: list[str] = field(default_factory=list)

    def add_solve(self, outcome: SolveOutcome) -> None:
        self.outcome = outcome
        self.compile_seconds = outcome.compile_seconds  # compiled once, cached on the problem
        self.solve_seconds += outcome.solve_seconds
        self.iterations += outcome.iterations

    def consider(self, check: Verification, outcome: SolveOutcome, eps: float) -> None:
        self.verify_seconds += check.seconds
        self.last_check = check
        if check.certified and (self.best is None or check.bound < self.best.bound):
            self.best, self.best_outcome, self.best_eps = check, outcome, eps

    @property
    def certified(self) -> bool:
        return self.best is not None and math.isfinite(self.best.bound)


def certify_block(
    net: Network,
    method: Method = Method.NEURON,
    settings: SolverSettings | None = None,
    input_weights: Weights = None,
    warm: WarmPoint | np.ndarray | None = None,
    clique_target: int | None = None,
    tiles: Sequence[TileIndex] | None = None,
) -> BlockCertificate:
    """Build, solve, verify and (if needed) repair LipSDP for one block; fall back to naive.

    clique_target: solve over the cliques of the LMI's chordal extension, merged up to that
    side (lipcert.sdp.chordal); the same SDP value, verified on the full LMI as always.
    tiles: solve the block's tiles coupled in one SDP (lipcert.sdp.coupled); their multipliers,
    stitched per neuron, are verified on the block's full LMI as always.

    With input_weights π the bound certifies ||Δy||² ≤ bound² Σ_k π_k Δx_k² (MATH.md §4c).
    `warm`: a WarmPoint of a block with the same structure, or multipliers in original units.
    """
    method = Method(method)
    if not method.is_sdp:
        raise ValueError(f"certify_block solves LipSDP; {method} has no SDP (use naive_block_bound)")
    settings = settings or SolverSettings()
    if input_weights is not None:
        input_diagonal(net, input_weights)  # a wrong weight vector is the caller's error: ValueError
    if net.n_w == 0 or net.n_x == 0:
        return _fallback(net, method, input_weights, "no neurons or no inputs: nothing for LipSDP")
    given, live = net, None
    if tiles is not None:
        net, tiles, live = live_part(net, tiles)
    try:
        problem = build_problem(net, method, input_weights, clique_target=clique_target, tiles=tiles)
    except Exception as exc:  # a malformed block must not abort the whole run
        return _fallback(net, method, input_weights, f"model build failed: {type(exc).__name__}: {exc}")
    run = _continuation(problem, settings, warm)
    cert = _finish(problem, input_weights, run)
    if live is not None and cert.multipliers is not None and live.size < given.n_w:
        full = np.zeros(given.n_w)  # the dropped neurons change nothing of y; they get no multiplier
        full[live] = cert.multipliers
        cert = replace(cert, multipliers=full)
    return cert


def _continuation(problem: LipSdpProblem, settings: SolverSettings, warm: WarmPoint | np.ndarray | None) -> _Run:
    run, eps, deadline = _Run(), settings.eps, _deadline(settings)
    while True:
        remaining = deadline - time.perf_counter()
        step = replace(settings, eps=eps, time_limit_secs=max(remaining, 1e-3) if deadline < math.inf else 0.0)
        outcome = solve_lipsdp(problem, step, warm)
        run.add_solve(outcome)
        if outcome.status not in VERIFIABLE or outcome.multipliers is None:
            run.notes.append(f"eps={eps:g}: {outcome.status}")
            break
        run.consider(_polish_and_verify(problem, outcome, settings), outcome, eps)
        if outcome.status not in CONVERGED:
            break
        if eps <= settings.trust_eps * (1 + 1e-9) and _close_enough(run, outcome, settings.target_gap):
            break
        if eps * 0.1 < settings.eps_min * (1 - 1e-9) or time.perf_counter() >= deadline:
            break
        run.notes.append(f"eps {eps:g}→{eps * 0.1:g}")
        eps, warm = eps * 0.1, outcome.warm
    return run


def _deadline(settings: SolverSettings) -> float:
    """time_limit_secs bounds the whole continuation: each SCS call gets what is left."""
    return time.perf_counter() + settings.time_limit_secs if settings.time_limit_secs > 0 else math.inf


def _polish_and_verify(problem: LipSdpProblem, outcome: SolveOutcome, settings: SolverSettings) -> Verification:
    """Polish in the solver's (balanced, compressed) coordinates, verify in the original ones."""
    start = time.perf_counter()
    lam = outcome.multipliers
    if settings.polish_steps > 0:
        solved_units = lam / problem.lam_scale
        polished = polish_multipliers(problem.solved_net, solved_units, problem.groups, settings.polish_steps)
        lam = polished * problem.lam_scale
    polish_seconds = time.perf_counter() - start
    check = verify_multipliers(problem.net, problem.per_neuron(lam), problem.input_weights)
    if not check.certified and settings.polish_steps > 0:
        # Polishing only moves along descent directions of ρ*, but verify the raw point too.
        raw = verify_multipliers(problem.net, problem.per_neuron(outcome.multipliers), problem.input_weights)
        check = raw if raw.certified else check
    return replace(check, polish_seconds=polish_seconds)


def _close_enough(run: _Run, outcome: SolveOutcome, target_gap: float) -> bool:
    """Verified bound within target_gap of the solver's estimate of the SDP value.

    The estimate is the smaller of the primal and dual objectives: neither is a bound,
    so taking the smaller makes the test stricter (more refinement), never looser.
    """
    if not run.certified:
        return False
    estimate = min(outcome.raw_objective, outcome.dual_objective)
    if not math.isfinite(estimate) or estimate <= 0:
        return False
    return run.best.bound <= (1.0 + target_gap) * math.sqrt(estimate)


def _finish(problem: LipSdpProblem, weights: Weights, run: _Run) -> BlockCertificate:
    net, method = problem.net, problem.method
    outcome = run.best_outcome or run.outcome
    raw = math.sqrt(outcome.raw_objective) if outcome.raw_objective >= 0 else float("nan")
    common = dict(
        method=method,
        lmi_size=problem.lmi_size,
        lmi_size_solved=problem.solved_lmi_size,
        cliques=problem.part_sizes,
        raw_sqrt_objective=raw,
        solver_status=outcome.status,
        iterations=run.iterations,
        compile_seconds=run.compile_seconds,
        solve_seconds=run.solve_seconds,
        verify_seconds=run.verify_seconds,
        message="; ".join([*run.notes, outcome.message]),
        warm=outcome.warm,
    )
    if not run.certified:
        return _fallback(net, method, weights, _why_not(run), common)
    best = run.best
    # Both bounds are sound, so report the smaller. LipSDP is below the naive bound in exact
    # arithmetic, but an unfinished solve, or a block where the two coincide, can verify above it.
    naive = _naive_or_inf(net, weights)
    if naive < best.bound:
        why = f"naive is below the verified LipSDP {best.bound:.9g} (solver {outcome.status})"
        # The verified multipliers are kept: they still serve a whole-network certificate (lipcert.stitch).
        return replace(_fallback(net, method, weights, why, common, naive), multipliers=best.multipliers)
    return BlockCertificate(
        bound=best.bound,
        source=str(method),
        verification=best.how,
        eps=run.best_eps,
        multipliers=best.multipliers,
        **common,
    )


def _why_not(run: _Run) -> str:
    outcome = run.outcome
    if outcome is None or outcome.status not in VERIFIABLE or outcome.multipliers is None:
        status = "not run" if outcome is None else outcome.status
        return f"solver {status}: {outcome.message if outcome else ''}".strip()
    how = run.last_check.how if run.last_check is not None else "multipliers not certified"
    if outcome.status not in CONVERGED:  # e.g. stopped by --time-limit: say so, it explains the rest
        return f"solver {outcome.status}, {how}"
    return how


def _naive_or_inf(net: Network, weights: Weights) -> float:
    try:
        return naive_block_bound(net, weights)
    except Exception:  # a failing fallback must not hide a verified LipSDP bound
        return float("inf")


def _fallback(
    net: Network,
    method: Method,
    weights: Weights,
    reason: str,
    common: dict[str, Any] | None = None,
    naive: float | None = None,
) -> BlockCertificate:
    bound = naive if naive is not None else naive_block_bound(net, weights)
    if common is None:
        common = dict(
            method=method,
            lmi_size=net.lmi_size,
            lmi_size_solved=net.lmi_size,
            raw_sqrt_objective=float("nan"),
            solver_status="not run",
            iterations=0,
            compile_seconds=0.0,
            solve_seconds=0.0,
            verify_seconds=0.0,
            message="",
            warm=None,
        )
    # A naive bound below a verified LipSDP one is a choice, not a failure: say so differently.
    label = "naive" if reason.startswith("naive is below") else "fallback-naive"
    if net.n_w == 0:
        label, reason = "linear", "no neurons: the certified norm of the map is its exact constant"
    fallback = label == "fallback-naive"
    source = f"{label}: {reason}"
    return BlockCertificate(bound=bound, source=source, verification=reason, is_fallback=fallback, **common)
