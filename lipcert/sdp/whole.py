"""One certificate for the whole network from any multipliers (MATH.md §5): start, descend, prove once.

Any λ ≥ 0 with R(λ) ≺ 0 gives the whole-network bound sqrt(ρ*(λ)) once proven on the full LMI, so
no depth product is paid. Where λ comes from:

- the chain recursion (sequential.chain_point), for chains;
- the layer profile (descent.layer_profile_start), for any form (residual Add, concatenation);
- multipliers stitched from a plan's solved blocks (lipcert.stitch), when there are any.

The best start by ρ* is descended per neuron (descent.minimise_rho: a fixed iteration count, the
time only as a safety stop, so the bound is reproducible) and the best point is verified by the
one verifier (dense up to DENSE_LIMIT, sparse above). The start itself is verified too, so a
descent that cannot be proven never loses what the start had.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lipcert.network.form import Network
from lipcert.sdp.descent import layer_profile_start, minimise_rho
from lipcert.sdp.schur import NotCertified, schur_rho
from lipcert.sdp.sequential import chain_point
from lipcert.sdp.verify import Verification, verify_multipliers

Start = tuple[str, np.ndarray]  # (what it is, per-neuron λ)


@dataclass(frozen=True)
class WholeCertificate:
    verification: Verification  # the proven whole-network bound (or why there is none)
    start: str  # the start that was descended
    start_rho: float  # ρ* at it: an estimate
    rho: float  # ρ* at the descent's best point: an estimate
    iterations: int
    seconds: float

    @property
    def bound(self) -> float:
        return self.verification.bound

    def describe(self) -> str:
        if not self.verification.certified:
            return f"whole network: not certified ({self.verification.how})"
        return (
            f"whole network: {self.bound:.6g} from the {self.start} (√ρ* {np.sqrt(self.start_rho):.6g}), "
            f"{self.iterations} descent steps, proven on the full LMI ({self.seconds:.1f} s)"
        )


def default_starts(net: Network) -> list[Start]:
    """The chain recursion's point where the network is a chain, else the layer profile."""
    chain = chain_point(net)
    if chain is not None:
        return [("chain recursion", chain)]
    profile = layer_profile_start(net)
    return [("layer profile", profile)] if profile is not None else []


def rho_or_inf(net: Network, lam: np.ndarray) -> float:
    """ρ*(λ), +inf where R(λ) is not ≺ 0: an estimate for choosing, not a bound."""
    try:
        return schur_rho(net, lam)
    except NotCertified:
        return float("inf")


def whole_network_certificate(
    net: Network,
    starts: Sequence[Start],
    iterations: int,
    seconds: float,
    extension: tuple[float, Callable[[float], bool]] | None = None,
) -> WholeCertificate | None:
    """The best start by ρ*, descended and proven; None when no start has R(λ) ≺ 0.

    extension = (seconds', wants): past `seconds`, the descent goes on to seconds' if wants(ρ*).
    """
    begin = time.perf_counter()
    scored = [(rho_or_inf(net, lam), label, lam) for label, lam in starts if lam is not None]
    scored = [s for s in scored if np.isfinite(s[0])]
    if not scored or net.n_w == 0:
        return None
    start_rho, label, lam0 = min(scored, key=lambda s: s[0])
    spent = time.perf_counter() - begin
    if extension is not None:
        extension = (max(extension[0] - spent, 0.0), extension[1])
    result = minimise_rho(net, lam0, iterations=iterations, seconds=max(seconds - spent, 0.0), extension=extension)
    check = verify_multipliers(net, result.lam)
    if not check.certified and (at_start := verify_multipliers(net, lam0)).certified:
        check = at_start
    return WholeCertificate(check, label, start_rho, result.rho, result.iterations, time.perf_counter() - begin)
