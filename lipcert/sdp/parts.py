"""A LipSDP model as PSD parts over one variable vector θ (what lipcert.sdp.model turns into cvxpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class PsdPart:
    """One PSD constraint: reshape(G θ + g, (side, side), column-major) ⪰ 0."""

    G: sp.csr_matrix  # (side², n_theta)
    g: np.ndarray  # (side²,)
    side: int


@dataclass(frozen=True)
class Parts:
    """A decomposition of the LMI into PSD parts over θ = (multipliers, extra variables, ρ')."""

    parts: tuple[PsdPart, ...]
    n_theta: int
    n_nonneg: int  # θ[:n_nonneg] ≥ 0
    lam_map: sp.csr_matrix  # (multipliers, n_theta): the method's multipliers λ' = lam_map @ θ
    linear: sp.csr_matrix | None = None  # rows K of K θ ≤ 0 (coupled tiles' input weights)
    sizes: tuple[int, ...] = ()  # the side of each part, when there are several


def prefix_map(n_mult: int, n_theta: int) -> sp.csr_matrix:
    """λ' = θ[:n_mult]: the multipliers are the first variables."""
    return sp.eye(n_mult, n_theta, format="csr")
