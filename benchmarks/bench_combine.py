"""Every combination mode of MATH.md §4 side by side on one small conv net; prints a markdown table.

    .venv/bin/python -m benchmarks.bench_combine [--eps 1e-4] [--seed 0]

The net: Conv2d(1→4, 3×3, pad 1) → ReLU → Conv2d(4→4, 3×3, pad 1) on an 8×8 input (MATH.md §4's
example shape), certified in memory with lipcert.certify, small enough for a full LipSDP. Modes,
for a 2×2 and a 4×4 grid: (a) paper, (b) overlap, (c) partition of unity, (d) coupled, and the
coupled SDP without its overlap slacks; then the full LipSDP. Every bound is verified in float64;
identical tiles are solved once. Times are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

import lipcert
from lipcert.defaults import SolverSettings
from lipcert.partition.tiles import extract_tile, spatial_tiles
from lipcert.sdp.model import build_problem
from lipcert.sdp.solve import solve_lipsdp
from lipcert.sdp.verify import verify_multipliers

INPUT_SHAPE = (1, 8, 8)
MODES = ("paper", "overlap", "pou", "coupled")


def example_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()


def jacobian_lower(net, samples: int, seed: int) -> float:  # noqa: ANN001 - a lipcert Network
    """max ||J(x)||_2 over random inputs, J the exact Jacobian of the form: a lower bound on L."""
    rng = np.random.default_rng(seed)
    with threadpool_limits(1):  # small SVDs: threaded BLAS only adds overhead
        return max(float(np.linalg.norm(net.jacobian(rng.standard_normal(net.n_x)), 2)) for _ in range(samples))


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def coupled_without_slacks(net, grid: int, settings: SolverSettings) -> float:  # noqa: ANN001 - a Network
    """Mode (d) with the pairwise slacks left out: the SDP is looser; its multipliers are verified as always."""
    tiles = [extract_tile(net, t) for t in spatial_tiles(net.output_shape, grid, grid)]
    outcome = solve_lipsdp(build_problem(net, tiles=tiles, slacks=False), settings)
    return verify_multipliers(net, outcome.multipliers).bound


def grid_modes(loaded, grid: int, settings: SolverSettings) -> dict[str, tuple[float, float, str]]:  # noqa: ANN001
    """Bound, seconds and a note for each mode on a grid × grid partition."""
    solver = {"eps": settings.eps}
    out = {}
    for mode in MODES:
        cert, seconds = timed(lambda m=mode: lipcert.certify(loaded, split=(grid, grid), combine=m, solver=solver))
        distinct = len(cert.blocks) - cert.reused_blocks
        out[mode] = (cert.bound, seconds, f"{distinct}/{len(cert.blocks)} block SDPs")
    bound, seconds = timed(lambda: coupled_without_slacks(loaded.network, grid, settings))
    out["coupled, no slacks"] = (bound, seconds, "one SDP, no overlap slacks")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eps", type=float, default=1e-4, help="SCS tolerance of every SDP (verified anyway)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded = lipcert.load_module(example_model(args.seed), INPUT_SHAPE)
    net = loaded.network
    settings = SolverSettings(eps=args.eps)
    lower, lower_s = timed(lambda: jacobian_lower(net, 2000, args.seed))
    naive, naive_s = timed(lambda: lipcert.certify(loaded, method="naive").bound)
    full, full_s = timed(lambda: lipcert.certify(loaded, split=(1, 1), solver={"eps": args.eps}).bound)
    sizes = f"n_x={net.n_x}, n_w={net.n_w}, full LMI side {net.lmi_size}"
    print(f"net: 8×8 input, 4 channels, ReLU; {sizes}; eps={args.eps:g}")
    print()
    print("| mode | 2×2 bound | 2×2 s | 4×4 bound | 4×4 s | notes (2×2; 4×4) |")
    print("|---|---|---|---|---|---|")
    rows = {g: grid_modes(loaded, g, settings) for g in (2, 4)}
    for mode in rows[2]:
        (b2, s2, n2), (b4, s4, n4) = rows[2][mode], rows[4][mode]
        print(f"| {mode} | {b2:.4f} | {s2:.1f} | {b4:.4f} | {s4:.1f} | {n2}; {n4} |")
    print(f"| full LipSDP (--split 1x1) | {full:.4f} | {full_s:.1f} | | | one LMI of side {net.lmi_size} |")
    print(f"| naive product | {naive:.4f} | {naive_s:.1f} | | | |")
    print(f"| empirical lower bound | {lower:.4f} | {lower_s:.1f} | | | max exact ||J(x)|| over 2000 random x |")


if __name__ == "__main__":
    main()
