"""`lipcert inspect MODEL`: what lipcert sees in a model, and whether it can certify it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lipcert.cli.common import ArchOpt, ShapeOpt, TrustOpt, handles_errors, load

OptionalModelArg = Annotated[
    Path | None,
    typer.Argument(help="ONNX, TorchScript, torch.export (.pt2) or torch.save file.", show_default="none"),
]
OpsOpt = Annotated[bool, typer.Option("--ops", help="List every ONNX operator lipcert reads, and how.")]


@handles_errors
def inspect(
    model: OptionalModelArg = None,
    ops: OpsOpt = False,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
) -> None:
    """Show the layers lipcert sees, their neuron counts and slope bounds, and whether it can certify it."""
    from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
    from lipcert.errors import UnsupportedModelError
    from lipcert.estimate import effective_lmi_size
    from lipcert.report.console import print_inspect, print_ops

    if ops:
        print_ops()
        if model is None:
            return
    if model is None:
        raise typer.BadParameter("give a MODEL to inspect, or --ops", param_hint="MODEL")

    try:
        loaded = load(model, arch, trust_pickle, input_shape)
    except UnsupportedModelError as err:
        _print_onnx_nodes(model)  # the table first, then the verdict, as for a supported model
        raise UnsupportedModelError(f"not supported: {err}") from None
    size = effective_lmi_size(loaded.network) if loaded.network.layers else 0
    if size <= DEFAULT_MAX_BLOCK_SIZE:
        verdict = f"supported: a full LipSDP ({size}x{size} after input compression) is feasible"
    else:
        verdict = f"supported: the full LipSDP would be {size}x{size}; use --split RxC or the automatic plan"
    print_inspect(loaded, verdict)


def _print_onnx_nodes(model: Path) -> None:
    """For a model lipcert cannot trace: its ONNX nodes, each with how lipcert reads its operator.

    Only ONNX files are listed (a torch checkpoint has no graph until it is exported); a file that
    cannot be read is left to the verdict.
    """
    from lipcert.errors import LipcertError
    from lipcert.load.onnx_loader import node_name, read_onnx
    from lipcert.load.torch_loader import archive_kind
    from lipcert.network.ops import REFUSED, REGISTRY
    from lipcert.report.console import print_onnx_nodes

    try:
        if archive_kind(model) != "unknown":
            return
        proto = read_onnx(model)
    except (LipcertError, OSError):
        return
    rows = []
    for node in proto.graph.node:
        rule = REGISTRY.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None or rule.kind == REFUSED:
            how = "not supported" + (f": {rule.how}" if rule is not None else "")
        else:
            how = f"{rule.kind}: {rule.how}"
        rows.append((node_name(node), node.op_type, how))
    print_onnx_nodes(model, rows)
