"""RESULTS.md and the plots, from the rows of results.csv (benchmarks/harness.py calls write_report)."""

from __future__ import annotations

import datetime
from collections import defaultdict
from pathlib import Path

from tests.support import GLIPSDP_PEERS, LIPSDP_PEERS, SCRAMBLED

BASELINES = ("naive", "full-neuron", "full-layer", "paper", "eclipse", "eclipse-fast")
KIND_LABEL = {
    "naive": "naive (product of spectral norms)",
    "full-neuron": "full LipSDP-Neuron",
    "full-layer": "full LipSDP-Layer",
    "paper": "paper",
    "overlap": "overlap",
    "pou": "pou",
    "coupled": "coupled",
    "default": "lipcert default",
    "eclipse": "ECLipsE",
    "eclipse-fast": "ECLipsE-Fast",
    "lower": "empirical lower bound",
}


def kind(r: dict) -> str:
    """The method family of a row: a baseline, a lipcert combination mode, or the default."""
    if r["method"] in ("lower", "naive", "eclipse", "eclipse-fast"):
        return r["method"]
    if r["split"] == "1x1":
        return "full-neuron" if r["method"] == "lipsdp-neuron" else "full-layer"
    if r["split"] == "auto" and r["combine"] == "auto" and r["method"] == "lipsdp-neuron":
        return "default"
    return r["combine"]


def label(r: dict) -> str:
    k = kind(r)
    if k in ("paper", "overlap", "pou", "coupled"):
        return f"{k} @ {r['split']}"
    if k == "default":
        return "lipcert default (auto plan, auto combine)"
    return KIND_LABEL[k]


def f(value: object, digits: int = 5) -> str:
    try:
        return f"{float(value):.{digits}g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def ratio(value: object) -> str:
    try:
        return f"{float(value):.3f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def secs(value: object) -> str:
    try:
        s = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{s:.2f} s" if s < 10 else f"{s:.0f} s"


def ok(r: dict | None) -> bool:
    return r is not None and r["status"] == "ok" and r["bound"] != ""


def status_text(r: dict) -> str:
    if r["status"] == "ok":
        return "ok"
    note = r["note"]
    if r["status"] == "infeasible" and "would be" in note:
        size = note.split("would be ", 1)[1].split(",")[0]
        return f"infeasible (block {size} > {r['max_block']})"
    return f"{r['status']}: {note[:90]}" if note else r["status"]


def newest_rows(rows: list[dict]) -> dict[str, dict]:
    """Per configuration, its newest row: a configuration re-run at a later commit shows that run only."""
    newest: dict[str, dict] = {}
    for r in rows:
        if r["config_id"] not in newest or r["timestamp"] > newest[r["config_id"]]["timestamp"]:
            newest[r["config_id"]] = r
    return newest


def current_rows(rows: list[dict]) -> list[dict]:
    shown = {id(r) for r in newest_rows(rows).values()}
    return [r for r in rows if id(r) in shown]


def commits_line(rows: list[dict]) -> str:
    """Which commits the shown rows come from; the rows of any but the main one are named."""
    by_commit: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_commit[r["commit"]].append(r["config_id"])
    if len(by_commit) <= 1:
        return f"`{next(iter(by_commit), '-')}`"
    parts = sorted(by_commit.items(), key=lambda item: -len(item[1]))
    head = f"`{parts[0][0]}` ({len(parts[0][1])} rows)"
    rest = "; ".join(f"`{c}` for {', '.join(f'`{i}`' for i in sorted(ids))}" for c, ids in parts[1:])
    return f"per configuration, its newest run: {head}; from other commits: {rest}"


def time_limits(rows: list[dict], default: bool) -> str:
    """The limits the rows actually ran under (a run done in pieces may have used several)."""
    chosen = [r for r in rows if (r["method"], r["split"], r["combine"]) == ("lipsdp-neuron", "auto", "auto")]
    chosen = chosen if default else [r for r in rows if r not in chosen]
    values = sorted({float(r["time_limit"]) for r in chosen if r["time_limit"]})
    return " or ".join(f"{v:g}" for v in values) or "-"


def by_model(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["selection"])].append(r)
    return groups


def headline(groups: dict[tuple[str, str], list[dict]], order: list[tuple[str, str]]) -> tuple[str, list[str]]:
    header = [
        "model", "output", "neurons", "lower bound", "default: bound", "bound/lower", "time",
        "best baseline", "bound", "bound/lower", "time", "default / baseline", "full LipSDP time",
        "speed-up over full",
    ]  # fmt: skip
    lines, behind = [], []
    for key in order:
        rows = groups[key]
        default = next((r for r in rows if kind(r) == "default"), None)
        if default is None:
            continue
        base = [r for r in rows if kind(r) in BASELINES and ok(r)]
        best = min(base, key=lambda r: float(r["bound"])) if base else None
        full = next((r for r in rows if kind(r) == "full-neuron"), None)
        cells = [key[0], "all" if key[1] == "all" else key[1], rows[0]["n_neurons"], f(rows[0]["lower"], 4)]
        if ok(default):
            cells += [f(default["bound"]), ratio(default["bound_over_lower"]), secs(default["seconds"])]
        else:
            cells += [status_text(default), "", secs(default["seconds"])]
        if best is not None:
            cells += [label(best), f(best["bound"]), ratio(best["bound_over_lower"]), secs(best["seconds"])]
        else:
            cells += ["none finished", "", "", ""]
        if ok(default) and best is not None:
            rel = float(default["bound"]) / float(best["bound"])
            cells.append(f"{rel:.4f}")
            if rel > 1 + 1e-6:
                why = f"{label(best)} {f(best['bound'])} < default {f(default['bound'])}"
                behind.append(f"- **{key[0]}** ({key[1]}): {why} ({(rel - 1) * 100:.2f}% looser).")
            elif rel > 1 - 1e-6:
                one = "1 part(s)" in default["plan"] and ";" not in default["plan"]
                same = "; the automatic plan is one block, the full LipSDP itself" if one else ""
                tie = f"a tie with {label(best)} ({f(best['bound'])}){same}"
                behind.append(f"- **{key[0]}** ({key[1]}): {tie}: no gain in tightness.")
        else:
            cells.append("")
            if not ok(default):
                behind.append(f"- **{key[0]}** ({key[1]}): the default did not finish ({status_text(default)}).")
        if ok(full) and ok(default):
            speed = float(full["seconds"]) / max(float(default["seconds"]), 1e-9)
            cells += [secs(full["seconds"]), f"{speed:.2f}×"]
        elif full is not None:
            cells += [status_text(full)[:40], "n/a"]
        else:
            cells += ["", "n/a"]
        lines.append(cells)
    return table(header, lines), behind


def model_table(rows: list[dict]) -> str:
    header = [
        "method", "split", "plan used", "status", "bound", "bound/lower", "bound/naive", "time", "peak MiB",
        "blocks (distinct / reused)", "notes",
    ]  # fmt: skip
    out = []
    for r in rows:
        blocks = f"{r['blocks']} ({r['distinct_blocks']} / {r['reused_blocks']})" if r["blocks"] != "" else ""
        note = r["note"] if r["status"] == "ok" else ""
        out.append(
            [
                label(r) if kind(r) != "default" else "**lipcert default (auto plan, auto combine)**",
                r["split"],
                r["plan"][:70],
                status_text(r),
                f(r["bound"], 6),
                ratio(r["bound_over_lower"]),
                ratio(r["bound_over_naive"]),
                secs(r["seconds"]),
                r["peak_mib"],
                blocks,
                note[:120],
            ]
        )
    return table(header, out)


def peers_section(groups: dict[tuple[str, str], list[dict]]) -> str:
    def find(model: str, sel: str, k: str) -> dict | None:
        return next((r for r in groups.get((model, sel), []) if kind(r) == k and ok(r)), None)

    parts = ["## Published numbers from peers (same weights, not run here)\n"]
    parts.append(
        "Peers' numbers are copied from `../shared/anchors/README.md`; they were computed with MATLAB/MOSEK and "
        "cannot run here. Ours are lipcert's verified bounds from this run.\n"
    )
    rows = []
    for file, peer in LIPSDP_PEERS.items():
        model = Path(file).stem
        ours = {k: find(model, "all", k) for k in ("naive", "full-neuron", "full-layer", "default", "eclipse-fast")}
        if not any(ours.values()):
            continue
        rows.append(
            [
                model,
                "whole output",
                f(peer["product"]),
                f(ours["naive"]["bound"]) if ours["naive"] else "",
                f(peer["neuron"]),
                f(ours["full-neuron"]["bound"]) if ours["full-neuron"] else "",
                f(peer["layer"]),
                f(ours["full-layer"]["bound"]) if ours["full-layer"] else "",
                f(ours["default"]["bound"]) if ours["default"] else "",
                f(peer["eclipse-fast"]),
                f(ours["eclipse-fast"]["bound"]) if ours["eclipse-fast"] else "",
            ]
        )
    if rows:
        parts.append("### LipSDP reference networks (LipSDP README, MOSEK; whole output)\n")
        header = [
            "network", "bounds", "peer product", "our naive", "peer LipSDP-Neuron", "our full LipSDP-Neuron",
            "peer LipSDP-Layer", "our full LipSDP-Layer", "our default", "ECLipsE-Fast (anchors README)",
            "ECLipsE-Fast (this run)",
        ]  # fmt: skip
        parts.append(table(header, rows) + "\n")
    rows = []
    for file, (product, lipsdp, glipsdp, liplt, lower) in GLIPSDP_PEERS.items():
        model = Path(file).stem
        ours = {k: find(model, "logit 7", k) for k in ("naive", "full-neuron", "default", "lower", "paper")}
        if not any(ours.values()):
            continue
        scrambled = file in SCRAMBLED
        rows.append(
            [
                model,
                f(product),
                f(ours["naive"]["bound"]) if ours["naive"] else "",
                f"{f(lipsdp)} (scrambled net)" if scrambled else f(lipsdp),
                f(ours["full-neuron"]["bound"]) if ours["full-neuron"] else "not run / infeasible",
                f(glipsdp),
                f(ours["default"]["bound"]) if ours["default"] else "",
                f"{f(liplt)} (scrambled; real net {SCRAMBLED[file]:.4g})" if scrambled else f(liplt),
                f"{f(lower)} (scrambled)" if scrambled else f(lower),
                f(ours["lower"]["bound"], 4) if ours["lower"] else "",
            ]
        )
    if rows:
        parts.append("### GLipSDP digits networks: logit 7 only (standardised input)\n")
        parts.append(
            "Every GLipSDP number bounds **output 7 alone** (0-based), so ours here are `--logit 7` bounds. "
            "For the CNNs the peer's LipSDP, LipLT and sampled lower bound were computed on a **scrambled** "
            "network (MATLAB unrolling order against PyTorch flatten order): only the product and GLipSDP "
            "columns describe the real network; compare the CNN rows against those.\n"
        )
        header = [
            "network", "peer product", "our naive", "peer LipSDP-Neuron", "our full LipSDP-Neuron", "peer GLipSDP",
            "our default", "peer LipLT", "peer sampled lower", "our lower",
        ]  # fmt: skip
        parts.append(table(header, rows) + "\n")
    return "\n".join(parts)


def scaling_section(rows: list[dict]) -> str:
    scal = [r for r in rows if r["source"] == "scaling" and r["selection"] == "all"]
    if not scal:
        return ""
    nets = sorted({r["model"] for r in scal}, key=lambda m: (int(by_name(scal, m)["n_neurons"] or 0), m))
    columns = [("full-neuron", "1x1")]
    columns += [(mode, split) for split in ("2x2", "4x4", "auto") for mode in ("paper", "coupled")]
    header = ["net", "neurons", "naive / lower"] + [
        f"{'full' if m == 'full-neuron' else m} @ {s}: bound/lower, time" for m, s in columns
    ]
    out = []
    for model in nets:
        mine = [r for r in scal if r["model"] == model]
        first = mine[0]
        cells = [model, first["n_neurons"]]
        naive = next((r for r in mine if kind(r) == "naive" and ok(r)), None)
        cells.append(ratio(naive["bound_over_lower"]) if naive else "")
        for mode, split in columns:
            r = next(
                (x for x in mine if x["split"] == split and kind(x) == mode),
                None,
            )  # noqa: E501
            if r is None:
                cells.append("")
            elif ok(r):
                cells.append(f"{tightness(r, mine)}, {secs(r['seconds'])}")
            else:
                cells.append(r["status"])
        out.append(cells)
    return (
        "## Scaling series: random conv nets\n\n"
        + (
            "3×3 convolutions (padding 1) with ReLU between them, 1 input channel, seeded weights; `conv_dD_cC_SxS` "
            "has D convolutions of C channels on an S×S input. Neurons = (D-1)·C·S².\n\n"
        )
        + table(header, out)
        + "\n"
    )


def tightness(r: dict, model_rows: list[dict]) -> str:
    """bound / lower of a row; a row re-run at a later commit carries no lower bound, so take the model's."""
    if r["bound_over_lower"] != "":
        return ratio(r["bound_over_lower"])
    lower = next((float(x["bound"]) for x in model_rows if kind(x) == "lower" and ok(x)), None)
    return ratio(float(r["bound"]) / lower) if lower else "? (no lower bound)"


def by_name(rows: list[dict], model: str) -> dict:
    return next(r for r in rows if r["model"] == model)


def plain_ticks(axis) -> None:  # noqa: ANN001 - a matplotlib Axis
    """Plain numbers (0.5, 2, 30) on a log axis instead of 5×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # 1, 2 and 5 per decade: a range narrower than a decade still gets labelled ticks
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_frontier(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "naive": ("#7f7f7f", "v"),
        "full-neuron": ("#1f77b4", "s"),
        "full-layer": ("#aec7e8", "s"),
        "paper": ("#d62728", "o"),
        "overlap": ("#ff9896", "o"),
        "pou": ("#9467bd", "o"),
        "coupled": ("#2ca02c", "o"),
        "default": ("#006400", "*"),
        "eclipse": ("#ff7f0e", "D"),
        "eclipse-fast": ("#ffbb78", "D"),
    }
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for k, (color, marker) in styles.items():
        pts = [
            (max(float(r["seconds"]), 1e-3), float(r["bound_over_lower"]))
            for r in rows
            if kind(r) == k and ok(r) and r["bound_over_lower"] and r["seconds"]
        ]
        if pts:
            xs, ys = zip(*pts)
            size = 140 if k == "default" else 45
            ax.scatter(xs, ys, s=size, c=color, marker=marker, label=KIND_LABEL[k], alpha=0.85, edgecolors="white",
                       linewidths=0.5)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_ticks(ax.yaxis)
    ax.set_xlabel("wall time of the configuration (s, log scale; 1 process)")
    ax.set_ylabel("certified bound / empirical lower bound (log scale)")
    ax.set_title("Tightness against time: every model and configuration (whole output)")
    ax.grid(True, which="both", alpha=0.25)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scal = [r for r in rows if r["source"] == "scaling" and r["selection"] == "all" and ok(r)]
    if not scal:
        return
    series = {
        "depth 2-8 (4 ch, 8×8)": lambda d, c, s: c == 4 and s == 8,
        "channels 4-32 (depth 2, 8×8)": lambda d, c, s: d == 2 and s == 8,
        "input 8-32 (depth 2, 4 ch)": lambda d, c, s: d == 2 and c == 4,
    }
    linestyles = ["-", "--", ":"]
    splits = {"1x1": ("#1f77b4", "full LipSDP (1x1)"), "2x2": ("#ff7f0e", "2x2 coupled"),
              "4x4": ("#9467bd", "4x4 coupled"), "auto": ("#2ca02c", "auto plan, auto combine (default)")}  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=120)
    for member, style in zip(series.values(), linestyles):
        for split, (color, text) in splits.items():
            pts = []
            for r in scal:
                d, c, s = int(r["depth"]), int(r["channels"]), int(r["input_side"])
                wanted = (
                    kind(r) == "full-neuron"
                    if split == "1x1"
                    else r["combine"] in ("coupled", "auto") and (split == "auto") == (r["combine"] == "auto")
                )
                if member(d, c, s) and r["split"] == split and wanted and r["bound_over_lower"]:
                    pts.append((int(r["n_neurons"]), float(r["seconds"]), float(r["bound_over_lower"])))
            if len(pts) < 1:
                continue
            pts.sort()
            xs, ts, ratios = zip(*pts)
            first = style == "-"
            axes[0].plot(xs, ts, style, marker="o", color=color, label=text if first else None, ms=4)
            axes[1].plot(xs, ratios, style, marker="o", color=color, label=text if first else None, ms=4)
    for ax, ylabel in zip(axes, ("wall time (s, log scale)", "certified bound / empirical lower bound")):
        ax.set_xscale("log")
        ax.set_xlabel("neurons (log scale)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.25)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_yscale("log")
    for axis in (axes[0].xaxis, axes[0].yaxis, axes[1].xaxis):
        plain_ticks(axis)
    axes[0].set_title("Time against network size, per split")
    axes[1].set_title("Tightness against network size, per split")
    handles, labels = axes[0].get_legend_handles_labels()
    for (name, _), style in zip(series.items(), linestyles):
        handles.append(plt.Line2D([], [], color="black", linestyle=style))
        labels.append(f"series: {name}")
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def write_report(
    all_rows: list[dict],
    out_dir: Path,
    *,
    commit: str,
    tree: str,
    machine: str,
    versions: dict[str, str],
    specs: list,
    quick: bool,
    settings: dict,
    plots: bool = True,
    missing: list[str] | None = None,
) -> Path:
    rows = current_rows(all_rows)
    groups = by_model(rows)
    order = [(s.name, sel) for s in specs for sel in s.selections if (s.name, sel) in groups]
    order += [k for k in groups if k not in order]
    trees = sorted({r["lipcert_tree"] for r in rows}) or [tree]
    loads = [float(r["load_avg"]) for r in rows if r["load_avg"]]
    stamps = sorted(r["timestamp"] for r in rows)
    md = ["# lipcert benchmarks\n"]
    md.append(
        f"Generated {datetime.datetime.now().isoformat(timespec='minutes')} by "
        f"`{'make bench-quick' if quick else 'make bench'}` (`benchmarks/harness.py`) from `benchmarks/results.csv` "
        f"({len(rows)} rows; runs from {stamps[0] if stamps else '-'} to {stamps[-1] if stamps else '-'}).\n"
    )
    md.append(
        f"- **lipcert commit:** {commits_line(rows) if rows else f'`{commit}`'}; "
        f"lipcert/ working tree: {', '.join(trees)}"
    )
    spread = f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f}"
    md.append(f"- **machine:** {machine}; 1-minute load average during the rows: {spread} (shared: timings are noisy)")
    md.append("- **dependencies:** " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    md.append(
        f"- **settings:** every configuration in its own worker process, one after the other, blocks solved in "
        f"that process (`workers=1`, single-threaded BLAS); time limit {time_limits(rows, False)} s per "
        f"configuration, {time_limits(rows, True)} s for lipcert's default; the full LipSDP (`--split 1x1`) "
        f"runs with `--max-block-size {settings['full_limit']}`, everything else with lipcert's default 600. Time = "
        "wall time of the estimate call (model already loaded); peak MiB = the process's peak RSS during that "
        "configuration (torch and the model included, about 1 GiB of it)."
        + (f" **This run:** {settings['note']}" if settings.get("note") else "")
    )
    md.append(
        "- **bounds:** lipcert's are verified certificates (the `bound` field, never a solver objective). "
        "ECLipsE/ECLipsE-Fast values are the eclipse-nn package's own return values, not verified by lipcert. "
        "Lower bound: the larger of lipcert.lower's seeded hill climbing and a published sampled lower bound of "
        "the same function, where one exists. bound/naive compares with lipcert's certified product of "
        'spectral norms (ECLipsE\'s "trivial" Frobenius product is not used).\n'
    )
    head, behind = headline(groups, order)
    md.append("## Headline: lipcert's default against the best baseline\n")
    md.append(
        "Default = `lipcert estimate MODEL` (automatic plan, `--combine auto`: coupled where affordable, else "
        "overlap). Best baseline = the tightest finished "
        "bound among the naive product, full LipSDP-Neuron and -Layer, the paper's combination (`paper`, any "
        "split) and ECLipsE / ECLipsE-Fast. `default / baseline` below 1 means lipcert is tighter. Speed-up = "
        "time of the full LipSDP-Neuron / time of the default, where the full LipSDP was feasible.\n"
    )
    md.append(head + "\n")
    md.append("### Where lipcert's default is not ahead\n")
    md.append("\n".join(behind) if behind else "Nowhere: the default is at least as tight as every baseline.")
    md.append("")
    if plots:
        md.append("## Plots\n")
        md.append("![bound/lower against time](frontier.png)\n")
        if any(r["source"] == "scaling" for r in rows):
            md.append("![time and tightness against size](scaling.png)\n")
    if missing:
        md.append("## Not run yet\n")
        md.append(
            f"{len(missing)} configuration(s) of this set have no row yet (the time budget stopped the "
            "run, or a model file is absent); the harness is resumable: run it again to fill them in.\n"
        )
        md.append("\n".join(f"- `{m}`" for m in missing[:60]) + ("\n- ..." if len(missing) > 60 else "") + "\n")
    md.append(peers_section(groups))
    md.append(scaling_section(rows))
    md.append("## Every configuration, per model\n")
    md.append(
        "Fully connected models have no (C, H, W) output, so `--split 2x2`/`4x4` do not apply to them (lipcert "
        "would ignore the grid): those rows are not run. `infeasible` = a block above the size limit (the full "
        "LipSDP of a large network); `timeout` = killed at the time limit.\n"
    )
    for key in order:
        first = groups[key][0]
        what = "whole output" if key[1] == "all" else f"{key[1]} only"
        md.append(f"### {key[0]} ({what})\n")
        md.append(
            f"{first['source']}, {first['family']}; {first['n_x']} inputs, {first['n_neurons']} neurons, full LMI "
            f"side {first['lmi_side']}; lower bound {f(first['lower'], 5)} ({first['lower_source']}); lipcert "
            f"{', '.join(f'`{c}`' for c in sorted({r['commit'] for r in groups[key]}))}.\n"
        )
        md.append(model_table(groups[key]) + "\n")
    path = out_dir / "RESULTS.md"
    scratch = path.with_suffix(".md.tmp")
    scratch.write_text("\n".join(md) + "\n", encoding="utf-8")
    scratch.replace(path)
    if plots and rows:
        plot_frontier([r for r in rows if r["selection"] == "all"], out_dir / "frontier.png")
        plot_scaling(rows, out_dir / "scaling.png")
    return path


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
