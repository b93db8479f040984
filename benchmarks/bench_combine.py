"""Every combination mode of MATH.md §4 side by side on one small conv net; prints a markdown table.

    .venv/bin/python benchmarks/bench_combine.py [--eps 1e-4] [--seed 0]

The net: Conv2d(1→4, 3×3, pad 1) → ReLU → Conv2d(4→4, 3×3, pad 1) on an 8×8 input
(MATH.md §4's example shape), traced by lipcert's own tracer, small enough for a full
LipSDP. Modes, for a 2×2 and a 4×4 grid: (a) paper, (b) overlap, (c) partition of
unity, (d) coupled with and without the overlap slacks; and the full LipSDP. All SDP
bounds are verified in float64 (lipcert.partition.coupled); identical tiles (same
block key and input weights) are solved once. Times are wall-clock seconds; paper
and overlap share the same tile solves.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import fx, nn

from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.network.trace import trace_network
from lipcert.partition.combine import combine_overlap, combine_paper, combine_pou, pou_weights
from lipcert.partition.coupled import SdpSettings, coupled_lipsdp, weighted_lipsdp
from lipcert.partition.tiles import Tile, block_key, extract_tile, spatial_tiles
from lipcert.sdp.certify import certify_block
from lipcert.sdp.solve import SolverSettings

INPUT_SHAPE = (1, 1, 8, 8)


def example_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    return model.double().eval()


def jacobian_lower(net: Network, samples: int, seed: int) -> float:
    """max ||J(x)||_2 over random inputs, J the exact Jacobian of the form: a lower bound on L."""
    rng = np.random.default_rng(seed)
    with threadpool_limits(1):  # small SVDs: threaded BLAS only adds overhead
        return max(float(np.linalg.norm(net.jacobian(rng.standard_normal(net.n_x)), 2)) for _ in range(samples))


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


class TileSolver:
    """Weighted tile LipSDP, solved once per distinct (block, weights)."""

    def __init__(self, settings: SdpSettings) -> None:
        self.settings, self.cache, self.solves = settings, {}, 0

    def rho(self, tile: Tile, weights: np.ndarray | None = None) -> float:
        key = (block_key(tile.net), None if weights is None else weights.tobytes())
        if key not in self.cache:
            self.cache[key] = weighted_lipsdp(tile.net, weights, self.settings).rho
            self.solves += 1
        return self.cache[key]


def grid_modes(net: Network, grid: int, settings: SdpSettings) -> dict[str, tuple[float, float, str]]:
    """Bound, seconds and a note for each mode on a grid × grid partition."""
    tiles = [extract_tile(net, t) for t in spatial_tiles(net.output_shape, grid, grid)]
    K = [t.input_index for t in tiles]
    plain = TileSolver(settings)
    rhos, seconds = timed(lambda: [plain.rho(t) for t in tiles])
    bounds = [combine_pou([r]) for r in rhos]  # sqrt, rounded up
    note = f"{plain.solves}/{len(tiles)} tile SDPs"
    out = {
        "(a) paper": (combine_paper(bounds), seconds, note),
        "(b) overlap": (combine_overlap(bounds, K, net.n_x), seconds, note),
    }
    weighted = TileSolver(settings)
    weights = pou_weights(K, net.n_x)
    pou, seconds = timed(lambda: combine_pou([weighted.rho(t, w) for t, w in zip(tiles, weights)]))
    out["(c) pou"] = (pou, seconds, f"{weighted.solves}/{len(tiles)} tile SDPs")
    for slacks in (True, False):
        cert, seconds = timed(lambda s=slacks: coupled_lipsdp(net, tiles, _with(settings, slacks=s)))
        name = "(d) coupled" + ("" if slacks else ", no slacks")
        out[name] = (cert.bound, seconds, f"{cert.n_variables} variables, verified at eps={cert.eps:g}")
    return out


def _with(settings: SdpSettings, **changes: object) -> SdpSettings:
    return dataclasses.replace(settings, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eps", type=float, default=1e-4, help="SCS tolerance of every SDP (verified anyway)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = example_model(args.seed)
    net = trace_network(fx.symbolic_trace(model), INPUT_SHAPE)
    settings = SdpSettings(eps=args.eps)
    lower, lower_s = timed(lambda: jacobian_lower(net, 2000, args.seed))
    naive, naive_s = timed(lambda: naive_bound(net))
    full, full_s = timed(lambda: weighted_lipsdp(net, settings=settings).bound)
    sdp, sdp_s = timed(lambda: certify_block(net, "neuron", SolverSettings()).bound)
    sizes = f"n_x={net.n_x}, n_w={net.n_w}, full LMI side {net.lmi_size}"
    print(f"net: 8×8 input, 4 channels, ReLU; {sizes}; eps={args.eps:g}")
    print()
    print("| mode | 2×2 bound | 2×2 s | 4×4 bound | 4×4 s | notes (2×2; 4×4) |")
    print("|---|---|---|---|---|---|")
    rows = {g: grid_modes(net, g, settings) for g in (2, 4)}
    for mode in rows[2]:
        (b2, s2, n2), (b4, s4, n4) = rows[2][mode], rows[4][mode]
        print(f"| {mode} | {b2:.4f} | {s2:.1f} | {b4:.4f} | {s4:.1f} | {n2}; {n4} |")
    print(f"| full LipSDP (coupled.weighted_lipsdp) | {full:.4f} | {full_s:.1f} | | | one LMI of side {net.lmi_size} |")
    print(f"| full LipSDP (sdp.certify_block, defaults) | {sdp:.4f} | {sdp_s:.1f} | | | cross-check |")
    print(f"| naive product | {naive:.4f} | {naive_s:.1f} | | | |")
    print(f"| empirical lower bound | {lower:.4f} | {lower_s:.1f} | | | max exact ||J(x)|| over 2000 random x |")


if __name__ == "__main__":
    main()
