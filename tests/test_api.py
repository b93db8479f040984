"""The public Python API: the README's example runs, and a module in memory certifies as its ONNX export."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import lipcert
from tests.support import REPO, SAMPLES


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_certifies_a_module_built_in_memory(capsys: pytest.CaptureFixture) -> None:
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    cert, model = namespace["cert"], namespace["model"]
    assert isinstance(cert, lipcert.Certificate) and cert.method == lipcert.Method.NEURON
    assert "certified L2 Lipschitz bound" in capsys.readouterr().out
    # Sound and meaningful: above the largest Jacobian norm at random inputs, below the naive product.
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    jac = torch.func.vmap(torch.func.jacrev(lambda v: model(v[None]).reshape(-1)))(x)
    lower = float(torch.linalg.matrix_norm(jac.reshape(16, 10, -1), ord=2).max().detach())
    naive = lipcert.certify(model, input_shape=(1, 8, 8), method="naive").bound
    assert lower <= cert.bound <= naive


def test_a_module_certifies_as_its_onnx_export(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 24), torch.nn.Tanh(), torch.nn.Linear(24, 10))
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter, as many users run it
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["input"])
    in_memory = lipcert.certify(model, input_shape=(1, 8, 8))
    from_file = lipcert.certify(path)
    assert in_memory.bound == from_file.bound
    assert in_memory.model == "<Sequential>" and from_file.model == str(path)
    np.testing.assert_array_equal(model[1].weight.detach().numpy(), model[1].weight.detach().numpy())  # untouched


def test_certify_takes_options_by_name_and_refuses_unknown_ones() -> None:
    loaded = lipcert.load_model(SAMPLES / "digits_chain.onnx")
    naive = lipcert.certify(loaded, method="naive")
    assert naive.method == "naive" and naive.bound > 0
    with pytest.raises(TypeError, match="unknown settings"):
        lipcert.certify(loaded, methd="naive")
    with pytest.raises(lipcert.BadInputError, match="is not one of"):
        lipcert.certify(loaded, method="lipsdp-network")
    with pytest.raises(lipcert.BadInputError, match="input_shape"):
        lipcert.certify(torch.nn.Linear(3, 2))
