"""The gain of bounding class pairs f_i - f_j instead of the whole output; logit 7 against GLipSDP's peers.

    .venv/bin/python -m benchmarks.bench_pairs [--quick] [--full-limit 1000] [--jobs 1] [--models NAME ...]
        [--save-pairs DIR]

1. Gain: per model, the certified bound of the whole output f, and of every class pair f_i - f_j
   (largest, median, smallest), with the same method for both: the full LipSDP (one block,
   --split 1x1) where its effective LMI side is at most --full-limit, else the default automatic
   plan. A radius from the whole output is margin / (sqrt(2) L(f)) (||e_i - e_j|| = sqrt(2)); from
   pair bounds it is margin / L(f_i - f_j). So "radius gain" = sqrt(2) L(f) / L(pair).
   Pair times: all 45 pairs in sequence, sharing a block cache with the whole-output run (with the
   automatic plan, every group before the output map is solved once). --save-pairs DIR writes each
   model's pair bounds as DIR/MODEL.pairs.json, the file `lipcert radius --bounds` and
   benchmarks/bench_radius.py --bounds-dir read.
2. Logit 7 of the GLipSDP digits networks (../shared/anchors/glipsdp) against the peers' values.
   The peers' LipSDP and LipLT numbers for cnn2/cnn3 describe a scrambled network (see
   ../shared/anchors/README.md): compare those rows with the product and GLipSDP only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from lipcert.estimate import EstimateOptions, effective_lmi_size, estimate  # noqa: E402
from lipcert.load import LoadedModel, load_model  # noqa: E402
from lipcert.outputs import logit_row  # noqa: E402
from lipcert.pairs import estimate_pairs
from lipcert.report.documents import pairs_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = ["digits_chain", "digits_tanh", "digits_residual"]
SHARED_MODELS = ["mnistfc__mnist-net_256x2.onnx", "eran__mnist_relu_9_200.onnx"]
PEERS = {  # logit 7: exact product, LipSDP-Neuron (MOSEK), GLipSDP, LipLT; from ../shared/anchors/README.md
    "digits_fnn2_seed0.onnx": (7.0922, 5.1097, 5.1097, 6.0642),
    "digits_fnn3_seed0.onnx": (14.694, 9.7286, 9.7286, 12.050),
    "digits_cnn2_seed0.onnx": (11.604, 5.1111, 10.579, 7.1208),
    "digits_cnn3_seed0.onnx": (33.920, 11.2005, 30.719, 19.667),
}
SCRAMBLED = {"digits_cnn2_seed0.onnx": 9.197, "digits_cnn3_seed0.onnx": 25.18}  # LipLT re-computed on the real nets


@dataclass
class GainRow:
    model: str
    lmi: int
    plan: str
    full: float
    full_seconds: float
    pairs: list[float]
    pairs_seconds: float


def load(path: Path) -> LoadedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(path)


def options_for(loaded: LoadedModel, full_limit: int, jobs: int) -> tuple[EstimateOptions, str]:
    size = effective_lmi_size(loaded.network)
    if size <= full_limit:
        return EstimateOptions(split=(1, 1), max_block_size=full_limit, workers=jobs), "full LipSDP (1x1)"
    return EstimateOptions(workers=jobs), "automatic plan"


def gain_row(path: Path, full_limit: int, jobs: int, save_pairs: Path | None = None) -> GainRow:
    loaded = load(path)
    options, label = options_for(loaded, full_limit, jobs)
    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as cache:
        options = replace(options, cache_dir=Path(cache))
        start = time.perf_counter()
        full = estimate(loaded, options)
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        pairs = estimate_pairs(loaded, options, progress=None)
        pairs_seconds = time.perf_counter() - start
    if save_pairs is not None:
        save_pairs.mkdir(parents=True, exist_ok=True)
        report = json.dumps(pairs_json(loaded, pairs, full), indent=2) + "\n"
        (save_pairs / f"{path.stem}.pairs.json").write_text(report, encoding="utf-8")
    if label == "automatic plan":
        label += f": {full.plan}"
    print(
        f"  {path.name}: full {full.bound:.5g} in {full_seconds:.1f} s; 45 pairs in {pairs_seconds:.1f} s", flush=True
    )
    lmi = effective_lmi_size(loaded.network)
    return GainRow(path.stem, lmi, label, full.bound, full_seconds, [p.bound for p in pairs], pairs_seconds)


def gain_table(rows: list[GainRow]) -> str:
    lines = [
        "| model | LMI side | method | full output L(f) | √2·L(f) | largest pair | median pair | smallest pair "
        "| radius gain (median) | radius gain (worst pair) | time full (s) | time 45 pairs (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        root2 = np.sqrt(2) * r.full
        median = statistics.median(r.pairs)
        lines.append(
            f"| {r.model} | {r.lmi} | {r.plan} | {r.full:.5g} | {root2:.5g} | {max(r.pairs):.5g} | {median:.5g} "
            f"| {min(r.pairs):.5g} | {root2 / median:.2f}× | {root2 / max(r.pairs):.2f}× | {r.full_seconds:.1f} "
            f"| {r.pairs_seconds:.1f} |"
        )
    return "\n".join(lines)


def selected_lower(loaded: LoadedModel, row: np.ndarray) -> float:
    """lipcert.lower's hill climbing on x -> row @ f(x)."""
    from lipcert.lower import lower_bound
    from lipcert.outputs import selected_module

    return lower_bound(selected_module(loaded.module, row), loaded.input_shape).value


def peer_table(full_limit: int, jobs: int, quick: bool) -> str:
    lines = [
        "| network | LMI side | our product | peer product | our LipSDP-Neuron | method | time (s) "
        "| peer LipSDP (MOSEK) | ours / peer LipSDP | peer GLipSDP | peer LipLT | our lower (hill climb) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for file, (product, lipsdp, glipsdp, liplt) in PEERS.items():
        path = SHARED / "anchors" / "glipsdp" / file
        if not path.exists() or (quick and "cnn" in file):
            continue
        loaded = load(path)
        row = logit_row(loaded.network.n_y, 7)
        naive = estimate(loaded, EstimateOptions(method="naive", selection=row)).bound
        options, label = options_for(loaded, full_limit, jobs)
        start = time.perf_counter()
        cert = estimate(loaded, replace(options, selection=row, selection_label="logit 7"))
        seconds = time.perf_counter() - start
        if label == "automatic plan":
            label += f": {cert.plan}"
        lower = selected_lower(loaded, row)
        scrambled = file in SCRAMBLED
        peer_sdp = f"{lipsdp:.5g} (scrambled net)" if scrambled else f"{lipsdp:.5g}"
        ratio = "n/a (scrambled)" if scrambled else f"{cert.bound / lipsdp:.5f}"
        peer_liplt = f"{liplt:.5g} (scrambled; real net {SCRAMBLED[file]:.4g})" if scrambled else f"{liplt:.5g}"
        lines.append(
            f"| {path.stem} | {effective_lmi_size(loaded.network)} | {naive:.5g} | {product:.5g} | {cert.bound:.5g} "
            f"| {label} | {seconds:.1f} | {peer_sdp} | {ratio} | {glipsdp:.5g} | {peer_liplt} | {lower:.4g} |"
        )
        print(f"  {file}: logit 7 {cert.bound:.5g} ({label}) in {seconds:.1f} s", flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sample models and the fnn peers only")
    parser.add_argument("--full-limit", type=int, default=1000, help="largest LMI side solved as one block")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes per estimate")
    parser.add_argument("--models", nargs="*", help="gain table: only models whose file name contains one of these")
    parser.add_argument("--save-pairs", type=Path, help="write each model's pair bounds to DIR/MODEL.pairs.json")
    parser.add_argument("--skip-gain", action="store_true")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args(argv)

    if not args.skip_gain:
        paths = [REPO / "sample_models" / f"{name}.onnx" for name in SAMPLES]
        if not args.quick:
            paths += [SHARED / "models" / name for name in SHARED_MODELS if (SHARED / "models" / name).exists()]
        if args.models:
            paths = [p for p in paths if any(m in p.name for m in args.models)]
        print("gain:", flush=True)
        rows = [gain_row(path, args.full_limit, args.jobs, args.save_pairs) for path in paths]
        print("\n## Class-pair bounds against the whole-output bound\n")
        print(gain_table(rows))
    if not args.skip_peers:
        print("\nlogit 7:", flush=True)
        table = peer_table(args.full_limit, args.jobs, args.quick)
        print("\n## Logit 7 of the GLipSDP digits networks (standardised input)\n")
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
