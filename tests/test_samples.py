"""The shipped sample models in sample_models/: files present, formats agree, accurate, reproducible."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_models"
NAMES = ("digits_chain", "digits_residual", "digits_tanh", "digits_lenet")
SUFFIXES = (".onnx", ".ts", ".pt2", ".state_dict.pt", ".pickle.pt")
ATOL = 1e-5


def _import_sample(module: str) -> ModuleType:
    # sample_models/ is a script folder, not a package: train.py does `from architectures import ...`.
    if str(SAMPLE_DIR) not in sys.path:
        sys.path.insert(0, str(SAMPLE_DIR))
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def train_mod() -> ModuleType:
    return _import_sample("train")


@pytest.fixture(scope="module")
def test_data(train_mod: ModuleType) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = train_mod.load_data()
    return x_test, y_test


def _from_state_dict(name: str) -> torch.nn.Module:
    model = _import_sample("architectures").MODELS[name]()
    model.load_state_dict(torch.load(SAMPLE_DIR / f"{name}.state_dict.pt", weights_only=True))
    return model.eval()


def _onnx_initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_all_files_exist() -> None:
    expected = [f"{n}{s}" for n in NAMES for s in SUFFIXES] + ["README.md", "architectures.py", "train.py"]
    missing = [f for f in expected if not (SAMPLE_DIR / f).is_file()]
    assert not missing


def test_architectures_match_names() -> None:
    assert tuple(_import_sample("architectures").MODELS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_onnx_interface(name: str) -> None:
    proto = onnx.load(str(SAMPLE_DIR / f"{name}.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    # Symbolic batch dimension, fixed (1, 8, 8) image.
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]


def test_residual_onnx_keeps_batchnorm() -> None:
    # The residual sample exists to exercise BN folding, so the exporter must not have fused it away.
    ops = [n.op_type for n in onnx.load(str(SAMPLE_DIR / "digits_residual.onnx")).graph.node]
    assert "BatchNormalization" in ops and "Add" in ops


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["onnx", "ts", "pt2"])
@torch.no_grad()
def test_formats_agree_with_state_dict(
    name: str, fmt: str, train_mod: ModuleType, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = test_data
    loaders = {
        "onnx": lambda p: train_mod.load_onnx_as_torch(p),
        "ts": lambda p: torch.jit.load(str(p)).eval(),
        "pt2": lambda p: torch.export.load(str(p)).module(),
    }
    loaded = loaders[fmt](SAMPLE_DIR / f"{name}.{fmt}")
    torch.testing.assert_close(loaded(x), _from_state_dict(name)(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_accuracy(name: str, train_mod: ModuleType, test_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_data
    assert train_mod.accuracy(_from_state_dict(name), x, y) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_pickle_is_a_full_module_pickle(name: str) -> None:
    # lipcert must refuse these without --trust-pickle; the safe loader already rejects them.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(SAMPLE_DIR / f"{name}.pickle.pt", weights_only=True)


def test_training_reproduces_onnx_weights(tmp_path: Path) -> None:
    # A subprocess keeps train.py's global torch settings (deterministic mode, 1 thread) out of pytest.
    subprocess.run(
        [sys.executable, str(SAMPLE_DIR / "train.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in NAMES:
        shipped = _onnx_initializers(SAMPLE_DIR / f"{name}.onnx")
        fresh = _onnx_initializers(tmp_path / f"{name}.onnx")
        assert shipped.keys() == fresh.keys()
        for key, value in shipped.items():
            np.testing.assert_allclose(fresh[key], value, atol=1e-6, rtol=0, err_msg=f"{name}:{key}")
