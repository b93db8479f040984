"""The benchmark harness behind `make bench` and `make bench-quick` (issue 6).

    python -m benchmarks.harness [--quick] [--fresh] [--models NAME ...] [--budget SECONDS] [--report-only]

For every model (benchmarks/bench_models.py) it runs, one after the other in the same run:
lipcert's empirical lower bound, the naive bound (certified product of spectral norms), the full
LipSDP-Neuron and -Layer (--split 1x1, --max-block-size raised to --full-limit), lipcert's four
combination modes at splits 2x2, 4x4 and the automatic plan, and ECLipsE / ECLipsE-Fast
(eclipse-nn, from .bench-deps) on fully connected chains. Each model runs in a fresh worker
process (python -m benchmarks.bench_worker), each configuration under a time limit (the worker is killed
and the row says "timeout"); peak memory is per configuration.

Rows go to results.csv (rewritten atomically after every configuration); a row already there for
the same lipcert commit and configuration is skipped unless --fresh (a time-out is retried when the
limit is now larger), so a long run can be done in pieces. RESULTS.md and the plots are rebuilt
from the CSV at the end (and alone with --report-only).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import hashlib
import json
import os
import platform
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_models import ModelSpec, all_models, build_scaling_model, scaling_name
from benchmarks.bench_report import newest_rows, write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = "benchmarks.bench_worker"  # run as a module from the repository root
DEFAULT_MAX_BLOCK = 600  # lipcert's own default --max-block-size
COMBINES = ("paper", "overlap", "pou", "coupled")
QUICK_BUDGET = 420.0  # s; plus the configuration running at that moment (at most the default's 90 s limit)
COLUMNS = [
    "commit", "lipcert_tree", "config_id", "model", "source", "family", "selection", "method", "split", "combine",
    "max_block", "status", "bound", "lower", "lower_source", "bound_over_lower", "naive", "bound_over_naive",
    "seconds", "load_seconds", "peak_mib", "blocks", "distinct_blocks", "reused_blocks", "plan", "n_x", "n_neurons",
    "lmi_side", "depth", "channels", "input_side", "time_limit", "machine", "load_avg", "timestamp", "note",
]  # fmt: skip


@dataclass(frozen=True)
class Config:
    model: str
    selection: str  # "all" or "logit 7"
    method: str  # "lower", "naive", "lipsdp-neuron", "lipsdp-layer", "eclipse", "eclipse-fast"
    split: str  # "1x1", "2x2", "4x4", "auto", or "-"
    combine: str  # a lipcert combination mode, "single" (one block) or "-"
    max_block: int

    @property
    def id(self) -> str:
        return f"{self.model}|{self.selection}|{self.method}|{self.split}|{self.combine}|{self.max_block}"

    @property
    def is_default(self) -> bool:
        return self.method == "lipsdp-neuron" and self.split == "auto" and self.combine == "auto"

    def to_json(self) -> dict:
        return {"id": self.id, **{k: getattr(self, k) for k in ("selection", "method", "split", "combine")},
                "max_block": self.max_block}  # fmt: skip


def configs_for(spec: ModelSpec, quick: bool, full_limit: int) -> list[Config]:
    """In run order: what every later row needs first (lower, naive), then the default, then the rest."""
    out: list[Config] = []
    for sel in spec.selections:

        def add(
            method: str, split: str = "-", combine: str = "-", block: int = DEFAULT_MAX_BLOCK, s: str = sel
        ) -> None:  # noqa: E501
            out.append(Config(spec.name, s, method, split, combine, block))

        add("lower")
        add("naive")
        add("lipsdp-neuron", "1x1", "single", full_limit)
        add("lipsdp-neuron", "auto", "auto")  # lipcert's default
        if spec.family == "fc":
            add("eclipse")
            add("eclipse-fast")
            if not quick or sel == "all":
                add("lipsdp-layer", "1x1", "single", full_limit)
            if not quick and sel == "all":
                for mode in ("paper", "overlap", "pou"):
                    add("lipsdp-neuron", "auto", mode)
            continue
        if sel != "all":  # a selected logit: the default and the paper's mode are enough
            add("lipsdp-neuron", "auto", "paper")
            continue
        if quick:
            add("lipsdp-neuron", "2x2", "paper")
            add("lipsdp-neuron", "2x2", "coupled")
            continue
        add("lipsdp-layer", "1x1", "single", full_limit)
        add("lipsdp-neuron", "auto", "paper")
        modes = ("paper", "coupled") if spec.source == "scaling" else COMBINES
        for split in ("2x2", "4x4"):
            for mode in modes:
                add("lipsdp-neuron", split, mode)
        if spec.source != "scaling":
            for mode in ("overlap", "pou", "coupled"):
                add("lipsdp-neuron", "auto", mode)
    return out


# ---------------------------------------------------------------------------------------------- environment


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def lipcert_commit() -> tuple[str, str]:
    """HEAD, and whether lipcert/ differs from it (a hash of the diff, so rows can be told apart)."""
    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    diff = git("diff", "HEAD", "--", "lipcert", "pyproject.toml")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "lipcert")
    if not diff and not untracked:
        return commit, "clean"
    digest = hashlib.sha1((diff + untracked).encode()).hexdigest()[:10]
    return commit, f"modified ({digest})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        memory = ""
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"


def dependency_versions() -> dict[str, str]:
    from importlib import metadata

    from lipcert.versions import versions

    found = {"python": platform.python_version(), **versions()}
    for package in ("threadpoolctl", "matplotlib"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    bench = [d.version for d in metadata.distributions(name="eclipse-nn", path=[str(REPO / ".bench-deps")])]
    found["eclipse-nn (.bench-deps)"] = bench[0] if bench else "not installed (make bench-env)"
    return found


# ---------------------------------------------------------------------------------------------- CSV


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict]) -> None:
    scratch = path.with_suffix(".csv.tmp")
    with open(scratch, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    scratch.replace(path)


def num(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None


def derive(rows: list[dict], known_lower: dict[tuple[str, str], tuple[float, str]]) -> None:
    """Fill lower, naive and the two ratios of every row from the same commit's lower and naive rows."""
    lower: dict[tuple, float] = {}
    naive: dict[tuple, float] = {}
    for r in rows:
        key = (r["commit"], r["model"], r["selection"])
        if r["status"] == "ok" and r["method"] == "lower":
            lower[key] = float(r["bound"])
        if r["status"] == "ok" and r["method"] == "naive":
            naive[key] = float(r["bound"])
    for r in rows:
        key = (r["commit"], r["model"], r["selection"])
        ours = lower.get(key)
        ref = known_lower.get((r["model"], r["selection"]))
        best, source = ours, "lipcert.lower (hill climbing)"
        if ref is not None and (best is None or ref[0] > best):
            best, source = ref
        r["lower"] = "" if best is None else repr(float(best))
        r["lower_source"] = "" if best is None else source
        r["naive"] = "" if key not in naive else repr(naive[key])
        bound = num(r.get("bound"))
        usable = bound is not None and r["status"] == "ok" and r["method"] != "lower"
        r["bound_over_lower"] = f"{bound / best:.4f}" if usable and best else ""
        r["bound_over_naive"] = f"{bound / naive[key]:.4f}" if usable and key in naive else ""


# ---------------------------------------------------------------------------------------------- running


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.csv = args.output_dir / "results.csv"
        self.commit, self.tree = lipcert_commit()
        self.machine = machine()
        self.rows = read_rows(self.csv)
        self.known_lower: dict[tuple[str, str], tuple[float, str]] = {}
        self.started = time.monotonic()
        self.stopped = False

    def limit(self, cfg: Config) -> float:
        return self.args.default_time_limit if cfg.is_default else self.args.time_limit

    def done(self, cfg: Config) -> bool:
        for r in self.rows:
            if r["commit"] == self.commit and r["config_id"] == cfg.id:
                retry = r["status"] == "timeout" and (num(r["time_limit"]) or 0) < self.limit(cfg)
                return not retry
        return False

    def over_budget(self) -> bool:
        return self.args.budget > 0 and time.monotonic() - self.started > self.args.budget

    def record(self, spec: ModelSpec, cfg: Config, info: dict, result: dict) -> None:
        depth, channels, side = spec.scaling or ("", "", "")
        blocks = result.get("blocks")
        reused = result.get("reused_blocks")
        bound = result.get("bound")
        row = {
            "commit": self.commit,
            "lipcert_tree": self.tree,
            "config_id": cfg.id,
            "model": spec.name,
            "source": spec.source,
            "family": spec.family,
            "selection": cfg.selection,
            "method": cfg.method,
            "split": cfg.split,
            "combine": cfg.combine,
            "max_block": cfg.max_block if cfg.split != "-" else "",
            "status": result.get("status", "error"),
            "bound": "" if bound is None else repr(float(bound)),
            "seconds": "" if result.get("seconds") is None else f"{result['seconds']:.3f}",
            "load_seconds": f"{info['seconds']:.2f}" if "seconds" in info else "",
            "peak_mib": "" if result.get("peak_mib") is None else f"{result['peak_mib']:.0f}",
            "blocks": "" if blocks is None else blocks,
            "distinct_blocks": "" if blocks is None else blocks - (reused or 0),
            "reused_blocks": "" if reused is None else reused,
            "plan": result.get("plan", ""),
            "n_x": info.get("n_x", ""),
            "n_neurons": info.get("n_w", ""),
            "lmi_side": info.get("lmi", ""),
            "depth": depth,
            "channels": channels,
            "input_side": side,
            "time_limit": f"{self.limit(cfg):g}",
            "machine": self.machine,
            "load_avg": f"{os.getloadavg()[0]:.2f}",
            "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
            "note": " ".join(str(result.get("note", "")).split())[:500],
        }
        self.rows = [r for r in self.rows if not (r["commit"] == self.commit and r["config_id"] == cfg.id)]
        self.rows.append(row)
        derive(self.rows, self.known_lower)
        write_rows(self.csv, self.rows)
        shown = f"{float(bound):.6g}" if bound is not None else ""
        print(f"  {cfg.id:<70} {row['status']:<10} {shown:>12} {row['seconds']:>9} s", flush=True)

    def run_model(self, spec: ModelSpec) -> None:
        for sel, value in spec.known_lower.items():
            self.known_lower[(spec.name, sel)] = value
        configs = configs_for(spec, self.args.quick, self.args.full_limit)
        if self.args.only:
            configs = [c for c in configs if any(o in c.id for o in self.args.only)]
        pending = configs if self.args.fresh else [c for c in configs if not self.done(c)]
        if not pending:
            return
        print(f"{spec.name}: {len(pending)} configuration(s)", flush=True)
        if spec.scaling is not None:
            build_scaling_model(spec)
        info: dict = {}
        while pending and not self.stopped:
            pending = self._run_worker(spec, pending, info)

    def _run_worker(self, spec: ModelSpec, pending: list[Config], info: dict) -> list[Config]:
        """Run the pending configurations in one worker; return those still to run (after a kill)."""
        jobs = self.args.cache_dir / "jobs"
        logs = self.args.cache_dir / "logs"
        jobs.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        job = jobs / f"{spec.name}.json"
        job.write_text(json.dumps({"model_path": str(spec.path), "configs": [c.to_json() for c in pending]}))
        by_id = {c.id: c for c in pending}
        left = list(pending)
        env = dict(os.environ)
        deps = REPO / ".bench-deps"
        paths = [str(REPO)] + ([str(deps)] if deps.is_dir() else []) + [env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        with open(logs / f"{spec.name}.log", "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", WORKER, str(job)],
                stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO, start_new_session=True, text=True,
            )  # fmt: skip
            selector = selectors.DefaultSelector()
            selector.register(proc.stdout, selectors.EVENT_READ)
            current: Config | None = None
            deadline = time.monotonic() + self.args.load_time_limit
            self._current, self._deadline = current, deadline
            buffer = ""
            try:
                while True:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        self._kill(proc)
                        if current is None:
                            for cfg in left:
                                self.record(spec, cfg, info, {"status": "error", "note": "loading the model timed out"})
                            return []
                        limit = self.limit(current)
                        self.record(spec, current, info, {"status": "timeout", "seconds": limit,
                                                          "note": f"killed after the {limit:g} s limit"})  # fmt: skip
                        left.remove(current)
                        return left
                    if not selector.select(timeout=min(wait, 5.0)):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 1 << 16).decode()  # raw reads: select sees every byte
                    if not chunk:  # the worker exited
                        proc.wait()
                        if current is None and not info:
                            note = f"worker exited with code {proc.returncode} before loading; see {log.name}"
                            for cfg in left:
                                self.record(spec, cfg, info, {"status": "error", "note": note})
                            return []
                        if current is not None:
                            note = f"worker died with code {proc.returncode} (out of memory?); see {log.name}"
                            self.record(spec, current, info, {"status": "error", "note": note})
                            left.remove(current)
                        return left
                    buffer += chunk
                    *lines, buffer = buffer.split("\n")
                    for line in lines:
                        if line.strip():
                            outcome = self._handle(spec, json.loads(line), by_id, left, info, proc)
                            if outcome is not None:
                                return outcome
                        current, deadline = self._current, self._deadline

            finally:
                if proc.poll() is None:
                    self._kill(proc)
                selector.close()

    def _handle(self, spec: ModelSpec, event: dict, by_id: dict, left: list, info: dict, proc: subprocess.Popen):  # noqa: ANN202
        """One event from the worker; a list (the configurations left) when this worker is finished."""
        if event["event"] == "loaded":
            info.update(event)
        elif event["event"] == "start":
            self._current = by_id[event["id"]]
            self._deadline = time.monotonic() + self.limit(self._current)
        elif event["event"] == "done":
            self.record(spec, by_id[event["id"]], info, event["result"])
            left.remove(by_id[event["id"]])
            self._current = None
            self._deadline = time.monotonic() + 60  # to the next start
            if not left:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=60)  # a worker that hangs on exit is killed by the caller
                return []
            if self.over_budget():
                print(f"budget of {self.args.budget:g} s spent: stopping (resumable)", flush=True)
                self.stopped = True
                return left
        return None

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the bench-quick subset (samples, small anchors, 3 nets)")
    parser.add_argument("--fresh", action="store_true", help="re-run configurations already in results.csv")
    parser.add_argument("--models", nargs="*", help="only models whose name contains one of these")
    parser.add_argument("--only", nargs="*", help="only configurations whose id contains one of these")
    parser.add_argument("--output-dir", type=Path, default=HERE, help="where results.csv, RESULTS.md, plots go")
    parser.add_argument("--cache-dir", type=Path, default=HERE / ".cache", help="scaling nets, job files, logs")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per configuration (300; quick 45)")
    parser.add_argument("--default-time-limit", type=float, default=None,
                        help="seconds for lipcert's default configuration (900; quick 90)")  # fmt: skip
    parser.add_argument("--load-time-limit", type=float, default=300.0, help="seconds to start a worker and load")
    parser.add_argument("--full-limit", type=int, default=1000, help="--max-block-size of the full LipSDP (1x1)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"stop starting configurations after this (s; quick {QUICK_BUDGET:g})")  # fmt: skip
    parser.add_argument("--extra-scaling", nargs="*", default=[], metavar="D,C,S",
                        help="add random conv nets (depth, channels, input side) to the model list")  # fmt: skip
    parser.add_argument("--report-only", action="store_true", help="rebuild RESULTS.md and the plots from the CSV")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--note", default="", help="how this run was made, for RESULTS.md's settings line")
    args = parser.parse_args(argv)
    if args.time_limit is None:
        args.time_limit = 45.0 if args.quick else 300.0
    if args.default_time_limit is None:
        args.default_time_limit = 90.0 if args.quick else 900.0
    if args.budget is None:  # quick: stop starting configurations in time to finish under 10 minutes
        args.budget = QUICK_BUDGET if args.quick and not args.models and not args.only else 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(args)
    specs = all_models(args.cache_dir, args.quick)
    for text in args.extra_scaling:
        depth, channels, side = (int(p) for p in text.split(","))
        name = scaling_name(depth, channels, side)
        path = args.cache_dir / "scaling" / f"{name}.onnx"
        specs.append(ModelSpec(name, path, "cnn", "scaling", quick=True, scaling=(depth, channels, side)))
    if args.models:
        specs = [s for s in specs if any(m in s.name for m in args.models)]
    for spec in specs:
        for sel, value in spec.known_lower.items():
            runner.known_lower[(spec.name, sel)] = value
    start = time.monotonic()
    if not args.report_only:
        print(f"lipcert {runner.commit} ({runner.tree}); {runner.machine}", flush=True)
        for spec in specs:
            if runner.stopped or runner.over_budget():
                print("budget spent: the rest is left for a later run (resumable)", flush=True)
                break
            if not spec.path.exists() and spec.scaling is None:
                print(f"{spec.name}: {spec.path} is absent, skipped", flush=True)
                continue
            runner.run_model(spec)

    missing = []
    shown = newest_rows(runner.rows)  # the report shows each configuration's newest run
    for spec in specs:
        configs = configs_for(spec, args.quick, args.full_limit)
        if args.only:
            configs = [c for c in configs if any(o in c.id for o in args.only)]
        missing += [c.id for c in configs if c.id not in shown]  # a time-out is a row: its table shows it

    derive(runner.rows, runner.known_lower)
    write_rows(runner.csv, runner.rows)
    write_report(
        runner.rows,
        args.output_dir,
        commit=runner.commit,
        tree=runner.tree,
        machine=runner.machine,
        versions=dependency_versions(),
        specs=specs,
        quick=args.quick,
        settings={
            "time_limit": args.time_limit,
            "default_time_limit": args.default_time_limit,
            "full_limit": args.full_limit,
            "note": args.note,
        },  # fmt: skip
        plots=not args.no_plots,
        missing=missing,
    )
    print(f"wrote {runner.csv} and {args.output_dir / 'RESULTS.md'} in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
