"""One benchmark worker: load one model, run a list of configurations one after the other.

    python -m benchmarks.bench_worker JOB.json

Run by benchmarks/harness.py in a fresh process per model (and again after a time-out). It reports
JSON lines on its original stdout (`loaded`, then `start` and `done` per configuration); anything
else printed (by lipcert, SCS, ECLipsE) goes to stderr. Before each configuration the kernel's
peak-RSS mark is reset (/proc/self/clear_refs), so the peak memory reported is that
configuration's own (with the model loaded). Blocks run in this process (workers=1).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from tests.support import load_quietly, selected_lower  # noqa: E402


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_mib(resettable: bool) -> float:
    if resettable:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # whole process (not reset)


def selection_row(n_y: int, selection: str) -> np.ndarray | None:
    if selection == "all":
        return None
    from lipcert.outputs import logit_row

    return logit_row(n_y, int(selection.split()[1]))


def run_lipcert(loaded, cfg: dict, row: np.ndarray | None, measured: dict) -> dict:  # noqa: ANN001
    from lipcert import EstimateOptions, certify
    from lipcert.estimate import choose_plan, describe, plan_to_run
    from lipcert.outputs import select_outputs

    split = None if cfg["split"] in ("auto", "-") else tuple(int(p) for p in cfg["split"].split("x"))
    combine = None if cfg["combine"] in ("-", "single") else cfg["combine"]
    options = EstimateOptions(
        method=cfg["method"],
        split=split,
        combine=combine,
        max_block_size=cfg["max_block"],
        workers=1,
        selection=row,
        selection_label="all outputs" if row is None else cfg["selection"],
        # The full LipSDP baseline is one PSD constraint; everything else solves as lipcert would.
        chordal=not (cfg["split"] == "1x1" and cfg["combine"] == "single"),
    )
    reuse_key = None
    if cfg["method"] != "naive":
        with contextlib.suppress(Exception):  # only an optimisation: any failure here just means "solve it"
            net = loaded.network if row is None else select_outputs(loaded.network, row)
            # coupled over several groups becomes one chordal block, merged to its own target
            plan, target = plan_to_run(net, choose_plan(net, options), options)
            if all(group.n_tiles == 1 for group in plan.groups):  # no tiles: the combination mode is irrelevant
                reuse_key = (cfg["selection"], cfg["method"], describe(plan), options.chordal, target)
    if reuse_key in measured:
        out = dict(measured[reuse_key])
        out["note"] = f"same plan (no tiles) as `{out['config']}`: measured once, combination mode irrelevant"
        return out
    cert = certify(loaded, options=options)
    out = {
        "config": cfg["id"],
        "status": "ok",
        "bound": cert.bound,
        "plan": cert.plan,
        "combine_used": cert.combine or "-",
        "seconds": cert.seconds,
        "blocks": len(cert.blocks),
        "reused_blocks": cert.reused_blocks,
        "note": "; ".join(n for n in cert.notes if not n.startswith("identical-block reuse saved 0")),
    }
    if reuse_key is not None:
        measured[reuse_key] = dict(out)
    return out


def run_eclipse(loaded, cfg: dict, row: np.ndarray | None) -> dict:  # noqa: ANN001
    try:
        import torch
        from eclipse_nn import LipConstEstimator
    except ImportError as err:
        return {"status": "unavailable", "note": f"eclipse-nn is not importable ({err}); run `make bench-env`"}
    from lipcert.outputs import select_outputs
    from lipcert.sdp.sequential import chain_weights

    net = loaded.network if row is None else select_outputs(loaded.network, row)
    weights = chain_weights(net)
    if weights is None:
        return {"status": "n/a", "note": "not a plain fully connected chain"}
    alphas, betas = [float(layer.alpha) for layer in net.layers], [float(layer.beta) for layer in net.layers]
    start = time.perf_counter()
    estimator = LipConstEstimator(
        weights=[torch.tensor(w, dtype=torch.float64) for w in weights], alphas=alphas, betas=betas
    )
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        value = estimator.estimate("ECLipsE" if cfg["method"] == "eclipse" else "ECLipsE_Fast")
    seconds = time.perf_counter() - start
    said = " ".join(captured.getvalue().split())
    note = "peer's own value, not verified by lipcert"
    if said:
        note += f"; ECLipsE said: {said[:200]}"
    return {
        "status": "ok" if value is not None and np.isfinite(float(value)) else "error",
        "bound": float(value) if value is not None else None,
        "plan": f"layer by layer ({len(weights) - 1} stages)",
        "combine_used": "-",
        "seconds": seconds,
        "blocks": len(weights) - 1,
        "reused_blocks": 0,
        "note": note,
    }


def run_config(loaded, cfg: dict, measured: dict) -> dict:  # noqa: ANN001
    from lipcert import LipcertError, ModelTooLargeError

    row = selection_row(loaded.network.n_y, cfg["selection"])
    try:
        if cfg["method"] == "lower":
            start = time.perf_counter()
            value = selected_lower(loaded, row)
            return {"status": "ok", "bound": value, "plan": "hill climbing (lipcert.lower)", "combine_used": "-",
                    "seconds": time.perf_counter() - start, "blocks": 0, "reused_blocks": 0,
                    "note": "a lower bound, not a certificate"}  # fmt: skip
        if cfg["method"].startswith("eclipse"):
            return run_eclipse(loaded, cfg, row)
        return run_lipcert(loaded, cfg, row, measured)
    except ModelTooLargeError as err:
        return {"status": "infeasible", "note": str(err)}
    except LipcertError as err:
        return {"status": "error", "note": f"{type(err).__name__}: {err}"}
    except Exception as err:  # a bug or a solver crash: record it, go on with the next configuration
        traceback.print_exc()
        return {"status": "error", "note": f"{type(err).__name__}: {err}"}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # everything else printed goes to stderr

    def emit(**event: object) -> None:
        proto.write(json.dumps(event) + "\n")
        proto.flush()

    start = time.perf_counter()
    loaded = load_quietly(Path(job["model_path"]))
    from lipcert.estimate import effective_lmi_size

    net = loaded.network
    emit(event="loaded", seconds=time.perf_counter() - start, n_x=net.n_x, n_w=net.n_w, n_y=net.n_y,
         lmi=effective_lmi_size(net))  # fmt: skip
    measured: dict = {}
    for cfg in job["configs"]:
        emit(event="start", id=cfg["id"])
        resettable = reset_peak()
        result = run_config(loaded, cfg, measured)
        result.pop("config", None)
        result["peak_mib"] = peak_mib(resettable)
        emit(event="done", id=cfg["id"], result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
