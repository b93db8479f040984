"""All terminal output. The only module that imports rich (lazily, so --help stays fast).

Rich already drops colour codes when stdout is not a terminal or NO_COLOR is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from lipcert.load import LoadedModel
    from lipcert.result import Certificate


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_error(message: str) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def print_warning(message: str) -> None:
    _console(stderr=True).print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def print_inspect(model: LoadedModel, verdict: str) -> None:
    from rich.table import Table

    net = model.network
    layer_of = {layer.name: layer for layer in net.layers}
    table = Table(title=f"{model.path} ({model.format}, loaded in {model.seconds:.2f} s)")
    for column in ("node", "operator", "input shape", "output shape", "neurons", "slopes"):
        table.add_column(column, justify="right" if column == "neurons" else "left")
    for op in net.ops:
        layer = layer_of.get(op.name) if op.kind == "activation" else None
        neurons = str(layer.size) if layer else ""
        slopes = f"[{layer.alpha:.4g}, {layer.beta:.4g}]" if layer else ""
        table.add_row(op.name, op.op, _shape(op.in_shape), _shape(op.out_shape), neurons, slopes)
    console = _console()
    console.print(table)
    console.print(
        f"input {_shape(net.input_shape)} ({net.n_x}), output {_shape(net.output_shape)} ({net.n_y}), "
        f"{net.n_w} neurons in {len(net.layers)} activation layers; "
        f"full LipSDP matrix {net.lmi_size}x{net.lmi_size}"
    )
    console.print(verdict)


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
    combine = f", combined by {cert.combine}" if cert.combine else ""
    console.print(
        f"certified L2 Lipschitz bound: [bold]{cert.bound:.6g}[/] ({cert.method}{combine}; "
        f"{len(cert.blocks)} blocks, {cert.reused_blocks} reused; {cert.seconds:.2f} s)"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"
