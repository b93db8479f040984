"""Benchmark the verified LipSDP core; prints markdown tables.

    .venv/bin/python -m benchmarks.bench_lipsdp [--quick]

1. Reference nets (../shared/anchors/lipsdp): verified Neuron/Layer bounds, time, ratio
   to the published (MOSEK) values, at the default SolverSettings.
2. SCS alone, eps ∈ {1e-2 … 1e-5}, cold or warm-started from the solve at the next
   looser eps: raw objective, verified bound of its multipliers, and after polishing.
3. certify_block as shipped, per start eps, single solve or warm continuation; the
   summary (total time against worst excess over the best verified bound) is what the
   SolverSettings defaults were chosen from ("verified bound per second").
4. cvxpy compile time against SCS time for LMIs of side ≥ 300.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
import scipy.sparse as sp

from lipcert.defaults import SolverSettings
from lipcert.network.activations import ACTIVATIONS
from lipcert.network.form import Layer, Network
from lipcert.sdp.certify import certify_block
from lipcert.sdp.model import build_problem
from lipcert.sdp.solve import solve_lipsdp
from lipcert.sdp.verify import polish_multipliers, verify_multipliers
from lipcert.vocabulary import Method

ANCHORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "anchors" / "lipsdp"
REFERENCE = {  # LipSDP README (MOSEK)
    "random_2-10-30-20-2": ("random_weights.mat", {Method.NEURON: 36.482, Method.LAYER: 39.839}),
    "mnist_784-50-10": ("mnist_weights.mat", {Method.NEURON: 24.366, Method.LAYER: 26.256}),
}
EPS_SWEEP = (1e-2, 1e-3, 1e-4, 1e-5)


def chain_network(weights: list[np.ndarray], activations: list[str] | None = None) -> Network:
    """x → W0 → φ → W1 → … → W_L as a Network (C = 0, zero biases)."""
    hidden = [w.shape[0] for w in weights[:-1]]
    activations = activations or ["relu"] * len(hidden)
    starts = np.concatenate([[0], np.cumsum(hidden)]).astype(int)
    n_w, n_x, n_y = int(starts[-1]), weights[0].shape[1], weights[-1].shape[0]
    A = sp.lil_matrix((n_w, n_x))
    B = sp.lil_matrix((n_w, n_w))
    D = sp.lil_matrix((n_y, n_w))
    A[: hidden[0]] = weights[0]
    for k in range(1, len(hidden)):
        B[starts[k] : starts[k + 1], starts[k - 1] : starts[k]] = weights[k]
    D[:, starts[-2] : starts[-1]] = weights[-1]
    layers = []
    for k, act in enumerate(activations):
        param = 0.1 if act == "leaky_relu" else 0.0
        a, b = ACTIVATIONS[act].slopes(param)
        layers.append(Layer(f"l{k}", act, int(starts[k]), int(starts[k + 1]), (hidden[k],), a, b, param))
    return Network(
        A.tocsr(),
        B.tocsr(),
        sp.csr_matrix((n_y, n_x)),
        D.tocsr(),
        np.zeros(n_w),
        np.zeros(n_y),
        tuple(layers),
        (n_x,),
        (n_y,),
    )


def reference_nets() -> dict[str, tuple[Network, dict[str, float]]]:
    nets = {}
    for name, (file, ref) in REFERENCE.items():
        path = ANCHORS / file
        if path.exists():
            weights = [np.asarray(w, dtype=np.float64) for w in sio.loadmat(path)["weights"].ravel()]
            nets[name] = (chain_network(weights), ref)
    return nets


def random_net(sizes: list[int], activations: list[str], seed: int) -> Network:
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((m, n)) / np.sqrt(n) for n, m in zip(sizes[:-1], sizes[1:])]
    return chain_network(weights, activations)


def sweep_nets(quick: bool) -> dict[str, Network]:
    nets = {name: net for name, (net, _) in reference_nets().items()}
    nets["mixed_16-60-60-60-5"] = random_net([16, 60, 60, 60, 5], ["leaky_relu", "tanh", "relu"], seed=1)
    if not quick:
        nets["relu_32-100-100-100-10"] = random_net([32, 100, 100, 100, 10], ["relu"] * 3, seed=0)
        nets["tanh_sigmoid_20-80-80-40-8"] = random_net([20, 80, 80, 40, 8], ["tanh", "tanh", "sigmoid"], seed=4)
    return nets


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def bench_reference() -> None:
    rows = []
    for name, (net, ref) in reference_nets().items():
        for method in (Method.NEURON, Method.LAYER):
            start = time.perf_counter()
            cert = certify_block(net, method)
            elapsed = time.perf_counter() - start
            rows.append(
                [
                    name,
                    method,
                    f"{cert.lmi_size}→{cert.lmi_size_solved}",
                    f"{cert.bound:.5f}",
                    f"{ref[method]:.3f}",
                    f"{cert.bound / ref[method]:.5f}",
                    f"{cert.raw_sqrt_objective:.5f}",
                    str(cert.iterations),
                    f"{elapsed:.2f}",
                    cert.source,
                ]
            )
    header = ["net", "method", "LMI", "verified", "reference", "ratio", "raw (not a bound)", "iters", "s", "source"]
    print("## Reference networks (default settings)\n")
    print(table(header, rows) if rows else "(anchors absent)")


@dataclass
class SweepRow:
    net: str
    method: str
    eps: float
    warm: bool
    iterations: int
    solve: float
    raw: float
    bound: float
    polished: float
    polish: float


def sweep_one(name: str, net: Network, method: str) -> list[SweepRow]:
    """SCS alone at each eps, cold or warm-started from the previous (looser) eps."""
    rows = []
    for warm in (False, True):
        problem = build_problem(net, method)
        previous = None
        for eps in EPS_SWEEP:
            outcome = solve_lipsdp(problem, SolverSettings(eps=eps), previous.warm if warm and previous else None)
            if outcome.multipliers is None:
                rows.append(SweepRow(name, method, eps, warm, outcome.iterations, 0, np.nan, np.inf, np.inf, 0))
                continue
            plain = verify_multipliers(net, problem.per_neuron(outcome.multipliers))
            start = time.perf_counter()
            lam = polish_multipliers(problem.solved_net, outcome.multipliers / problem.lam_scale, problem.groups)
            polish = time.perf_counter() - start
            polished = verify_multipliers(net, problem.per_neuron(lam * problem.lam_scale))
            raw = float(np.sqrt(outcome.raw_objective))
            row = SweepRow(
                name,
                method,
                eps,
                warm,
                outcome.iterations,
                outcome.solve_seconds,
                raw,
                plain.bound,
                polished.bound,
                polish,
            )
            rows.append(row)
            previous = outcome
    return rows


def bench_scs_sweep(nets: dict[str, Network]) -> None:
    print("\n## SCS alone: eps × warm start (warm: from the solve at the previous, looser eps)\n")
    print("Excess: verified bound over the best verified bound of that block in this table.\n")
    header = ["net", "method", "eps", "warm", "iters", "SCS s", "raw", "verified", "polished", "polish s", "excess"]
    rows = []
    for name, net in nets.items():
        for method in (Method.NEURON, Method.LAYER):
            results = sweep_one(name, net, method)
            best = min(min(r.bound, r.polished) for r in results)
            for r in results:
                excess = (r.polished / best - 1) * 100
                rows.append(
                    [
                        r.net,
                        r.method,
                        f"{r.eps:g}",
                        "yes" if r.warm else "no",
                        str(r.iterations),
                        f"{r.solve:.2f}",
                        f"{r.raw:.5f}",
                        f"{r.bound:.5f}",
                        f"{r.polished:.5f}",
                        f"{r.polish:.2f}",
                        f"{excess:.3f}%" if np.isfinite(excess) else "not certified",
                    ]
                )
            sys.stdout.flush()
    print(table(header, rows))


def pipeline_configs() -> list[tuple[str, SolverSettings]]:
    configs = []
    for eps in EPS_SWEEP:
        configs.append((f"{eps:g} single", SolverSettings(eps=eps, eps_min=eps)))
        configs.append((f"{eps:g} continuation", SolverSettings(eps=eps)))
    configs.append(("1e-3 continuation, SCS scale 0.1", SolverSettings(scale=0.1)))
    configs.append(("1e-3 continuation, no polish", SolverSettings(polish_steps=0)))
    return configs


def bench_pipeline(nets: dict[str, Network]) -> None:
    """certify_block as shipped: start eps × (single solve | warm continuation), and ablations."""
    print("\n## certify_block: start eps × (single solve | warm continuation), other settings default\n")
    print(f"Defaults: {SolverSettings()}\n")
    configs = pipeline_configs()
    results: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _ in configs}
    rows = []
    for name, net in nets.items():
        for method in (Method.NEURON, Method.LAYER):
            found = {}
            for label, settings in configs:
                start = time.perf_counter()
                cert = certify_block(net, method, settings)
                found[label] = (cert, time.perf_counter() - start)
            best = min(c.bound for c, _ in found.values())
            for label, (cert, elapsed) in found.items():
                excess = cert.bound / best - 1
                results[label].append((excess, elapsed, cert.iterations))
                rows.append(
                    [
                        name,
                        method,
                        label,
                        f"{cert.eps:g}",
                        str(cert.iterations),
                        f"{elapsed:.2f}",
                        f"{cert.bound:.5f}",
                        f"{excess * 100:.3f}%",
                        cert.source[:60],
                    ]
                )
            sys.stdout.flush()
    header = ["net", "method", "settings", "eps used", "iters", "total s", "verified", "excess", "source"]
    print(table(header, rows))
    print("\n### Summary per configuration (all blocks above)\n")
    summary = []
    for label, values in results.items():
        excess = np.array([e for e, _, _ in values])
        summary.append(
            [
                label,
                f"{sum(t for _, t, _ in values):.2f}",
                str(sum(i for _, _, i in values)),
                f"{excess.mean() * 100:.3f}%",
                f"{excess.max() * 100:.3f}%",
            ]
        )
    print(table(["settings", "total s", "SCS iters", "mean excess", "max excess"], summary))


def bench_compile(quick: bool) -> None:
    print("\n## cvxpy compile vs SCS solve (LMI side ≥ 300)\n")
    configs = [([40, 100, 100, 100, 10], 0), ([60, 150, 150, 10], 2)]
    if not quick:
        configs.append(([100, 200, 200, 200, 10], 3))
    rows = []
    for sizes, seed in configs:
        net = random_net(sizes, ["relu"] * (len(sizes) - 2), seed)
        for method in (Method.NEURON, Method.LAYER):
            start = time.perf_counter()
            problem = build_problem(net, method)
            build = time.perf_counter() - start
            outcome = solve_lipsdp(problem, SolverSettings())
            ratio = (build + outcome.compile_seconds) / outcome.solve_seconds
            rows.append(
                [
                    "-".join(map(str, sizes)),
                    method,
                    str(problem.solved_lmi_size),
                    f"{build:.3f}",
                    f"{outcome.compile_seconds:.3f}",
                    f"{outcome.solve_seconds:.2f}",
                    str(outcome.iterations),
                    f"{ratio * 100:.1f}%",
                ]
            )
    header = ["net", "method", "LMI", "build s", "cvxpy compile s", "SCS s", "iters", "(build+compile)/SCS"]
    print(table(header, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer networks")
    args = parser.parse_args()
    print(f"defaults: {SolverSettings()}\n")
    bench_reference()
    nets = sweep_nets(args.quick)
    bench_scs_sweep(nets)
    bench_pipeline(nets)
    bench_compile(args.quick)


if __name__ == "__main__":
    main()
