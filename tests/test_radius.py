"""Certified L2 radii: input loading, bad input, --min-certified, and soundness against an L2 PGD attack."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_BAD_INPUT, EXIT_UNDER_CERTIFIED, BadInputError
from lipcert.estimate import EstimateOptions, estimate
from lipcert.pairs import estimate_pairs
from lipcert.radius import certified_radii, load_inputs, logits, read_pair_bounds
from lipcert.report.documents import pairs_json
from lipcert.report.tables import pairs_csv
from tests.conftest import REPO, SAMPLES, load_cached
from tests.support import attack_radius, pgd_margin

runner = CliRunner()
CHAIN = SAMPLES / "digits_chain.onnx"
SHAPE = (1, 8, 8)
N_TEST = 20


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def held_out_images() -> tuple[np.ndarray, np.ndarray]:
    """The held-out images of sample_models/train.py's split, (N, 1, 8, 8) in [0, 1], and their labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).reshape(-1, *SHAPE)
    _, x_test, _, y_test = train_test_split(x, data.target, test_size=0.25, random_state=0)
    return np.ascontiguousarray(x_test, dtype=np.float64), y_test


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """The first N_TEST held-out images."""
    return held_out_images()[0][:N_TEST]


LIPSDP_WORKER = """
import json, sys, warnings
warnings.simplefilter("ignore")
from lipcert.estimate import EstimateOptions
from lipcert.load import load_model
from lipcert.pairs import estimate_pairs
pairs = [tuple(p) for p in json.loads(sys.argv[2])]
options = EstimateOptions(split=(1, 1), workers=1, solver=json.loads(sys.argv[3]))
print(json.dumps([[r.i, r.j, r.bound] for r in estimate_pairs(load_model(sys.argv[1]), options, pairs=pairs)]))
"""
ALL_PAIRS = [(i, j) for i in range(10) for j in range(i + 1, 10)]
QUICK = {"max_iters": 50}  # SCS stops early; the verified bound stays sound, ~5% above the converged one


def lipsdp_pair_bounds(
    model: Path, pairs: list[tuple[int, int]], solver: dict | None = None, processes: int = 2
) -> dict[tuple[int, int], float]:
    """Full LipSDP (one block, --split 1x1) of the given class pairs with estimate_pairs, in parallel processes.

    A digits_chain pair is one SCS solve of a 384-wide LMI: ~1.4 s at 50 iterations, 10-20 s converged.
    Separate processes pay ~5 s of imports each: worth it for converged solves, not for quick ones.
    """
    if processes == 1:
        options = EstimateOptions(split=(1, 1), workers=1, solver=solver or {})
        return {(r.i, r.j): r.bound for r in estimate_pairs(load_cached(str(model)), options, pairs=pairs)}
    chunks = [pairs[k::processes] for k in range(processes) if pairs[k::processes]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running = [
        subprocess.Popen(
            [sys.executable, "-c", LIPSDP_WORKER, str(model), json.dumps(chunk), json.dumps(solver or {})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for chunk in chunks
    ]
    bounds = {}
    for process in running:
        out, err = process.communicate(timeout=3600)
        assert process.returncode == 0, err
        bounds |= {(int(i), int(j)): float(b) for i, j, b in json.loads(out)}
    return bounds


CONFUSABLE = (1, 8, 9)  # the classes with the smallest margins on digits_chain


@pytest.fixture(scope="module")
def confusable() -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """N_TEST held-out images predicted 1, 8 or 9, and the 24 pair bounds their radii need.

    Full LipSDP with SCS capped at 50 iterations: sound, a few % above the converged bound, ~1.4 s a pair.
    """
    x, _ = held_out_images()
    predicted = logits(load_cached(str(CHAIN)).module, x).argmax(axis=1)
    images = x[np.isin(predicted, CONFUSABLE)][:N_TEST]
    pairs = [(i, j) for i, j in ALL_PAIRS if i in CONFUSABLE or j in CONFUSABLE]
    return images, lipsdp_pair_bounds(CHAIN, pairs, QUICK, processes=1)


def naive_pairs_file(folder: Path, name: str) -> Path:
    """A pair-bounds file made by the real CLI (estimate --pairs all), with the quick naive method."""
    path = folder / f"{name}.pairs.json"
    model = str(SAMPLES / f"{name}.onnx")
    result = run("estimate", model, "--pairs", "all", "--method", "naive", "--format", "json", "--output", str(path))
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def naive_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("naive")
    return {name: naive_pairs_file(folder, name) for name in ("digits_chain", "digits_tanh")}


# ---------------------------------------------------------------- load_inputs


def test_load_npy_batch_flat_and_single(tmp_path: Path, digits: np.ndarray) -> None:
    for name, array in [("batch", digits), ("flat", digits.reshape(N_TEST, 64)), ("f32", digits.astype(np.float32))]:
        np.save(tmp_path / f"{name}.npy", array)
        got = load_inputs(tmp_path / f"{name}.npy", SHAPE)
        assert got.shape == (N_TEST, *SHAPE) and got.dtype == np.float64
        np.testing.assert_allclose(got, digits, rtol=1e-7)
    np.save(tmp_path / "one.npy", digits[0])
    assert load_inputs(tmp_path / "one.npy", SHAPE).shape == (1, *SHAPE)


@pytest.mark.parametrize("key", ["x", "inputs", "images"])
def test_load_npz(tmp_path: Path, digits: np.ndarray, key: str) -> None:
    np.savez(tmp_path / "a.npz", **{key: digits})
    np.testing.assert_array_equal(load_inputs(tmp_path / "a.npz", SHAPE), digits)


def test_load_npz_prefers_x_next_to_labels(tmp_path: Path, digits: np.ndarray) -> None:
    np.savez(tmp_path / "a.npz", x=digits, y=np.arange(N_TEST))
    np.testing.assert_array_equal(load_inputs(tmp_path / "a.npz", SHAPE), digits)


def test_load_npz_ambiguous(tmp_path: Path, digits: np.ndarray) -> None:
    np.savez(tmp_path / "a.npz", images=digits, labels=np.arange(N_TEST))
    with pytest.raises(BadInputError, match="name the inputs 'x' or 'inputs'"):
        load_inputs(tmp_path / "a.npz", SHAPE)


@pytest.mark.parametrize("wrap", ["tensor", "x", "inputs"])
def test_load_pt(tmp_path: Path, digits: np.ndarray, wrap: str) -> None:
    tensor = torch.from_numpy(digits).float()
    torch.save(tensor if wrap == "tensor" else {wrap: tensor, "labels": torch.arange(N_TEST)}, tmp_path / "a.pt")
    got = load_inputs(tmp_path / "a.pt", SHAPE)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, digits, rtol=1e-7)


def test_load_pt_without_a_tensor(tmp_path: Path) -> None:
    torch.save({"images": torch.zeros(2, 1, 8, 8)}, tmp_path / "a.pt")
    with pytest.raises(BadInputError, match="expected a tensor"):
        load_inputs(tmp_path / "a.pt", SHAPE)


# ---------------------------------------------------------------- bad input on the command line


def radius_cli(inputs: Path, bounds: Path, *extra: str):  # noqa: ANN201 - click's Result
    return run("radius", str(CHAIN), "--inputs", str(inputs), "--bounds", str(bounds), *extra)


def test_wrong_shape(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    np.save(tmp_path / "bad.npy", digits[:5, :, :, :7])
    result = radius_cli(tmp_path / "bad.npy", naive_pairs["digits_chain"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "bad.npy: inputs have shape (5, 1, 8, 7); the model expects (N, 1, 8, 8) or (N, 64)" in result.output


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path: Path, naive_pairs: dict, digits: np.ndarray, value: float) -> None:
    x = digits[:4].copy()
    x[2, 0, 3, 3] = value
    np.save(tmp_path / "bad.npy", x)
    result = radius_cli(tmp_path / "bad.npy", naive_pairs["digits_chain"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "the inputs hold 1 NaN or infinite value(s)" in result.output


def test_missing_inputs(tmp_path: Path, naive_pairs: dict) -> None:
    result = radius_cli(tmp_path / "nope.npy", naive_pairs["digits_chain"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nope.npy: no such file" in result.output


def test_unknown_input_format(tmp_path: Path, naive_pairs: dict) -> None:
    (tmp_path / "x.csv").write_text("0,1\n", encoding="utf-8")
    result = radius_cli(tmp_path / "x.csv", naive_pairs["digits_chain"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "inputs must be .npy, .npz or .pt" in result.output


def test_corrupt_inputs(tmp_path: Path, naive_pairs: dict) -> None:
    (tmp_path / "x.npy").write_bytes(b"not numpy at all")
    result = radius_cli(tmp_path / "x.npy", naive_pairs["digits_chain"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "cannot read the inputs" in result.output


def test_bounds_for_another_model(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", digits)
    result = radius_cli(tmp_path / "x.npy", naive_pairs["digits_tanh"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "was made for another model" in result.output
    assert "digits_tanh.pairs.json" in result.output


def test_read_pair_bounds(naive_pairs: dict) -> None:
    loaded = load_cached(str(CHAIN))
    bounds = read_pair_bounds(naive_pairs["digits_chain"], loaded.sha256)
    assert sorted(bounds) == [(i, j) for i in range(10) for j in range(i + 1, 10)]
    assert all(np.isfinite(b) and b > 0 for b in bounds.values())
    with pytest.raises(BadInputError, match="made for another model"):
        read_pair_bounds(naive_pairs["digits_chain"], "0" * 64)


def test_pairs_json_and_csv(naive_pairs: dict) -> None:
    """The report `radius --bounds` reads back, and its CSV twin, from the library and from the CLI."""
    loaded = load_cached(str(CHAIN))
    results = estimate_pairs(loaded, EstimateOptions(method="naive"))
    assert [(r.i, r.j) for r in results] == [(i, j) for i in range(10) for j in range(i + 1, 10)]
    assert all(r.certificate.selection == f"pair {r.i},{r.j}" for r in results)
    report = pairs_json(loaded, results, estimate(loaded, EstimateOptions(method="naive")))
    assert report["kind"] == "pairs" and report["sha256"] == loaded.sha256 and report["method"] == "naive"
    assert report["full_output_bound"] > 0
    cli = json.loads(naive_pairs["digits_chain"].read_text(encoding="utf-8"))
    assert [p["bound"] for p in cli["pairs"]] == [r.bound for r in results]
    lines = pairs_csv(results).splitlines()
    assert lines[0] == "i,j,bound,method,combine" and len(lines) == 46
    i, j, bound, method, combine = lines[1].split(",")
    assert (int(i), int(j), float(bound), method, combine) == (0, 1, results[0].bound, "naive", "")


def test_missing_bounds_file(tmp_path: Path, digits: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", digits)
    result = radius_cli(tmp_path / "x.npy", tmp_path / "nope.json")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nope.json" in result.output and "No such file" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it as JSON"),
        ('{"kind": "certificate"}', "not a pair-bounds file"),
        ("[1, 2, 3]", "not a pair-bounds file"),
    ],
)
def test_bounds_not_a_pairs_file(tmp_path: Path, digits: np.ndarray, content: str, message: str) -> None:
    np.save(tmp_path / "x.npy", digits)
    (tmp_path / "b.json").write_text(content, encoding="utf-8")
    result = radius_cli(tmp_path / "x.npy", tmp_path / "b.json")
    assert result.exit_code == EXIT_BAD_INPUT
    assert message in result.output


def test_bounds_missing_a_pair(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    data = json.loads(naive_pairs["digits_chain"].read_text(encoding="utf-8"))
    data["pairs"] = data["pairs"][:-1]  # drops (8, 9)
    (tmp_path / "b.json").write_text(json.dumps(data), encoding="utf-8")
    np.save(tmp_path / "x.npy", digits)
    result = radius_cli(tmp_path / "x.npy", tmp_path / "b.json")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "8,9" in result.output


def test_bounds_with_malformed_entries(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    data = json.loads(naive_pairs["digits_chain"].read_text(encoding="utf-8"))
    data["pairs"][3] = {"i": 0, "bound": 1.0}
    (tmp_path / "b.json").write_text(json.dumps(data), encoding="utf-8")
    np.save(tmp_path / "x.npy", digits)
    result = radius_cli(tmp_path / "x.npy", tmp_path / "b.json")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'pairs' must be a list of {i, j, bound} entries" in result.output


def one_output_onnx(path: Path) -> Path:
    """x (4) -> Gemm -> ReLU -> Gemm -> y (1): a model with a single output has no class pairs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "W1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1, name="fc2"),
    ]
    weights = [rng.standard_normal(s).astype(np.float32) for s in ((5, 4), (1, 5))]
    graph = helper.make_graph(
        nodes,
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, n) for w, n in zip(weights, ("W1", "W2"))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_one_output_has_no_pairs(tmp_path: Path) -> None:
    model = str(one_output_onnx(tmp_path / "one.onnx"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 4)))
    for args in (
        ["estimate", model, "--pairs", "all", "--method", "naive"],
        ["estimate", model, "--pairs", "all", "--method", "naive", "--format", "json"],
        ["radius", model, "--inputs", str(tmp_path / "x.npy"), "--method", "naive"],
    ):
        result = run(*args)
        assert result.exit_code == EXIT_BAD_INPUT, args
        assert "class pairs need at least 2 outputs; the model has 1" in result.output


def test_bad_eps(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", digits)
    for eps in ("a,b", "-0.1", ""):
        result = radius_cli(tmp_path / "x.npy", naive_pairs["digits_chain"], "--radii", eps)
        assert result.exit_code == 2, eps


# ---------------------------------------------------------------- radii and --min-certified


def test_radii_by_hand() -> None:
    outputs = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0], [-1.0, 0.0, 4.0]])
    bounds = {(0, 1): 2.0, (0, 2): 4.0, (1, 2): 1.0}
    radii = certified_radii(outputs, bounds)
    np.testing.assert_array_equal(radii.predicted, [0, 1, 2])
    np.testing.assert_allclose(radii.radius, [min(2 / 2, 3 / 4), 0.0, min(5 / 4, 4 / 1)], rtol=1e-8)
    assert np.all(radii.radius[[0, 2]] < [0.75, 1.25])  # the slack only ever shrinks a radius
    assert radii.certified_fraction(0.5) == pytest.approx(2 / 3)
    assert radii.certified_fraction(1.25) == 0.0  # strict: r > eps


def test_cli_radii_equal_the_library(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    path = naive_pairs["digits_chain"]
    bounds = read_pair_bounds(path, load_cached(str(CHAIN)).sha256)
    np.save(tmp_path / "x.npy", digits)
    result = radius_cli(tmp_path / "x.npy", path, "--format", "json", "--radii", "0.1,0.2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = certified_radii(logits(load_cached(str(CHAIN)).module, digits), bounds)
    np.testing.assert_allclose([r["radius"] for r in report["inputs"]], expected.radius, rtol=1e-12)
    assert [f["eps"] for f in report["certified_fraction"]] == [0.1, 0.2]
    assert report["certified_fraction"][0]["fraction"] == expected.certified_fraction(0.1)


def test_cli_computes_pairs_itself(tmp_path: Path, digits: np.ndarray) -> None:
    """Without --bounds the command certifies every pair itself (naive here, to be quick)."""
    loaded = load_cached(str(CHAIN))
    np.save(tmp_path / "x.npy", digits)
    args = ["radius", str(CHAIN), "--inputs", str(tmp_path / "x.npy"), "--method", "naive", "--format", "json"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    bounds = {(r.i, r.j): r.bound for r in estimate_pairs(loaded, EstimateOptions(method="naive"))}
    expected = certified_radii(logits(loaded.module, digits), bounds).radius
    np.testing.assert_allclose([r["radius"] for r in json.loads(result.stdout)["inputs"]], expected, rtol=1e-12)
    assert "certifying 45 class pairs here" in result.stderr and "--bounds" in result.stderr  # says what it costs


def test_min_certified_met_and_not_met(tmp_path: Path, naive_pairs: dict, digits: np.ndarray) -> None:
    path = naive_pairs["digits_chain"]
    bounds = read_pair_bounds(path, load_cached(str(CHAIN)).sha256)
    np.save(tmp_path / "x.npy", digits)
    radii = certified_radii(logits(load_cached(str(CHAIN)).module, digits), bounds)
    eps = float(np.median(radii.radius))  # some inputs certified at eps, some not
    fraction = radii.certified_fraction(eps)
    assert 0 < fraction < 1
    met = radius_cli(tmp_path / "x.npy", path, "--radii", repr(eps), "--min-certified", repr(fraction))
    assert met.exit_code == 0, met.output
    missed = radius_cli(tmp_path / "x.npy", path, "--radii", f"{eps!r},0", "--min-certified", repr(fraction + 0.01))
    assert missed.exit_code == EXIT_UNDER_CERTIFIED  # judged at the first --radii, though all are certified at 0
    assert "below --min-certified" in missed.output


SCRIPT = """#!/usr/bin/env bash
# A CI gate: fail the job when fewer than 100% of the inputs are certified at radius 0.1.
set -u
"$PYTHON" -m lipcert radius "$MODEL" --inputs "$INPUTS" --bounds "$BOUNDS" --radii 0.1 --min-certified "$MIN"
status=$?
echo "lipcert radius exited with $status"
exit $status
"""


@pytest.mark.parametrize(("minimum", "code"), [("1.0", EXIT_UNDER_CERTIFIED), ("0.0", 0)])
def test_min_certified_in_a_shell_script(
    tmp_path: Path, naive_pairs: dict, digits: np.ndarray, minimum: str, code: int
) -> None:
    np.save(tmp_path / "x.npy", digits)
    script = tmp_path / "gate.sh"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": str(CHAIN), "INPUTS": str(tmp_path / "x.npy")}
    env |= {"BOUNDS": str(naive_pairs["digits_chain"]), "MIN": minimum, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == code, done.stderr
    assert f"lipcert radius exited with {code}" in done.stdout
    if code:
        assert "certified at radius 0.1, below --min-certified 100.0%" in done.stderr


# ---------------------------------------------------------------- soundness: L2 PGD never flips a certified input


def check_soundness(images: np.ndarray, bounds: dict[tuple[int, int], float], label: str) -> None:
    """No PGD flip within 0.999 x the certified radius; then how close PGD's smallest flip comes to it."""
    loaded = load_cached(str(CHAIN))
    radii = certified_radii(logits(loaded.module, images), bounds)
    certified = radii.radius > 0
    assert certified.sum() >= len(images) // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = copy.deepcopy(loaded.module).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x0 = torch.from_numpy(images[certified])
    label_t = torch.from_numpy(radii.predicted[certified])
    r = radii.radius[certified]

    best, delta = pgd_margin(model, x0, label_t, torch.from_numpy(0.999 * r))
    assert torch.all(delta.norm(dim=1) <= torch.from_numpy(0.999 * r) * (1 + 1e-12))
    flips = np.flatnonzero(best.numpy() >= 0)
    assert flips.size == 0, f"PGD flipped certified inputs {flips} inside 0.999 x their certified radius"
    # The attack works: it always ends above the clean point's margin.
    margins = np.where(np.eye(10, dtype=bool)[radii.predicted], np.inf, radii.margins)[certified]
    assert np.all(best.numpy() > -margins.min(axis=1))

    found = attack_radius(model, x0, label_t, r).flip
    assert np.all(np.isfinite(found)), "PGD found no flip even at 256 x the certified radius"
    assert np.all(found >= r), "a flip inside the certified radius"
    ratio = r / found
    print(
        f"\n{label}: {len(r)} of {len(images)} certified; certified / PGD flip radius: min {ratio.min():.3f}, "
        f"median {np.median(ratio):.3f}, max {ratio.max():.3f} (certified radius median {np.median(r):.4f}, "
        f"PGD flip radius median {np.median(found):.4f})"
    )


def test_pgd_never_flips_a_certified_input(confusable: tuple) -> None:
    images, bounds = confusable
    assert set(logits(load_cached(str(CHAIN)).module, images).argmax(axis=1)) == set(CONFUSABLE)
    check_soundness(images, bounds, "digits_chain, images predicted 1/8/9, full LipSDP at 50 SCS iterations")


@pytest.mark.slow
def test_pgd_never_flips_with_converged_bounds(digits: np.ndarray) -> None:
    """The first N_TEST held-out images (8 classes), SCS run to its default tolerance: 45 x 10-20 s on one core."""
    check_soundness(digits, lipsdp_pair_bounds(CHAIN, ALL_PAIRS), "digits_chain, first images, full LipSDP converged")
