"""All terminal output. The only module that imports rich (lazily, so --help stays fast).

Rich already drops colour codes when stdout is not a terminal or NO_COLOR is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from lipcert.load import LoadedModel
    from lipcert.result import Certificate


_capture: list[Console] = []  # while rendered() runs: the console stdout output goes to instead


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    if _capture and not stderr:
        return _capture[-1]
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def rendered(print_fn: Callable[..., None], *args: object) -> str:
    """What print_fn(*args) would print on stdout, as plain text (for `--format table --output FILE`)."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    _capture.append(Console(file=buffer, width=160, no_color=True, highlight=False, soft_wrap=False))
    try:
        print_fn(*args)
    finally:
        _capture.pop()
    return buffer.getvalue()


def print_error(message: str) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def print_warning(message: str) -> None:
    _console(stderr=True).print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def print_note(message: str) -> None:
    _console(stderr=True).print(f"note: {message}", markup=False, soft_wrap=True)


def print_inspect(model: LoadedModel, verdict: str) -> None:
    from rich.table import Table

    net = model.network
    layer_of = {layer.name: layer for layer in net.layers}
    table = Table(title=f"{model.path} ({model.format}, loaded in {model.seconds:.2f} s)")
    for column in ("node", "operator", "input shape", "output shape", "neurons", "slopes"):
        table.add_column(column, justify="right" if column == "neurons" else "left")
    for op in net.ops:
        layer = layer_of.get(op.name) if op.kind == "activation" else None
        neurons = str(layer.size) if layer else (str(op.neurons) if op.kind == "rewrite" else "")
        slopes = f"[{layer.alpha:.4g}, {layer.beta:.4g}]" if layer else ""
        if layer is not None and layer.alphas is not None:
            slopes = f"per neuron, within {slopes}"
        if op.kind == "rewrite":
            slopes = "ReLU [0, 1]"
        table.add_row(op.name, op.op, _shape(op.in_shape), _shape(op.out_shape), neurons, slopes)
    console = _console()
    console.print(table)
    if model.output_node is not None:
        console.print(f"output: node {model.output_node} (--output-node)")
    for change in model.graph_changes:
        console.print(f"graph clean-up: {change} (checked against the original with onnx's reference evaluator)")
    console.print(
        f"input {_shape(net.input_shape)} ({net.n_x}), output {_shape(net.output_shape)} ({net.n_y}), "
        f"{net.n_w} neurons in {len(net.layers)} activation layers; "
        f"full LipSDP matrix {net.lmi_size}x{net.lmi_size}"
    )
    console.print(verdict)


def print_onnx_nodes(path: object, rows: list[tuple[str, str, str]]) -> None:
    """The ONNX nodes of a model lipcert cannot trace, with how each operator is read (or not)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{path}: ONNX nodes (the model could not be traced; the verdict follows)")
    for column in ("node", "operator", "how lipcert reads it"):
        table.add_column(column)
    for name, op, how in rows:
        table.add_row(escape(name), op, escape(how))
    _console().print(table)


def print_ops() -> None:
    """Every ONNX operator lipcert reads and how (the loader's own registry), then the patterns."""
    from rich.markup import escape
    from rich.table import Table

    from lipcert.network.ops import PATTERNS, REGISTRY, slope_text

    table = Table(title="ONNX operators lipcert reads (any operator may appear in a constant sub-graph)")
    for column in ("operator", "kind", "how", "slopes"):
        table.add_column(column)
    for rule in REGISTRY.values():
        slopes = slope_text(rule.activation) if rule.activation else ""
        table.add_row(rule.op_type, rule.kind, escape(rule.how), escape(slopes))
    patterns = Table(title="activation patterns rewritten to one neuron per element")
    for column in ("pattern", "node forms", "activation", "slopes"):
        patterns.add_column(column)
    for p in PATTERNS:
        patterns.add_row(escape(p.name), escape(p.nodes), p.activation, escape(slope_text(p.activation)))
    console = _console()
    console.print(table)
    console.print(patterns)
    console.print("Any other operator on the data path is refused, naming its node.")


def print_certificate(cert: Certificate) -> None:
    from rich.table import Table

    table = Table(title=f"{cert.model}: {cert.method}, plan {cert.plan}")
    for column in ("group", "tile", "size", "verified bound", "seconds", "source"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for b in cert.blocks:
        source = b.source + (" (reused)" if b.reused else "")
        table.add_row(str(b.group), str(b.tile), str(b.size), f"{b.bound:.6g}", f"{b.seconds:.2f}", source)
    console = _console()
    console.print(table)
    for note in cert.notes:
        console.print(f"note: {note}")
    if cert.lower is not None:
        console.print(f"empirical lower bound: {cert.lower:.6g}; upper/lower ratio {cert.ratio:.4g}")
    used = sorted({g.combine for g in cert.groups if g.combine != "single"})  # what the plan's mode resolved to
    combine = f", tiles combined by {'/'.join(used)}" if cert.combine and used else ""
    if cert.selection != "all outputs":
        console.print(f"bounded function: {cert.selection}")
    console.print(
        f"certified L2 Lipschitz bound: [bold]{cert.bound:.6g}[/] ({cert.method}{combine}; "
        f"{len(cert.blocks)} blocks, {cert.reused_blocks} reused; {cert.seconds:.2f} s)"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def progress_enabled() -> bool:
    """A live progress bar only on a terminal, and never with NO_COLOR (rich's own rules)."""
    import os
    import sys

    return sys.stderr.isatty() and "NO_COLOR" not in os.environ and "CI" not in os.environ


@contextmanager
def block_progress(description: str = "blocks") -> Iterator[Callable[..., None] | None]:
    """A progress bar on stderr (done/total, elapsed, ETA); yields its update callback, or None."""
    if not progress_enabled():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "eta",
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(_outcome: object, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_batch_summary(report) -> None:  # noqa: ANN001 - a lipcert.batch.BatchReport
    from rich.table import Table

    rows = report.rows
    table = Table(title="lipcert batch")
    for column in ("file", "status", "bound", "blocks", "reused", "error"):
        table.add_column(column, justify="right" if column in ("bound", "blocks", "reused") else "left")
    for r in rows:
        bound = f"{r.bound:.6g}" if r.bound is not None else ""
        table.add_row(r.file, r.status, bound, str(r.blocks), str(r.reused_blocks), r.error[:80])
    console = _console()
    console.print(table)
    failed = sum(r.status != "ok" for r in rows)
    console.print(f"{len(rows) - failed} certified, {failed} failed")
    console.print(
        f"blocks solved in this run: {report.solved_blocks}; taken from an earlier run: {report.cached_blocks} "
        f"blocks and {report.cached_models} whole models"
    )


def print_pairs(results: list) -> None:  # list[lipcert.pairs.PairBound]
    import statistics

    from rich.table import Table

    table = Table(title="class-pair bounds: L(f_i - f_j)")
    for column in ("i", "j", "verified bound"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r.i), str(r.j), f"{r.bound:.6g}")
    console = _console()
    console.print(table)
    bounds = [r.bound for r in results]
    seconds = max(r.certificate.seconds for r in results)  # all pairs are one solve pass
    console.print(
        f"{len(bounds)} pairs: largest {max(bounds):.6g}, median {statistics.median(bounds):.6g}; {seconds:.2f} s"
    )


def print_radii(radii, fractions: dict) -> None:  # noqa: ANN001 - a lipcert.radius.Radii
    from rich.table import Table

    table = Table(title="certified L2 radii")
    for column in ("input", "predicted", "smallest margin", "certified radius"):
        table.add_column(column, justify="right")
    for k, (p, r, row) in enumerate(zip(radii.predicted, radii.radius, radii.margins)):
        smallest = min((m for j, m in enumerate(row) if j != p), default=0.0)
        table.add_row(str(k), str(int(p)), f"{smallest:.4g}", f"{r:.4g}")
    console = _console()
    console.print(table)
    parts = [f"{fraction:.1%} certified at eps {eps:g}" for eps, fraction in fractions.items()]
    console.print(f"{len(radii.radius)} inputs: " + ", ".join(parts))
