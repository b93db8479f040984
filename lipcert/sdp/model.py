"""The cvxpy model of one block's LipSDP: one PSD constraint, chordal cliques, or coupled tiles.

Every form is the same problem: minimise ρ' = θ[-1] over θ subject to PSD parts
reshape(G_c θ + g_c) ⪰ 0, θ[:n_nonneg] ≥ 0 and K θ ≤ 0. A part is a slice of the one LMI
assembly (lipcert.sdp.lipsdp.multiplier_terms), so the three forms can never disagree about
the LMI; they differ only in how its entries are shared out (lipcert.sdp.chordal, .coupled).

Solving happens in a balanced network (lipsdp.balance, inputs compressed for one constraint):
solver values are in its units, and LipSdpProblem maps them back. Verification always runs on
the network as given (lipcert.sdp.verify), so nothing here needs to be trusted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Network
from lipcert.sdp.chordal import chordal_parts, chordal_tree
from lipcert.sdp.coupled import coupled_parts
from lipcert.sdp.lipsdp import (
    balance,
    coefficient_matrix,
    compress_inputs,
    linear_lower_estimate,
    multiplier_groups,
    scale_inputs,
    scale_outputs,
    stacked_maps,
)
from lipcert.sdp.parts import Parts, PsdPart, prefix_map
from lipcert.vocabulary import Method


@dataclass
class LipSdpProblem:
    """The cvxpy model of one block and how its solver values map back to the block's units.

    `net` is the network as given (verification uses it); `solved_net` is the one the SDP is
    built on (input weights folded in, balanced, inputs compressed). Solver values are in
    solved_net's units: λ = lam_scale · λ', ρ = rho_scale · ρ'.
    """

    net: Network
    solved_net: Network
    method: Method
    input_weights: np.ndarray | None
    theta: cp.Variable
    problem: cp.Problem
    groups: np.ndarray  # multiplier index of each neuron
    lam_scale: np.ndarray
    rho_scale: float
    build_seconds: float
    lam_map: sp.csr_matrix  # λ' = lam_map @ θ
    compiled: object | None = field(default=None, repr=False)  # SCS data, cached by solve.py
    part_sizes: tuple[int, ...] = ()  # decomposed models: the side of each PSD constraint

    @property
    def n_multipliers(self) -> int:
        return self.lam_map.shape[0]

    @property
    def lmi_size(self) -> int:
        return self.net.lmi_size

    @property
    def solved_lmi_size(self) -> int:
        """The side of the largest PSD constraint SCS sees."""
        return max(self.part_sizes) if self.part_sizes else self.solved_net.lmi_size

    def per_neuron(self, lam: np.ndarray) -> np.ndarray:
        """Per-neuron multipliers of `net` from multipliers in original units."""
        return np.asarray(lam, dtype=np.float64)[self.groups]


def build_problem(
    net: Network,
    method: Method = Method.NEURON,
    input_weights: np.ndarray | None = None,
    compress: bool = True,
    clique_target: int | None = None,
    tiles: Sequence | None = None,
    slacks: bool = True,
) -> LipSdpProblem:
    """Assemble the cvxpy model of LipSDP-Neuron or LipSDP-Layer for one block.

    One PSD constraint by default (inputs compressed, MATH.md §2). With clique_target, one per
    clique of the LMI's chordal extension, cliques merged up to that side (the same value). With
    tiles (the group's tiles, MATH.md §4d), one per tile with split multipliers, input weights
    and overlap slacks (coupled; slacks=False leaves them out, for comparison). Decomposed models
    keep the inputs uncompressed: compression would make the input columns dense.
    """
    start = time.perf_counter()
    method = Method(method)
    solved = net if input_weights is None else scale_inputs(net, input_weights)
    solved, d, c = balance(solved)
    if compress and clique_target is None and tiles is None:
        solved = compress_inputs(solved)
    # Normalise so that the SDP value ρ' is ≥ 1 but not much larger: SCS's tolerance is then
    # relative to ρ' (with ρ' ≪ 1 its absolute part dominates and eps=1e-3 can mean a
    # several-% error in ρ). A linearisation's norm is a lower bound on the SDP value.
    lower = linear_lower_estimate(solved)
    if lower > 0:
        solved, c = scale_outputs(solved, 1.0 / lower), c / lower
    groups = multiplier_groups(net, method)
    lam_scale = np.empty(int(groups.max(initial=-1)) + 1)
    lam_scale[groups] = 1.0 / (c * c * d * d)  # d is constant on a layer, so Layer is consistent
    parts = _parts(solved, method, clique_target, tiles, slacks)
    theta, problem = cvxpy_problem(parts)
    return LipSdpProblem(
        net=net,
        solved_net=solved,
        method=method,
        input_weights=input_weights,
        theta=theta,
        problem=problem,
        groups=groups,
        lam_scale=lam_scale,
        rho_scale=1.0 / (c * c),
        build_seconds=time.perf_counter() - start,
        lam_map=parts.lam_map,
        part_sizes=parts.sizes,
    )


def _parts(net: Network, method: Method, clique_target: int | None, tiles: Sequence | None, slacks: bool) -> Parts:
    if tiles is not None:
        return coupled_parts(net, method, tiles, slacks)
    if clique_target is not None:
        return chordal_parts(net, method, chordal_tree(net, clique_target))
    return single_part(net, method)


def single_part(net: Network, method: Method) -> Parts:
    """The whole LMI as one PSD constraint: −L(λ', ρ') ⪰ 0 over θ = (λ', ρ')."""
    n, n_x = net.lmi_size, net.n_x
    F = coefficient_matrix(net, method)
    n_mult = F.shape[1]
    # The ρ column is −vec(EₓᵀEₓ); negated throughout so that the constraint reads G θ + g ⪰ 0.
    x_diag = np.arange(n_x) * (n + 1)
    rho_col = sp.csc_matrix((np.ones(n_x), (x_diag, np.zeros(n_x, dtype=np.int64))), shape=(n * n, 1))
    G = sp.hstack([-F, rho_col], format="csr")
    _, Y = stacked_maps(net)
    g = -(Y.T @ Y).toarray().ravel(order="F")
    return Parts((PsdPart(G, g, n),), n_mult + 1, n_mult, prefix_map(n_mult, n_mult + 1))


def cvxpy_problem(parts: Parts) -> tuple[cp.Variable, cp.Problem]:
    """min θ[-1] subject to every part ⪰ 0, θ[:n_nonneg] ≥ 0 and K θ ≤ 0: the one cvxpy model."""
    theta = cp.Variable(parts.n_theta, name="theta")
    # PSD(X) constrains the symmetric part of X; every part is symmetric by construction, and
    # cvxpy maps it to SCS's triangular cone directly (no n² symmetry equality constraints).
    constraints = [cp.reshape(p.G @ theta + p.g, (p.side, p.side), order="F") >> 0 for p in parts.parts]
    if parts.linear is not None:
        constraints.append(parts.linear @ theta <= 0)
    constraints.append(theta[: parts.n_nonneg] >= 0)
    return theta, cp.Problem(cp.Minimize(theta[parts.n_theta - 1]), constraints)
