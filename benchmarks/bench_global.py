"""Whole-network LipSDP-Neuron by descent on ρ*(λ), verified in float64 (issue 13's engine).

Standalone (not a test). Each model runs in its own process, so that the peak RSS
(getrusage ru_maxrss, which counts C allocations) is that model's own:

    PYTHONPATH=. OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_global.py [names...]

Per model: the start (the chain recursion's point for chains whose layers are at most
CHAIN_WIDTH wide, else the per-layer profile start of descent.layer_profile_start), its
verified bound, the descent (descent.minimise_rho) within the model's time budget, the
verified bound at its best point, total seconds, peak RSS, the library (QDLDL) factor times
of the activation block and of the lifted proof matrix, and the load average before/after.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
BUDGETS = {  # seconds for the whole model (start, descent, verification), the targets
    "mnistfc__mnist-net_256x2": 60,
    "eran__mnist_relu_9_200": 120,
    "oval21__cifar_base_kw": 300,
    "oval21__cifar_wide_kw": 300,
    "oval21__cifar_deep_kw": 300,
    "cifar10_resnet__resnet_2b": 300,
    "verivital__Convnet_avgpool": 300,
}
VERIFY_RESERVE = 0.15  # fraction of the budget kept for the final verification


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def run_one(name: str) -> dict:
    warnings.simplefilter("ignore")
    import numpy as np

    from lipcert.defaults import CHAIN_WIDTH
    from lipcert.load import load_model
    from lipcert.sdp import descent
    from lipcert.sdp.lifted import lifted_matrix
    from lipcert.sdp.schur import SchurOperator
    from lipcert.sdp.sequential import chain_point, chain_weights
    from lipcert.sdp.sparse_psd import ldl_factor
    from lipcert.sdp.verify import verify_multipliers

    row: dict = {"model": name, "load_before": loadavg()}
    t_load = time.perf_counter()
    net = load_model(str(MODELS / f"{name}.onnx")).network
    row.update(load_seconds=round(time.perf_counter() - t_load, 1), lmi=net.lmi_size, n_x=net.n_x, n_w=net.n_w)
    budget = BUDGETS.get(name, 300)
    t0 = time.perf_counter()
    blocks = chain_weights(net) if max(layer.size for layer in net.layers) <= CHAIN_WIDTH else None
    lam = chain_point(net) if blocks is not None else None
    row["start_kind"] = "chain recursion" if lam is not None else "layer profile"
    if lam is None:
        lam = descent.layer_profile_start(net)
    row["start_seconds"] = round(time.perf_counter() - t0, 1)
    t = time.perf_counter()
    op = SchurOperator(net, lam)
    row["factor_R_seconds"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ldl_factor(lifted_matrix(net, lam, 1.0))
    row["factor_lifted_seconds"] = round(time.perf_counter() - t, 3)
    del op
    start_check = verify_multipliers(net, lam)
    row["start_bound"] = start_check.bound
    elapsed = time.perf_counter() - t0
    result = descent.minimise_rho(net, lam, iterations=1000, seconds=max(budget * (1 - VERIFY_RESERVE) - elapsed, 1))
    row.update(
        descent_seconds=round(result.seconds, 1),
        iterations=result.iterations,
        evaluations=result.evaluations,
        descent_estimate=float(np.sqrt(result.rho)),
    )
    final = verify_multipliers(net, result.lam)
    row.update(
        bound=final.bound,
        how=final.how,
        seconds=round(time.perf_counter() - t0, 1),
        peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        load_after=loadavg(),
        history=[(round(s, 1), float(np.sqrt(r))) for s, r in result.history[:: max(1, len(result.history) // 12)]],
    )
    return row


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1])), flush=True)
        return
    names = argv or list(BUDGETS)
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else json.dumps({"model": name, "error": proc.stderr[-2000:]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
