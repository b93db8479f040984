"""From solved blocks to one certified bound: group bounds, their product, the whole-network certificate.

Every candidate here is proven, so the smallest is certified:

- the product of the depth groups' bounds (each group: its tiles combined by its rule, MATH.md §4,
  or its naive bound where that is smaller);
- the whole-network certificate (lipcert.sdp.whole), from the chain recursion or the layer
  profile and, where blocks were solved, from their multipliers stitched together (lipcert.stitch);
- the naive bound of the whole network.

`auto` takes the smallest; `global` the whole-network certificate (or naive, if smaller); the
explicit modes (paper, overlap, pou, coupled) their product, so that they can be compared.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from lipcert.blocks import PreparedGroup
from lipcert.combine import RULES
from lipcert.jobs import BlockOutcome
from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.partition.plan import Plan
from lipcert.result import BlockResult
from lipcert.sdp.sequential import descend_layer_scales
from lipcert.sdp.whole import WholeCertificate, rho_or_inf, whole_network_certificate
from lipcert.stitch import group_neurons, stitched_multipliers


def combine_groups(
    groups: list[PreparedGroup], outcomes: dict[str, BlockOutcome]
) -> tuple[list[BlockResult], list[float], list[str]]:
    """Per block its result, per group its bound (min of its rule's and its naive bound), and notes."""
    results: list[BlockResult] = []
    bounds: list[float] = []
    notes: list[str] = []
    seen: set[str] = set()
    for group in groups:
        group_outcomes = [outcomes[job.key] for job in group.jobs]
        for tile, (job, outcome) in enumerate(zip(group.jobs, group_outcomes)):
            results.append(block_result(group.index, tile, outcome, job.key in seen))
            seen.add(job.key)
        values = [o.bound for o in group_outcomes]
        bound = RULES[group.rule].bound(values, [t.input_index for t in group.tiles], group.net.n_x)
        naive = naive_bound(group.net)
        if naive < bound:  # both are sound; report the tighter, and say so
            notes.append(f"group {group.label}: the naive bound {naive:.6g} beat {group.rule} {bound:.6g}")
            bound = naive
        bounds.append(bound)
    return results, bounds, notes


def block_result(group: int, tile: int, outcome: BlockOutcome, reused: bool) -> BlockResult:
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


def stitched_certificate(
    net: Network,
    plan: Plan,
    groups: list[PreparedGroup],
    outcomes: dict[str, BlockOutcome],
    group_bounds: list[float],
    iterations: int,
    seconds: float,
) -> WholeCertificate | None:
    """The blocks' multipliers stitched, their group scales searched, descended and proven once."""
    lam = stitched_multipliers(net, plan, groups, outcomes, group_bounds)
    if lam is None:
        return None
    spans = [s for s in group_neurons(net, plan) if s is not None]
    value = rho_or_inf(net, lam)
    if not np.isfinite(value):
        return None
    if len(spans) > 1:
        lam = descend_layer_scales(net, lam, value, 0.25 * seconds, blocks=spans)
    return whole_network_certificate(net, [("stitched block multipliers", lam)], iterations, seconds)


def product_floor(groups: list[PreparedGroup]) -> float:
    """A number the product of these groups' certified bounds cannot go below (an estimate).

    Each group's bound holds for every function of its slope class, so for the linear map of
    any slope vector s in [α, β]ⁿ too: it is at least max_s ||J_g(s)||₂, a maximum of a convex
    function over a box, so at a vertex. The vertex is sought by ascent: with (u, v) the top
    singular pair of J_g(s), d(uᵀJ_g(s)v)/ds_j is the backward signal at neuron j times its
    forward pre-activation, so s_j = β_j where that product is positive, α_j elsewhere, repeated
    from all-β. The norms are Lanczos estimates (from below), so the floor is an underestimate:
    blocks are skipped only when their product cannot beat what is already proven.
    """
    floor = 1.0
    for group in groups:
        floor *= worst_vertex_norm(group.net)
    return floor


def worst_vertex_norm(net: Network, rounds: int = 8) -> float:
    """max over the slope box's vertices of ||J(s)||₂, by the sign ascent above (an estimate from below)."""
    if net.n_x == 0 or net.n_y == 0:
        return 0.0
    slopes, best = net.beta.copy(), 0.0
    for _ in range(rounds):
        value, t, g = _linear_norm(net, slopes)
        best = max(best, value)
        better = np.where(t * g > 0, net.beta, net.alpha)
        if np.array_equal(better, slopes):
            break
        slopes = better
    return best


def _linear_norm(net: Network, slopes: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """||C + D diag(s)(A + B J_w)||₂ by Lanczos on matrix-free products (an estimate from below), and at
    its top singular pair (u, v) each neuron's forward pre-activation and backward signal."""
    A, B, C, D = (m.tocsr() for m in (net.A, net.B, net.C, net.D))
    Bt, At, Ct, Dt = B.T.tocsr(), A.T.tocsr(), C.T.tocsr(), D.T.tocsr()
    layers = net.layers

    def forward(x: np.ndarray, pre: np.ndarray | None = None) -> np.ndarray:
        x = np.ravel(x)
        w = np.zeros(net.n_w)
        for layer in layers:
            rows = slice(layer.start, layer.stop)
            v = A[rows] @ x + B[rows] @ w
            if pre is not None:
                pre[rows] = v
            w[rows] = slopes[rows] * v
        return C @ x + D @ w

    def backward(y: np.ndarray, signal: np.ndarray | None = None) -> np.ndarray:
        y = np.ravel(y)
        gw = Dt @ y
        gx = Ct @ y
        for layer in reversed(layers):
            rows = slice(layer.start, layer.stop)
            if signal is not None:
                signal[rows] = gw[rows]
            gv = np.zeros(net.n_w)
            gv[rows] = slopes[rows] * gw[rows]
            gw = gw + Bt @ gv
            gx = gx + At @ gv
        return gx

    op = spla.LinearOperator((net.n_y, net.n_x), matvec=forward, rmatvec=backward, dtype=np.float64)
    if min(net.n_x, net.n_y) <= 2:
        jac = np.column_stack([forward(e) for e in np.eye(net.n_x)])
        U, sig, Vt = np.linalg.svd(jac)
        value, u, v = float(sig[0]), U[:, 0], Vt[0]
    else:
        v0 = np.random.default_rng(1).standard_normal(min(net.n_x, net.n_y))
        try:
            U, sig, Vt = spla.svds(op, k=1, v0=v0, tol=1e-3, maxiter=50)
            value, u, v = float(sig[0]), U[:, 0], Vt[0]
        except spla.ArpackNoConvergence:
            return 0.0, np.zeros(net.n_w), np.zeros(net.n_w)
    pre, signal = np.zeros(net.n_w), np.zeros(net.n_w)
    forward(v, pre)
    backward(u, signal)
    return value, pre, signal
