"""Solve a LipSDP model and report what happened, never raising for solver trouble.

The one solver driver of lipcert. cvxpy compiles the model once (cached on the problem); the
conic solver is then called directly, behind the small ConicSolver protocol, so that the
iteration count, the exact status and a warm start from any earlier point (another block's
multipliers, or a looser solve) are available. SCS is the solver; it is imported only when a
solve runs. The objective returned here is the solver's raw ρ: it is NOT a bound (MATH.md §3);
verify.py makes one.

A solve stopped by a signal is never an outcome: SCS catches SIGINT and returns 'interrupted',
which is raised here as lipcert.errors.Interrupted, so that no fallback bound is made of it.
What SCS prints never reaches stdout (lipcert.quiet.solver_stdout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import cvxpy as cp
import numpy as np
from cvxpy.reductions.solvers.conic_solvers.conic_solver import dims_to_solver_dict

from lipcert.defaults import SolverSettings
from lipcert.errors import Interrupted
from lipcert.interrupts import run_interruptibly
from lipcert.quiet import solver_stdout
from lipcert.sdp.model import LipSdpProblem

STATUSES = (
    "optimal",
    "optimal_inaccurate",
    "infeasible",
    "unbounded",
    "iteration_limit",
    "time_limit",
    "error",
)
INTERRUPTED = "interrupted"  # SIGINT during the solve: never returned, raised (Interrupted)


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
    compiled: _Compiled, warm: WarmPoint | np.ndarray | None, problem: LipSdpProblem
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """x, y, s for the solver, or None to start cold (also when the shapes do not fit).

    A WarmPoint is used as is. From multipliers alone: each multiplier λ' in solver units,
    shared equally among the variables it is the sum of (one, except for coupled tiles), every
    other variable 0, s = b − A x its slack, and y = 0; the first iterations then find ρ.
    """
    if warm is None:
        return None, None, None
    A, b = compiled.data["A"], compiled.data["b"]
    if isinstance(warm, WarmPoint):
        if warm.x.size == A.shape[1] and warm.y.size == A.shape[0]:
            return warm.x, warm.y, warm.s
        return None, None, None
    lam = np.asarray(warm, dtype=np.float64).ravel()
    if lam.size != problem.n_multipliers or not np.all(np.isfinite(lam)):
        return None, None, None
    shares = np.asarray(problem.lam_map.sum(axis=1)).ravel()
    x = problem.lam_map.T @ (np.maximum(lam, 0.0) / problem.lam_scale / np.maximum(shares, 1.0))
    return x, np.zeros(A.shape[0]), b - A @ x


class ConicSolver(Protocol):
    """A conic solver lipcert can drive: SCS's data (A, b, c), its cones, settings, a start.

    `solve` returns SCS's solution dictionary (x, y, s, info), and `status` maps its info to one
    of STATUSES, or INTERRUPTED. It may raise for any solver trouble; the driver turns that into
    a failure.
    """

    name: str

    def solve(
        self, data: dict[str, Any], cones: dict[str, Any], settings: SolverSettings, start: tuple | None
    ) -> dict[str, Any]: ...

    def status(self, info: dict[str, Any]) -> str: ...


class Scs:
    """SCS (Splitting Conic Solver), imported when the first solve runs."""

    name = "SCS"

    def solve(
        self, data: dict[str, Any], cones: dict[str, Any], settings: SolverSettings, start: tuple | None
    ) -> dict[str, Any]:
        import scs

        solver = scs.SCS(data, cones, **self.options(settings))
        x0, y0, s0 = start if start is not None else (None, None, None)
        return solver.solve(warm_start=start is not None, x=x0, y=y0, s=s0)

    @staticmethod
    def options(settings: SolverSettings) -> dict[str, Any]:
        return {
            "eps_abs": settings.eps,
            "eps_rel": settings.eps,
            "max_iters": settings.max_iters,
            "time_limit_secs": settings.time_limit_secs,
            "verbose": settings.verbose,
            "scale": settings.scale,
        }

    def status(self, info: dict[str, Any]) -> str:
        """Normalise SCS's status (status_val and its text) to one of STATUSES."""
        val, text = int(info.get("status_val", -4)), str(info.get("status", ""))
        if val == -5 or "interrupted" in text:  # SCS_SIGINT: its own SIGINT handler stopped it
            return INTERRUPTED
        if "max_iters" in text:
            return "iteration_limit"
        if "time_limit" in text:
            return "time_limit"
        return {1: "optimal", 2: "optimal_inaccurate", -1: "unbounded", -6: "unbounded", -2: "infeasible"}.get(
            val, "infeasible" if val == -7 else "error"
        )


SCS = Scs()


def _failure(message: str, compile_seconds: float = 0.0, solve_seconds: float = 0.0) -> SolveOutcome:
    nan = float("nan")
    return SolveOutcome("error", None, nan, nan, 0, solve_seconds, compile_seconds, message)


def solve_lipsdp(
    problem: LipSdpProblem,
    settings: SolverSettings | None = None,
    warm: WarmPoint | np.ndarray | None = None,
    solver: ConicSolver = SCS,
) -> SolveOutcome:
    """Run the solver on the model. `warm`: an earlier WarmPoint of this model's structure, or
    multipliers in original units (as in SolveOutcome.multipliers)."""
    settings = settings or SolverSettings()
    try:
        compiled = _compile(problem)
    except Exception as exc:  # any cvxpy failure is a solver failure here
        return _failure(f"cvxpy compilation failed: {type(exc).__name__}: {exc}")
    x0, y0, s0 = _warm_arrays(compiled, warm if settings.warm_start else None, problem)
    start = time.perf_counter()
    try:
        sol = _run_quietly(solver, compiled, settings, None if x0 is None else (x0, y0, s0))
    except Exception as exc:  # solvers raise assorted errors; all mean "no answer" (signals are not Exceptions)
        elapsed = time.perf_counter() - start
        return _failure(f"{solver.name} raised {type(exc).__name__}: {exc}", compiled.seconds, elapsed)
    elapsed = time.perf_counter() - start
    status = solver.status(sol.get("info", {}))
    if status == INTERRUPTED:
        raise Interrupted()  # SCS only ever catches SIGINT
    return _outcome(sol, problem, status, compiled.seconds, elapsed)


def _run_quietly(solver: ConicSolver, compiled: _Compiled, settings: SolverSettings, start: tuple | None) -> dict:
    """The solve with its prints off stdout, where a signal handler can stop it (lipcert.interrupts)."""
    with solver_stdout(settings.verbose):
        return run_interruptibly(lambda: solver.solve(_scs_data(compiled), compiled.cones, settings, start))


def _scs_data(compiled: _Compiled) -> dict[str, Any]:
    data = compiled.data
    return {"A": data["A"], "b": np.asarray(data["b"]).ravel(), "c": np.asarray(data["c"]).ravel()}


def _outcome(
    sol: dict[str, Any], problem: LipSdpProblem, status: str, compile_s: float, solve_s: float
) -> SolveOutcome:
    """Map the solver's answer back to the original network's units (see LipSdpProblem)."""
    info = sol.get("info", {})
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
    lam = (problem.lam_map @ x) * problem.lam_scale
    rho = float(x[-1]) * problem.rho_scale
    dual = float(info.get("dobj", nan)) * problem.rho_scale
    return SolveOutcome(status, lam, rho, dual, iterations, solve_s, compile_s, message, warm)
