"""Load any supported checkpoint into the network form of MATH.md §1."""

from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from torch import fx, nn

from lipcert.defaults import MAX_NEURONS
from lipcert.errors import BadInputError, ModelTooLargeError
from lipcert.load.onnx_loader import load_onnx, load_onnx_proto
from lipcert.load.shapes import check_runs_at
from lipcert.load.torch_loader import archive_kind, export_onnx, load_torch_module
from lipcert.network.form import Network
from lipcert.network.trace import trace_network


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    format: str  # "onnx", "torchscript", "export", "state_dict", "pickle", or "module" (in memory)
    network: Network
    module: nn.Module  # the model as torch runs it, for comparisons and lower bounds
    input_shape: tuple[int, ...]  # batch first
    sha256: str
    seconds: float
    graph_changes: tuple[str, ...] = ()  # what the clean-up and rewrites changed (lipcert/load/cleanup.py)
    output_node: str | None = None  # --output-node: the ONNX node whose output is certified


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, ...] | None = None,
    max_neurons: int = MAX_NEURONS,
    output_node: str | None = None,
    clean_graph: bool = True,
) -> LoadedModel:
    """Read ONNX, TorchScript, torch.export or torch.save checkpoints.

    `input_shape` (without the batch axis) is needed where the file does not record it
    (TorchScript, state_dict, pickled modules); `arch` names the class for a state_dict.
    `output_node` certifies the sub-network up to that ONNX node's output (for torch
    formats: a node of the in-memory export, e.g. /fc/Gemm). `clean_graph=False` skips the
    graph clean-up and rewrites (lipcert/load/cleanup.py), for comparisons.
    """
    path = Path(path)
    check_readable(path)
    start = time.perf_counter()
    onnx_options = {"output_node": output_node, "clean": clean_graph}
    fmt, gm, shape, module = _read(path, arch, trust_pickle, input_shape, onnx_options)
    network = _traced(gm, shape, path, max_neurons, given=input_shape is not None)
    seconds = time.perf_counter() - start
    changes = getattr(gm, "lipcert_graph_changes", ())
    return LoadedModel(path, fmt, network, module, shape, file_sha256(path), seconds, changes, output_node)


def check_readable(path: Path, what: str = "model file") -> None:
    """A missing, unreadable or looping path is a bad input (exit 4) that says which, before any parsing."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory, not a {what}") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied (the file cannot be read)") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BadInputError(f"{path}: a symbolic link loop (the link never reaches a file)") from None
        raise BadInputError(f"{path} cannot be read: {err.strerror or err}") from None
    if not path.is_file():
        raise BadInputError(f"{path} is not a file")


def load_module(module: nn.Module, input_shape: tuple[int, ...], max_neurons: int = MAX_NEURONS) -> LoadedModel:
    """An in-memory torch module (e.g. from a training script), read like a checkpoint file.

    It is exported to ONNX in memory and goes down the same path as a saved model (so the
    certificate equals that of the module's ONNX export); `input_shape` is without the batch
    axis. The module itself is not changed. Its `path` names the class, and `sha256` is that
    of the exported ONNX bytes.
    """
    start = time.perf_counter()
    name = Path(f"<{type(module).__name__}>")
    shape = (1, *(int(d) for d in input_shape))
    check_runs_at(module, shape, name, given=True)
    proto = export_onnx(module, shape, name)
    gm, shape = load_onnx_proto(proto, name, shape[1:])
    network = _traced(gm, shape, name, max_neurons)
    digest = hashlib.sha256(proto.SerializeToString()).hexdigest()
    changes = getattr(gm, "lipcert_graph_changes", ())
    return LoadedModel(name, "module", network, module, shape, digest, time.perf_counter() - start, changes)


def _traced(gm: fx.GraphModule, shape: tuple[int, ...], path: Path, max_neurons: int, given: bool = False) -> Network:
    check_runs_at(gm, shape, path, given)
    network = trace_network(gm, shape)
    if network.n_w > max_neurons:
        raise ModelTooLargeError(
            f"{path}: {network.n_w} neurons exceed the limit of {max_neurons}; "
            "certify it in parts with --split (for example --split 4x4)"
        )
    return network


def _read(
    path: Path, arch: str | None, trust_pickle: bool, override: tuple[int, ...] | None, onnx_options: dict
) -> tuple[str, fx.GraphModule, tuple[int, ...], nn.Module]:
    kind = archive_kind(path)
    if kind == "unknown":
        gm, shape = load_onnx(path, override, **onnx_options)
        return "onnx", gm, shape, gm
    module, recorded = load_torch_module(path, arch, trust_pickle)
    shape = (1, *override) if override is not None else recorded
    if shape is None:
        raise BadInputError(f"{path} does not record its input shape; pass --input-shape, e.g. --input-shape 1,28,28")
    check_runs_at(module, shape, path, given=override is not None)  # before the exporter's own error
    proto = export_onnx(module, shape, path)
    gm, shape = load_onnx_proto(proto, path, tuple(shape[1:]), **onnx_options)
    fmt = {"torchscript": "torchscript", "export": "export"}.get(kind, "state_dict" if arch else "pickle")
    if onnx_options["output_node"] is not None:
        module = gm  # the truncated model, as converted: the torch module computes the full output
    return fmt, gm, shape, module
