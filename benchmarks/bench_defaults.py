"""lipcert's default (`lipcert estimate MODEL --format json --jobs 2`) on every shared model, for one
or more checkouts side by side: bound, how it was combined, wall time, peak RSS, load average.

    python -m benchmarks.bench_defaults [--repo PATH ...] [--timeout S] [models...]

Each (model, checkout) runs as its own CLI process with PYTHONPATH=checkout, interleaved model by
model so that the checkouts see the same machine load; the peak RSS is the process tree's
(os.wait4's ru_maxrss: the largest of the CLI and its waited-for workers). A run over the timeout
is killed and reported as such. Prints one JSON line per run, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT.parent / "shared" / "models"


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def timed_estimate(repo: Path, model: Path, timeout: float, extra: tuple[str, ...] = ()) -> tuple[dict, str, str]:
    """`lipcert estimate MODEL --format json --jobs 2 EXTRA` from checkout `repo`, single-threaded BLAS:
    (row with load, seconds, peak RSS of its process tree, exit, timed_out; stdout; stderr)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    row: dict = {"load_before": loadavg()}
    cmd = [sys.executable, "-m", "lipcert", "estimate", str(model), "--format", "json", "--jobs", "2", *extra]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=repo, start_new_session=True)
        status, usage = _wait(proc.pid, began + timeout)
        if usage is None:
            os.killpg(proc.pid, signal.SIGKILL)
            row["timed_out"] = True
            _, status, usage = os.wait4(proc.pid, 0)
        row["seconds"] = round(time.perf_counter() - began, 1)
        row["peak_rss_mib"] = round(usage.ru_maxrss / 1024)  # this run's process tree only
        row["exit"] = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return row, out.read(), err.read()


def run(repo: Path, model: Path, timeout: float) -> dict:
    timed, text, errors = timed_estimate(repo, model, timeout)
    row: dict = {"model": model.stem, "repo": str(repo), **timed}
    try:
        cert = json.loads(text)
        row.update(bound=cert["bound"], combined_by=cert.get("combined_by", "product"), plan=cert["plan"])
        row.update(proven(cert))
    except (json.JSONDecodeError, KeyError):
        row["error"] = errors[-400:]
    row["load_after"] = loadavg()
    return row


def proven(cert: dict) -> dict:
    """The whole-network ("global") certificate and the group product, from the report's notes
    (the bound is one of them, or naive; the notes give the others): None where not computed."""
    found: dict = {"global": None, "product": None}
    kind = {"whole": "global", "product": "product"}.get(cert.get("combined_by", "product"))
    if kind is not None:
        found[kind] = cert["bound"]
    for note in cert.get("notes", []):
        if "also proven:" not in note:
            continue
        for part in note.split("also proven:", 1)[1].split(", "):
            name, _, value = part.strip().rpartition(" ")
            key = "global" if name.startswith("whole") else "product" if name.startswith("product") else None
            if key is not None:
                found[key] = float(value) if found[key] is None else min(found[key], float(value))
    return found


def _wait(pid: int, until: float):  # noqa: ANN202 - (wait status, resource.struct_rusage | None)
    """Reap the process with its own rusage (os.wait4), or (0, None) at `until`."""
    while time.perf_counter() < until:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        time.sleep(0.5)
    return 0, None


def table(rows: list[dict], repos: list[Path]) -> str:
    head = "| model | " + " | ".join(f"{r.name}: bound (by) [global; product], s, MiB" for r in repos) + " | load |"
    lines = [head, "|---" * (len(repos) + 2) + "|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells, loads = [], []
        for repo in repos:
            row = next((r for r in rows if r["model"] == model and r["repo"] == str(repo)), None)
            if row is None:
                cells.append("–")
                continue
            loads.append(f"{row['load_before']:.1f}")
            what = "timed out" if row.get("timed_out") else f"exit {row['exit']}" if "bound" not in row else None
            value = what or f"{row['bound']:.6g} ({row['combined_by']})"
            extra = [f"{name} {row[name]:.6g}" for name in ("global", "product") if row.get(name) is not None]
            value += f" [{'; '.join(extra)}]" if extra and what is None else ""
            cells.append(f"{value}, {row['seconds']:.0f} s, {row['peak_rss_mib']}")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {'/'.join(loads)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append", type=Path, help="checkout to run (repeatable; default: this one)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("models", nargs="*")
    args = parser.parse_args(argv)
    repos = [p.resolve() for p in (args.repo or [ROOT])]
    models = sorted(SHARED_MODELS.glob("*.onnx"))
    if args.models:
        models = [m for m in models if any(name in m.stem for name in args.models)]
    rows = []
    for model in models:
        for repo in repos:
            rows.append(run(repo, model, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows, repos))


if __name__ == "__main__":
    main(sys.argv[1:])
