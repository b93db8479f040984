"""Read PyTorch checkpoints: TorchScript, torch.export (.pt2), state_dict + --arch, pickles.

Every torch module is exported to ONNX in memory with the TorchScript-based exporter
and then goes down the ONNX path, so that one converter and one operator list serve
every format.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import types
import warnings
import zipfile
from pathlib import Path

import onnx
import torch
from torch import nn

from lipcert.errors import BadInputError, UnsupportedModelError

PICKLE_REFUSAL = (
    "{path} is a pickled whole module. Unpickling runs arbitrary code stored in the file, "
    "so lipcert refuses it unless you pass --trust-pickle (do so only for files you trust). "
    "Safer formats: ONNX, TorchScript, torch.export (.pt2), or a state_dict with --arch."
)


# torch.save's legacy (non-zip) format, _use_new_zipfile_serialization=False: a pickle whose first
# record is torch's magic number 0x1950a86a20f9469cfc6c (protocol 2, LONG1 of 10 bytes).
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def archive_kind(path: Path) -> str:
    """'torchscript', 'export', 'torch-save' or 'unknown', from the zip archive's records
    (or, for torch.save's legacy format, the file's first bytes)."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            legacy = handle.read(len(LEGACY_TORCH_MAGIC)) == LEGACY_TORCH_MAGIC
        return "torch-save" if legacy else "unknown"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "unknown"
    if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
        return "export"
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-save"
    return "unknown"


def load_torch_module(path: Path, arch: str | None, trust_pickle: bool) -> tuple[nn.Module, tuple[int, ...] | None]:
    """The module in eval mode, and the input shape (batch first) when the file records one."""
    kind = archive_kind(path)
    if kind == "torchscript":
        return _quiet(lambda: torch.jit.load(str(path), map_location="cpu")).eval(), None
    if kind == "export":
        return _load_export(path)
    if kind == "torch-save":
        return _load_saved(path, arch, trust_pickle), None
    raise BadInputError(
        f"{path} is not a model lipcert can read: expected ONNX, a TorchScript archive, a torch.export "
        "program (.pt2) or a torch.save file, and the file is none of these (truncated or corrupt?)"
    )


def _load_export(path: Path) -> tuple[nn.Module, tuple[int, ...]]:
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise BadInputError(f"{path}: cannot read the torch.export program: {err}") from None
    user_inputs = program.graph_signature.user_inputs
    shapes = [n.meta["val"].shape for n in program.graph.nodes if n.op == "placeholder" and n.name in user_inputs]
    if len(shapes) != 1:
        raise UnsupportedModelError(f"{path}: the program has {len(shapes)} inputs; lipcert needs one")
    module = program.module()
    # An unlifted export module refuses train(); the ONNX exporter calls it.
    module.train = types.MethodType(lambda self, mode=True: self, module)
    return module, tuple(int(d) for d in shapes[0])


def _load_saved(path: Path, arch: str | None, trust_pickle: bool) -> nn.Module:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        if not trust_pickle:
            raise BadInputError(PICKLE_REFUSAL.format(path=path)) from None
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        return _from_state_dict(path, obj, arch)
    raise BadInputError(f"{path} holds a {type(obj).__name__}, not a module or a state_dict")


def _from_state_dict(path: Path, state: dict, arch: str | None) -> nn.Module:
    if arch is None:
        raise BadInputError(
            f"{path} is a state_dict (weights only); pass --arch package.module:ClassName "
            "or --arch path/to/file.py:ClassName to say which module class to build"
        )
    model = resolve_arch(arch)()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BadInputError(f"{path}: the weights do not fit --arch {arch}: {err}") from None
    return model.eval()


def resolve_arch(spec: str) -> type[nn.Module]:
    """Import the class named by 'package.module:Class' or 'path/to/file.py:Class'."""
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name:
        raise BadInputError(f"--arch '{spec}' must look like package.module:ClassName")
    try:
        module = _import_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
    except Exception as err:
        raise BadInputError(f"--arch '{spec}': cannot import '{module_name}': {err}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BadInputError(f"--arch '{spec}': '{class_name}' is not an nn.Module class in '{module_name}'")
    return cls


def _import_file(file: str) -> types.ModuleType:
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = f"lipcert_arch_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path) -> onnx.ModelProto:
    """Export to ONNX in memory. No constant folding: BatchNorm is folded later, in float64."""
    buffer = io.BytesIO()
    example = torch.zeros(input_shape)
    try:
        _quiet(
            lambda: torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=17, do_constant_folding=False,
                training=torch.onnx.TrainingMode.EVAL, input_names=["input"],
            )
        )  # fmt: skip
    except Exception as err:
        raise UnsupportedModelError(
            f"{path}: cannot export the module to ONNX for analysis with input shape {input_shape}: {err}"
        ) from None
    return onnx.load_from_string(buffer.getvalue())


def _quiet(fn):  # noqa: ANN001, ANN202 - torch's deprecation chatter is not the user's concern
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()
