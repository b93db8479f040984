"""How close an L2 PGD attack gets to lipcert's certified radii on the sample models (issue 7).

    .venv/bin/python -m benchmarks.bench_radius [--models digits_chain digits_tanh] [--inputs 50]
        [--bounds-dir DIR] [--max-iters N] [--restarts 10] [--steps 50]

For each model: the first --inputs held-out digits images (sample_models/train.py's split), their
certified radii r from the class-pair bounds (full LipSDP, --split 1x1), then lipcert.attack on
every certified input:

- "flips inside 0.999 r": PGD at radius 0.999 r (must be 0; tests/test_radius.py asserts it);
- "attack / certified": for each input, the smallest radius at which PGD flipped the prediction
  (doubling from r, then bisection), or the largest radius tried without a flip when it found none,
  divided by r. 1 would mean the certificate is tight for that input; it is never below 1.

Pair bounds: DIR/MODEL.pairs.json when --bounds-dir holds one (`lipcert estimate MODEL --pairs all
--split 1x1 --format json --output ...`, or benchmarks/bench_pairs.py --save-pairs DIR), else
computed here (SCS capped at --max-iters when given: sound, a little looser) and written there.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from lipcert.estimate import EstimateOptions  # noqa: E402
from lipcert.load import LoadedModel, load_model  # noqa: E402
from lipcert.pairs import estimate_pairs
from lipcert.radius import certified_radii, logits, read_pair_bounds  # noqa: E402
from lipcert.report.documents import pairs_json  # noqa: E402
from tests.support import attack_radius, pgd_margin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def held_out_images(count: int) -> np.ndarray:
    """The first `count` held-out images of sample_models/train.py's split, (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).reshape(-1, 1, 8, 8)
    _, x_test = train_test_split(x, test_size=0.25, random_state=0)
    return np.ascontiguousarray(x_test[:count], dtype=np.float64)


def pair_bounds(loaded: LoadedModel, folder: Path | None, max_iters: int | None) -> tuple[dict, str]:
    name = loaded.path.stem
    path = folder / f"{name}.pairs.json" if folder is not None else None
    if path is not None and path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return read_pair_bounds(path, loaded.sha256), f"{data['method']}, {data['plan']} (from {path.name})"
    solver = {"max_iters": max_iters} if max_iters else {}
    start = time.perf_counter()
    results = estimate_pairs(loaded, EstimateOptions(split=(1, 1), workers=1, solver=solver))
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(pairs_json(loaded, results, None), indent=2) + "\n", encoding="utf-8")
    label = f"{results[0].certificate.method}, full LipSDP" + (f", SCS {max_iters} iterations" if max_iters else "")
    print(f"  {name}: 45 pair bounds in {seconds:.1f} s", flush=True)
    return {(r.i, r.j): r.bound for r in results}, label


def measure(name: str, count: int, folder: Path | None, max_iters: int | None, restarts: int, steps: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(REPO / "sample_models" / f"{name}.onnx")
        model = copy.deepcopy(loaded.module).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    bounds, label = pair_bounds(loaded, folder, max_iters)
    images = held_out_images(count)
    radii = certified_radii(logits(loaded.module, images), bounds)
    certified = radii.radius > 0
    x0 = torch.from_numpy(images[certified])
    label_t = torch.from_numpy(radii.predicted[certified])
    r = radii.radius[certified]
    start = time.perf_counter()
    best, _ = pgd_margin(model, x0, label_t, torch.from_numpy(0.999 * r), steps, restarts)
    inside = int((best.numpy() >= 0).sum())
    attack = attack_radius(model, x0, label_t, r, steps=steps, restarts=restarts)
    seconds = time.perf_counter() - start
    ratio = attack.closest / r
    found = attack.found
    assert np.all(ratio >= 1 - 1e-9) and inside == 0, f"{name}: PGD flipped a certified input"
    print(f"  {name}: attack in {seconds:.1f} s", flush=True)
    flipped = ratio[found]
    return (
        f"| {name} | {label} | {len(images)} | {int(certified.sum())} | {inside} | {int(found.sum())} "
        f"| {ratio.min():.3f} | {np.median(ratio):.3f} | {ratio.max():.3f} "
        f"| {np.median(flipped) if flipped.size else float('nan'):.3f} | {np.median(r):.4f} "
        f"| {np.median(attack.closest):.4f} | {seconds:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["digits_chain", "digits_tanh"])
    parser.add_argument("--inputs", type=int, default=50, help="first N held-out images")
    parser.add_argument("--bounds-dir", type=Path, help="read (or write) MODEL.pairs.json pair bounds here")
    parser.add_argument("--max-iters", type=int, help="SCS iteration cap for pair bounds computed here")
    parser.add_argument("--restarts", type=int, default=10, help="PGD restarts per radius")
    parser.add_argument("--steps", type=int, default=50, help="PGD steps per restart")
    args = parser.parse_args(argv)
    rows = [measure(m, args.inputs, args.bounds_dir, args.max_iters, args.restarts, args.steps) for m in args.models]
    print(f"\n## L2 PGD ({args.restarts} restarts x {args.steps} steps) against certified radii\n")
    print(
        "| model | pair bounds | inputs | certified | PGD flips inside 0.999 r | flip found | attack / certified "
        "min | median | max | median (flips only) | certified r (median) | attack radius (median) | attack time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
