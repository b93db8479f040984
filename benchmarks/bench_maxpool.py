"""MaxPool rewritten into ReLU neurons against cutting the network at its pools (README, MaxPool).

    .venv/bin/python -m benchmarks.bench_maxpool [--nets vgg overlap lenet]

For each net of tests/maxpool_nets.py: the empirical lower bound, the full LipSDP over the
rewritten pools, the pool-cut naive bound and the cut-at-pool LipSDP product, their ratios and
times, and the load average, as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.maxpool_nets import NETS, measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["vgg", "overlap", "lenet"], choices=sorted(NETS))
    args = parser.parse_args()
    print(
        "| net | neurons | lower | full LipSDP (s) | cut-at-pool LipSDP (s) | pool-cut naive "
        "| full / cut LipSDP | full / naive cut | full / lower | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.nets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = measure(NETS[name]())
        load = Path("/proc/loadavg").read_text().split()[0]
        print(
            f"| {name} | {m.neurons} | {m.lower:.4f} | {m.full:.4f} ({m.seconds_full:.0f}) | "
            f"{m.lipsdp_cut:.4f} ({m.seconds_cut:.0f}) | {m.naive_cut:.4f} | {m.full / m.lipsdp_cut:.3f} | "
            f"{m.full / m.naive_cut:.3f} | {m.full / m.lower:.2f} | {load} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
