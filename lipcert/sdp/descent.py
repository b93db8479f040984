"""Per-neuron minimisation of the convex ρ*(λ) (MATH.md §5): LipSDP-Neuron without an SDP solver.

ρ*(λ) = max over unit u and all w of zᵀL(λ, 0)z, z = (u, w): a maximum of linear functions of
λ, so convex, nonsmooth where the top eigenvalue of the Schur complement is multiple (which it
is near the optimum), and +inf outside the open set where R(λ) ≺ 0.

The method: L-BFGS in θ = log λ on the entropic smoothing of the top eigenvalues,

    f_μ(λ) = θ₁ + μ log Σ_{i ≤ k} exp((θ_i − θ₁)/μ),   ∇f_μ = Σ_i p_i ∇θ_i,   p = softmax(θ/μ),

(θ_i the top k = 64 eigenvalues of the Schur complement, ∇θ_i their Danskin gradients,
schur.py), with μ = τ·ρ_best and τ from 3 down by ×0.3 per stage, a stage ending when the
exact best ρ* has not improved by 1e-4 for 5 iterations. With τ = 3 the weights are nearly
uniform: the first stages minimise (about) the mean of the top 64 eigenvalues, pushing the
whole top cluster down instead of chasing the current maximiser; where the top eigenspace is
multiple, the single-vector subgradient changes abruptly from point to point and gradient
methods zig-zag. The line search is a plain backtracking (Armijo) that treats ρ* = +inf (R no
longer ≺ 0) as a failed step, which is what stopped scipy's L-BFGS-B; when k has to grow (the
smoothed objective changes) the current point is re-evaluated. log λ keeps λ > 0 and makes
every layer's scale (eran: multipliers over many magnitudes) a unit step.

Chosen by measurement (mnistfc 256x2, 2 cores shared, load average 6–9; sqrt ρ*):
- from the chain recursion's point (453.57), 50 s each: verify.polish_multipliers 445.13;
  subgradient in log λ with steps η₀/√t (normalised) 358.45 / 367.63 / 392.40 for
  η₀ = 0.3 / 0.1 / 0.03; this method 314.36 (LipSDP-Neuron's optimum: 312.64);
- from the layer point (404.64), variants (with an earlier stage rule on f_μ, not ρ*): τ fixed at 1e-2: 353.0 after 40
  iterations; τ = 1e-3: 353.8, τ = 1e-1: 337.8 after 60; λ = λ₀∘x instead of log λ
  (convex, projected): 375.2 after 60; τ from 0.3: 322.0 after 150; from 1: 313.87 after 200
  (66 s); from 3: 313.55 after 200 (55 s). Memory 50 instead of 12 changed little (351.0 / 353.0).
- LOBPCG warm-started from the previous eigenvectors, to cut ARPACK's ~470 solves for 32 pairs
  on cifar_wide, did not converge in 12 block iterations: not used.

Everything is deterministic: a fixed iteration count, fixed start vectors (or the previous
eigenvector), a wall-clock budget only as a safety stop. The best point by the exact ρ* (not by
f_μ) is returned, never worse than the start; it is an estimate until verified.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lipcert.defaults import DENSE_LIMIT, PROOF_EVALUATIONS
from lipcert.linalg import blas_threads
from lipcert.network.form import Network
from lipcert.sdp.lifted import without_outputs
from lipcert.sdp.schur import NotCertified, SchurEigen, SchurOperator, rho_and_gradient, schur_eigen, schur_rho
from lipcert.sdp.verify import Verification, verify_multipliers

# Eigenvalues smoothed over. Dense: 64 (mnistfc 256x2: see the module text); the dense eigh costs
# little more for 64 than for 1 (0.18 s against 0.12 s per evaluation there, load 1.5). Sparse
# (each eigenvalue costs Lanczos steps, ~7 solves): measured on oval21 cifar_wide from the layer
# profile (√ρ* 10.29), 240 s each, load 1-2.5: k = 64 reached 5.473 in 27 iterations, 32 reached
# 4.806 in 40, 16 reached 4.765 in 48.
DENSE_K = 64
SPARSE_K = 16

# Once the smoothing is this sharp (τ), a stage that gains less than 1e-4 (relative) ends the
# descent. Measured on mnistfc 256x2 from the chain point: the stages after such a stall took
# 14 s of 42 and moved √ρ* from 314.752 to 314.745.
SHARP = 0.03


@dataclass
class DescentResult:
    lam: np.ndarray  # the best λ found (by ρ*)
    rho: float  # ρ*(lam): an estimate, not a bound
    start_rho: float
    evaluations: int
    iterations: int
    seconds: float
    history: list[tuple[float, float]] = field(default_factory=list)  # (seconds, best ρ*) per iteration


class _Objective:
    """ρ*(exp θ) and its smoothed version with memory of the best exact value seen."""

    def __init__(self, net: Network, k: int, k_max: int, input_weights: np.ndarray | None, tol: float) -> None:
        self.net, self.k, self.k_max, self.input_weights, self.tol = net, k, k_max, input_weights, tol
        self.best_rho, self.best_lam = float("inf"), None
        self.evaluations = 0
        self.seconds = 0.0  # spent in evaluations
        self.v0: np.ndarray | None = None
        self.k_grew = False

    def typical(self) -> float:
        """The mean seconds of one evaluation: a trial that would end past the deadline is not begun."""
        return self.seconds / max(self.evaluations, 1)

    def eigen(self, lam: np.ndarray) -> SchurEigen | None:
        self.evaluations += 1
        began = time.perf_counter()
        found = schur_eigen(self.net, lam, self.k, self.input_weights, v0=self.v0, tol=self.tol)
        self.seconds += time.perf_counter() - began
        if found is None or not np.isfinite(found.rho):
            return None
        self.v0 = found.vectors[:, 0].copy()
        if found.rho < self.best_rho:
            self.best_rho, self.best_lam = found.rho, lam.copy()
        return found

    def smoothed(self, theta: np.ndarray, mu: float) -> tuple[float, np.ndarray | None]:
        lam = np.exp(theta)
        found = self.eigen(lam)
        if found is None:
            return float("inf"), None
        values = found.values
        shifted = (values - values[0]) / mu
        weights = np.exp(shifted)
        total = float(weights.sum())
        p = weights / total
        if p[-1] > 1e-3 * p[0] and self.k < min(self.k_max, self.net.n_x):
            self.k = min(2 * self.k, self.k_max, self.net.n_x)  # the cluster is wider than k: see more
            self.k_grew = True
        value = float(values[0] + mu * np.log(total))
        grad_lam = p @ found.gradients
        return value, grad_lam * lam  # chain rule for λ = exp(θ)


def minimise_rho(
    net: Network,
    lam0: np.ndarray,
    iterations: int = 200,
    seconds: float = 300.0,
    input_weights: np.ndarray | None = None,
    smoothing: float = 3.0,
    smoothing_min: float = 1e-4,
    shrink: float = 0.3,
    patience: int = 5,
    memory: int = 12,
    k: int | None = None,
    k_max: int | None = None,
    tol: float = 1e-8,
    callback: Callable[[int, np.ndarray, float], None] | None = None,
    extension: tuple[float, Callable[[float], bool]] | None = None,
    reserve: float = PROOF_EVALUATIONS,
) -> DescentResult:
    """L-BFGS on the smoothed top eigenvalues in log λ; returns the best λ by ρ* (never worse than lam0).

    The smoothing is μ = τ·ρ_best with τ from `smoothing` down to `smoothing_min` (×`shrink`
    per stage); a stage ends when the exact best ρ* has not improved by 1e-4 (relative) for
    `patience` iterations or the line search fails, and the next one restarts from the best
    point with a fresh memory. lam0 must have R(lam0) ≺ 0 (else it is returned with ρ* = inf).
    Zero entries are lifted to 1e-12 of the mean (log λ needs λ > 0). The result is an
    estimate: verify it.

    k (and k_max, to which k grows when the smoothing weights are still large at the k-th
    eigenvalue): DENSE_K eigenvalues where the complement is dense, SPARSE_K where each costs
    Lanczos steps. extension = (seconds', wants): at the `seconds` budget, the descent goes on
    to seconds' (from its start) if wants(best ρ*) holds. Either budget includes the proof that
    follows: no trial is begun unless `reserve` mean evaluations would still be left after it.
    """
    sparse = net.lmi_size > DENSE_LIMIT
    k = k if k is not None else SPARSE_K if sparse else DENSE_K
    k_max = k_max if k_max is not None else k
    start = time.perf_counter()
    deadline = start + seconds
    lam0 = np.asarray(lam0, dtype=np.float64).copy()
    positive = lam0[lam0 > 0]
    floor = 1e-12 * (float(positive.mean()) if positive.size else 1.0)
    obj = _Objective(net, k, k_max, input_weights, tol)
    start_eigen = obj.eigen(lam0)
    start_rho = float("inf") if start_eigen is None else start_eigen.rho
    result = DescentResult(lam0, start_rho, start_rho, 1, 0, 0.0)
    if start_eigen is None:
        return result
    tau = smoothing
    theta, mu = np.log(np.maximum(lam0, floor)), tau * start_rho
    f, g = obj.smoothed(theta, mu)
    if g is None:  # lifting zeros left the domain: nothing to descend from
        return result
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    reference, since = obj.best_rho, 0
    stage_start = obj.best_rho
    it = 0

    def needed() -> float:  # one more trial and the proof after it
        return (1.0 + reserve) * obj.typical()

    def out_of_time() -> bool:
        nonlocal deadline, extension
        if time.perf_counter() + needed() < deadline:
            return False
        if extension is not None and extension[1](obj.best_rho):
            deadline, extension = start + extension[0], None
        return time.perf_counter() + needed() >= deadline

    for it in range(1, iterations + 1):
        if out_of_time():
            break
        search_until = deadline - needed()
        accepted, theta_new, f_new, g_new = _line_search(obj, theta, f, g, mu, s_hist, y_hist, search_until)
        if obj.k_grew:  # the smoothed objective itself changed (more eigenvalues): re-evaluate here
            obj.k_grew = False
            f, g = obj.smoothed(theta, mu)
            s_hist.clear()
            y_hist.clear()
            accepted = g is not None
        elif accepted:
            s, y = theta_new - theta, g_new - g
            if float(s @ y) > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
                s_hist.append(s)
                y_hist.append(y)
                if len(s_hist) > memory:
                    s_hist.pop(0)
                    y_hist.pop(0)
            theta, f, g = theta_new, f_new, g_new
        if obj.best_rho < reference * (1.0 - 1e-4):
            reference, since = obj.best_rho, 0
        else:
            since += 1
        if not accepted and time.perf_counter() >= search_until:
            if out_of_time():
                break  # the search stopped for time, not for want of progress: no new stage
            continue  # extended: search again from the same point
        stage_over = not accepted or since >= patience
        if stage_over and tau <= SHARP and obj.best_rho > stage_start * (1.0 - 1e-4):
            break  # a sharp stage gained nothing: sharper ones would not either (see SHARP)
        if stage_over and tau > smoothing_min:
            stage_start = obj.best_rho
            tau = max(tau * shrink, smoothing_min)  # next stage: a sharper maximum, a fresh memory
            theta, mu = np.log(np.maximum(obj.best_lam, floor)), tau * obj.best_rho
            f, g = obj.smoothed(theta, mu)
            obj.k_grew = False
            s_hist.clear()
            y_hist.clear()
            reference, since = obj.best_rho, 0
            if g is None:
                break
        elif stage_over:
            break  # the sharpest stage has stalled too
        result.history.append((time.perf_counter() - start, obj.best_rho))
        if callback is not None:
            callback(it, obj.best_lam, obj.best_rho)
    result.lam, result.rho = obj.best_lam, obj.best_rho
    result.evaluations, result.iterations = obj.evaluations, it
    result.seconds = time.perf_counter() - start
    return result


def _line_search(
    obj: _Objective,
    theta: np.ndarray,
    f: float,
    g: np.ndarray,
    mu: float,
    s_hist: list[np.ndarray],
    y_hist: list[np.ndarray],
    deadline: float = float("inf"),
) -> tuple[bool, np.ndarray, float, np.ndarray | None]:
    """Backtracking (Armijo) along the L-BFGS direction; ρ* = +inf (R not ≺ 0) is a failed step.
    Past the deadline (a safety stop) the search gives up between trials."""
    d = -_two_loop(g, s_hist, y_hist)
    slope = float(g @ d)
    if slope >= 0 or not np.isfinite(slope):  # not a descent direction: restart from the gradient
        s_hist.clear()
        y_hist.clear()
        d, slope = -g, -float(g @ g)
    step = 1.0 if s_hist else min(1.0, 0.1 / max(float(np.abs(d).max()), 1e-300))
    for _ in range(30):
        if time.perf_counter() >= deadline:
            return False, theta, f, None
        trial = theta + step * d
        f_new, g_new = obj.smoothed(trial, mu)
        if obj.k_grew:
            return False, theta, f, None
        if g_new is not None and f_new <= f + 1e-4 * step * slope:
            return True, trial, f_new, g_new
        step *= 0.5 if g_new is not None else 0.25
    return False, theta, f, None


def _two_loop(g: np.ndarray, s_hist: list[np.ndarray], y_hist: list[np.ndarray]) -> np.ndarray:
    """The L-BFGS product H·g (Nocedal & Wright, Algorithm 7.4)."""
    q = g.copy()
    alphas = []
    for s, y in zip(reversed(s_hist), reversed(y_hist)):
        a = float(s @ q) / float(y @ s)
        alphas.append(a)
        q -= a * y
    if s_hist:
        s, y = s_hist[-1], y_hist[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
        b = float(y @ q) / float(y @ s)
        q += (a - b) * s
    return q


# --- starting points ---------------------------------------------------------------------


def _rho(net: Network, lam: np.ndarray, input_weights: np.ndarray | None = None) -> float:
    try:
        return schur_rho(net, lam, input_weights)
    except NotCertified:
        return float("inf")


def layer_profile_start(
    net: Network, input_weights: np.ndarray | None = None, golden_steps: int = 10
) -> np.ndarray | None:
    """A λ with R(λ) ≺ 0 for any form: one value per layer, c·r^(−k) for the k-th layer.

    A uniform λ cannot work in general: R(λ) = −Λ + sym(Λ diag((α+β)/2) B) − BᵀΛ diag(αβ) B + DᵀD,
    and the first part is homogeneous in λ, so scaling never fixes a cross term ||W|| (α+β)/2 > 1.
    Under the congruence diag(λ)^(-1/2), the block coupling layers l > k is scaled by
    (λ_l/λ_k)^(1/2) = r^(−(l−k)/2), so a large enough ratio r makes the homogeneous part ≺ 0 for
    any strictly lower-triangular B (chains, skips, concatenations); then c·(−R₀) − DᵀD ≻ 0 for
    all c above a threshold. Both are found with factorizations only (no eigenvalues): the
    smallest r = 4^i whose homogeneous part is ≺ 0, the threshold of c by bisection on log₂ c;
    then c by a golden-section search of the convex ρ*(c·profile) above it. For a single layer
    the profile is the uniform λ.
    """
    index = np.empty(net.n_w)
    for k, layer in enumerate(net.layers):
        index[layer.start : layer.stop] = k
    homogeneous = without_outputs(net)
    for log2_r in range(0, 62, 2):
        profile = np.exp2(-log2_r * index)
        profile /= profile.max()
        if not SchurOperator(homogeneous, profile).ok:
            continue
        threshold = _feasibility_threshold(net, profile)
        if threshold is None:
            return None
        return _best_scale(net, np.exp2(threshold + 1.0) * profile, input_weights, golden_steps)
    return None


def _feasibility_threshold(net: Network, profile: np.ndarray) -> float | None:
    """log₂ of (about, to 1/8) the smallest c with R(c·profile) ≺ 0, c·profile's R₀ part being ≺ 0."""

    def ok(e: float) -> bool:
        return SchurOperator(net, np.exp2(e) * profile).ok

    hi = 0.0
    while not ok(hi):
        hi += 8.0
        if hi > 1000:
            return None
    lo = hi - 8.0
    while ok(lo):
        hi, lo = lo, lo - 8.0
        if lo < -1000:
            return hi
    while hi - lo > 0.125:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _best_scale(net: Network, lam: np.ndarray, input_weights: np.ndarray | None, steps: int = 24) -> np.ndarray:
    """min over s > 0 of ρ*(s λ) (convex along the ray, +inf below the feasibility threshold) by
    doubling then golden section on log₂ s; lam must be feasible."""
    value = _rho(net, lam, input_weights)
    lo = 0.0
    while True:  # grow until ρ* stops decreasing
        trial = _rho(net, lam * 2.0 ** (lo + 1.0), input_weights)
        if not trial < value or lo > 60:
            break
        lo, value = lo + 1.0, trial
    a, b = lo - 1.0, lo + 1.0
    golden = 0.5 * (np.sqrt(5.0) - 1.0)
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = _rho(net, lam * 2.0**c, input_weights), _rho(net, lam * 2.0**d, input_weights)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = _rho(net, lam * 2.0**c, input_weights)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = _rho(net, lam * 2.0**d, input_weights)
    best = min((fc, c), (fd, d), (value, lo))
    return lam * 2.0 ** best[1]


# --- verification along the way -------------------------------------------------------------


def minimise_and_verify(
    net: Network,
    lam0: np.ndarray,
    iterations: int = 200,
    seconds: float = 300.0,
    verify_every: int = 50,
    input_weights: np.ndarray | None = None,
    **options: object,
) -> tuple[Verification, DescentResult]:
    """minimise_rho, verifying the best point every `verify_every` iterations and at the end;
    returns the best *verified* point (the start's verification included) and the descent."""
    best = verify_multipliers(net, lam0, input_weights)
    checked: list[Verification] = [best]

    def check(it: int, lam: np.ndarray, rho: float) -> None:
        if it % verify_every == 0:
            checked.append(verify_multipliers(net, lam, input_weights))

    result = minimise_rho(net, lam0, iterations, seconds, input_weights, callback=check, **options)
    checked.append(verify_multipliers(net, result.lam, input_weights))
    certified = [v for v in checked if v.certified]
    if certified:
        best = min(certified, key=lambda v: v.rho)
    return best, result


__all__ = [
    "DescentResult",
    "layer_profile_start",
    "minimise_and_verify",
    "minimise_rho",
    "polish_multipliers",
]


# --- a few projected-gradient steps (certify_block polishes a solver's multipliers with them) ------


def polish_multipliers(net: Network, lam: np.ndarray, groups: np.ndarray, steps: int = 10) -> np.ndarray:
    """Improve the solver's multipliers by projected gradient descent on the convex ρ*(λ).

    First-order solvers leave R nearly singular, where ρ*(λ) is steep: a few descent
    steps from there recover most of the gap between the verified and the optimal ρ,
    at the cost of a few Schur complements. λ has one entry per group (neuron or layer);
    the result is an estimate like its input, and must still be verified.
    """
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    with blas_threads(net.lmi_size):
        return _descend(net, lam, groups, steps)


def _descend(net: Network, lam: np.ndarray, groups: np.ndarray, steps: int) -> np.ndarray:
    rho, grad = _group_gradient(net, lam, groups)
    if not np.isfinite(rho) or net.n_x == 0:
        return lam
    step = 1e-2 * np.linalg.norm(lam) / max(float(np.linalg.norm(grad)), 1e-300)
    for _ in range(steps):
        while True:
            trial = np.maximum(lam - step * grad, 0.0)
            trial_rho, trial_grad = _group_gradient(net, trial, groups)
            if trial_rho < rho:
                break
            step *= 0.25
            if step * float(np.linalg.norm(grad)) < 1e-12 * float(np.linalg.norm(lam)):
                return lam
        improvement = (rho - trial_rho) / max(abs(rho), 1e-300)
        lam, rho, grad, step = trial, trial_rho, trial_grad, 2.0 * step
        if improvement < 1e-7:
            break
    return lam


def _group_gradient(net: Network, lam: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    rho, grad = rho_and_gradient(net, lam[groups])
    return rho, np.bincount(groups, weights=grad, minlength=lam.size)
