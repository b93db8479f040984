"""--output-node: certify the sub-network up to one ONNX node (shared by estimate, plan, batch, radius)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutputNodeOpt = Annotated[
    str | None,
    typer.Option(
        "--output-node",
        help="Certify the sub-network from the input up to this ONNX node's output (node or tensor name), "
        "e.g. the logits before a final Softmax.",
        show_default="the model's output",
    ),
]


def load_up_to(model: Path, arch: str | None, trust_pickle: bool, input_shape: str | None, output_node: str | None):  # noqa: ANN201, E501 - a LoadedModel
    from lipcert.cli.common import parse_shape
    from lipcert.load import load_model

    shape = parse_shape(input_shape)
    return load_model(model, arch=arch, trust_pickle=trust_pickle, input_shape=shape, output_node=output_node)
