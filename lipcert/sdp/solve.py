"""Solve a LipSDP model with SCS and report what happened, never raising for solver trouble.

cvxpy compiles the model once (cached on the problem); SCS is then called directly so
that the iteration count, the exact status and a warm start from any earlier point
(another block's multipliers, or a looser solve) are available. The objective returned
here is the solver's raw ρ: it is NOT a bound (MATH.md §3); verify.py makes one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cvxpy as cp
import numpy as np
import scs
from cvxpy.reductions.solvers.conic_solvers.conic_solver import dims_to_solver_dict

from lipcert.sdp.lipsdp import LipSdpProblem

STATUSES = (
    "optimal",
    "optimal_inaccurate",
    "infeasible",
    "unbounded",
    "iteration_limit",
    "time_limit",
    "error",
)


@dataclass(frozen=True)
class SolverSettings:
    """SCS settings. One `eps` sets both eps_abs and eps_rel.

    certify_block starts at `eps` and tightens it ×0.1, warm-started, down to `eps_min`,
    until the verified bound is within `target_gap` (relative) of SCS's objective; that
    test is only trusted once eps ≤ `trust_eps` (measured: at eps=1e-3 SCS's objective
    was off by up to 10% in ρ, at 1e-4 by < 0.5%). `polish_steps` gradient steps on the
    multipliers precede each verification.

    Defaults from benchmarks/bench_lipsdp.py ("verified bound per second"): start at
    1e-3 with warm continuation and SCS scale 0.01 certified the benchmark blocks within
    0.05% of the best verified value in 35 s in all, against 60 s for start 1e-3 with
    SCS's default scale 0.1, 52 s for a start at 1e-4, and 3.4% worst excess for a single
    solve at 1e-3. A warm start at a tighter eps cost fewer iterations than a cold one
    there, except that cold Layer solves on one 332-side LMI stalled for thousands.
    """

    eps: float = 1e-3
    max_iters: int = 20_000
    time_limit_secs: float = 0.0  # 0: none. Per SCS call; certify_block also stops refining
    warm_start: bool = True
    verbose: bool = False
    eps_min: float = 1e-6
    trust_eps: float = 1e-4
    target_gap: float = 1e-3
    polish_steps: int = 10
    scale: float = 0.01  # SCS's initial primal/dual balance (adapted during the solve)

    def scs_options(self) -> dict[str, Any]:
        return {
            "eps_abs": self.eps,
            "eps_rel": self.eps,
            "max_iters": self.max_iters,
            "time_limit_secs": self.time_limit_secs,
            "verbose": self.verbose,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class WarmPoint:
    """A full SCS iterate (x, y, s) of a model with the same structure."""

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray


@dataclass(frozen=True)
class SolveOutcome:
    status: str  # one of STATUSES
    multipliers: np.ndarray | None  # the solver's λ (one per neuron or per layer), float64
    raw_objective: float  # the solver's ρ; NOT a bound
    dual_objective: float  # SCS's dual objective as a ρ: an estimate of the SDP value, NOT a bound
    iterations: int
    solve_seconds: float
    compile_seconds: float
    message: str
    warm: WarmPoint | None = field(default=None, repr=False)  # SCS's last iterate, solver units


@dataclass
class _Compiled:
    data: dict[str, Any]
    cones: dict[str, Any]
    seconds: float


def _compile(problem: LipSdpProblem) -> _Compiled:
    """cvxpy → SCS data, once per model. The time is reported as compile time."""
    if isinstance(problem.compiled, _Compiled):
        return problem.compiled
    start = time.perf_counter()
    data, _, _ = problem.problem.get_problem_data(cp.SCS)
    cones = dims_to_solver_dict(data["dims"])
    n_theta = problem.theta.size
    # θ is the model's only variable, so SCS's x is θ; check rather than assume it.
    c = np.asarray(data["c"]).ravel()
    if c.size != n_theta or c[-1] != 1.0 or np.count_nonzero(c) != 1:
        raise RuntimeError("unexpected variable layout in the compiled LipSDP model")
    compiled = _Compiled(data=data, cones=cones, seconds=time.perf_counter() - start)
    problem.compiled = compiled
    return compiled


def _warm_arrays(
    compiled: _Compiled, warm: WarmPoint | np.ndarray | None, lam_scale: np.ndarray, n_slacks: int = 0
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """x, y, s for SCS, or None to start cold (also when the shapes do not fit).

    A WarmPoint is used as is. From multipliers alone: x = (λ', 0) in solver units,
    s = b − A x its slack, and y = 0; SCS's first iterations then find ρ.
    """
    if warm is None:
        return None, None, None
    A, b = compiled.data["A"], compiled.data["b"]
    if isinstance(warm, WarmPoint):
        if warm.x.size == A.shape[1] and warm.y.size == A.shape[0]:
            return warm.x, warm.y, warm.s
        return None, None, None
    lam = np.asarray(warm, dtype=np.float64).ravel()
    if lam.size != A.shape[1] - 1 - n_slacks or not np.all(np.isfinite(lam)):
        return None, None, None
    x = np.concatenate([np.maximum(lam, 0.0) / lam_scale, np.zeros(n_slacks + 1)])
    return x, np.zeros(A.shape[0]), b - A @ x


def _status(info: dict[str, Any]) -> str:
    """Normalise SCS's status (status_val and its text) to one of STATUSES."""
    val, text = int(info.get("status_val", -4)), str(info.get("status", ""))
    if "max_iters" in text:
        return "iteration_limit"
    if "time_limit" in text:
        return "time_limit"
    return {1: "optimal", 2: "optimal_inaccurate", -1: "unbounded", -6: "unbounded", -2: "infeasible"}.get(
        val, "infeasible" if val == -7 else "error"
    )


def _failure(message: str, compile_seconds: float = 0.0, solve_seconds: float = 0.0) -> SolveOutcome:
    nan = float("nan")
    return SolveOutcome("error", None, nan, nan, 0, solve_seconds, compile_seconds, message)


def solve_lipsdp(
    problem: LipSdpProblem,
    settings: SolverSettings | None = None,
    warm: WarmPoint | np.ndarray | None = None,
) -> SolveOutcome:
    """Run SCS on the model. `warm`: an earlier WarmPoint of this model's structure, or
    multipliers in original units (as in SolveOutcome.multipliers)."""
    settings = settings or SolverSettings()
    try:
        compiled = _compile(problem)
    except Exception as exc:  # any cvxpy failure is a solver failure here
        return _failure(f"cvxpy compilation failed: {type(exc).__name__}: {exc}")
    x0, y0, s0 = _warm_arrays(compiled, warm if settings.warm_start else None, problem.lam_scale, problem.n_slacks)
    start = time.perf_counter()
    try:
        solver = scs.SCS(_scs_data(compiled), compiled.cones, **settings.scs_options())
        sol = solver.solve(warm_start=x0 is not None, x=x0, y=y0, s=s0)
    except Exception as exc:  # SCS raises assorted errors; all mean "no answer"
        elapsed = time.perf_counter() - start
        return _failure(f"SCS raised {type(exc).__name__}: {exc}", compiled.seconds, elapsed)
    elapsed = time.perf_counter() - start
    return _outcome(sol, problem, compiled.seconds, elapsed)


def _scs_data(compiled: _Compiled) -> dict[str, Any]:
    data = compiled.data
    return {"A": data["A"], "b": np.asarray(data["b"]).ravel(), "c": np.asarray(data["c"]).ravel()}


def _outcome(sol: dict[str, Any], problem: LipSdpProblem, compile_s: float, solve_s: float) -> SolveOutcome:
    """Map SCS's answer back to the original network's units (see LipSdpProblem)."""
    n_mult = problem.n_multipliers
    info = sol.get("info", {})
    status = _status(info)
    iterations = int(info.get("iter", 0))
    message = str(info.get("status", ""))
    x = np.asarray(sol.get("x", []), dtype=np.float64)
    nan = float("nan")
    if status in ("infeasible", "unbounded", "error") or x.size != problem.theta.size:
        # SCS's x is then a certificate of infeasibility, not multipliers.
        return SolveOutcome(status, None, nan, nan, iterations, solve_s, compile_s, message)
    if not np.all(np.isfinite(x)):
        # NaN is a failure; a limit reached with a NaN iterate keeps its limit status.
        status = status if status in ("iteration_limit", "time_limit") else "error"
        return SolveOutcome(status, None, nan, nan, iterations, solve_s, compile_s, f"NaN in SCS output; {message}")
    warm = WarmPoint(x=x.copy(), y=np.asarray(sol["y"], float).copy(), s=np.asarray(sol["s"], float).copy())
    lam = x[:n_mult] * problem.lam_scale
    rho = float(x[-1]) * problem.rho_scale
    dual = float(info.get("dobj", nan)) * problem.rho_scale
    return SolveOutcome(status, lam, rho, dual, iterations, solve_s, compile_s, message, warm)
