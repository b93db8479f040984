"""Selected outputs: the selection is exact, bounds obey the relations that must hold, bad input is refused.

Only relations that hold for the exact constants (and for the LipSDP optimum) are asserted:
- L(R f) <= L(f) for ||R|| <= 1 (a logit, or a pair scaled by 1/sqrt(2)),
- L(f_i - f_j) <= L(f_i) + L(f_j),
- every certified bound >= ||R J(x)||_2 at any point x (a true lower bound).
A certified LipSDP bound sits above the SDP optimum by the solver's gap, so relations between two
certified LipSDP bounds get a small relative slack; relations against a lower bound get none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_USAGE, BadInputError
from lipcert.estimate import EstimateOptions, estimate
from lipcert.outputs import all_pairs, logit_row, pair_row, parse_pair, select_outputs
from tests.conftest import ANCHORS_DIR, SAMPLES, load_cached, requires_anchors

runner = CliRunner()
SAMPLE_NAMES = ("digits_chain", "digits_residual", "digits_tanh")
SOLVER_SLACK = 0.01  # relative: two certified LipSDP bounds each sit within the solver gap of their optimum
ROUND_SLACK = 1e-9  # relative: naive bounds are products of norms, equal up to rounding


def run(*args: str):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def sample(name: str):  # noqa: ANN201 - LoadedModel
    return load_cached(str(SAMPLES / f"{name}.onnx"))


def probe_points(n_x: int, count: int = 64, seed: int = 0) -> np.ndarray:
    """Uniform in [0, 1]^n (the image range), Gaussian, and real digits images: varied activation patterns."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    points = [rng.random((count, n_x)), rng.standard_normal((count, n_x))]
    if n_x == 64:
        digits = load_digits().data / 16.0
        points.append(digits[rng.choice(len(digits), count, replace=False)])
    return np.concatenate(points)


def empirical_norm(net, rows: np.ndarray, points: np.ndarray) -> float:  # noqa: ANN001 - a Network
    """max_x ||rows @ J(x)||_2: a true lower bound on the Lipschitz constant of x -> rows @ f(x)."""
    rows = np.atleast_2d(rows)
    return max(float(np.linalg.norm(rows @ net.jacobian(x), 2)) for x in points)


# ---------------------------------------------------------------- exactness of the selection


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_select_outputs_is_exact(name: str) -> None:
    net = sample(name).network
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((3, net.n_y))
    selected = select_outputs(net, rows)
    assert selected.output_shape == (3,)
    assert selected.n_x == net.n_x and selected.n_w == net.n_w
    X = probe_points(net.n_x, count=8)
    full = net.forward(X)
    np.testing.assert_allclose(selected.forward(X), full @ rows.T, rtol=1e-12, atol=1e-12 * np.abs(full).max())
    for x in X[::6]:
        jac = net.jacobian(x)
        np.testing.assert_allclose(selected.jacobian(x), rows @ jac, rtol=1e-12, atol=1e-12 * np.abs(jac).max())


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_selected_form_matches_the_torch_model(name: str) -> None:
    """The selected form computes rows @ (what torch computes), not just rows @ (the form)."""
    loaded = sample(name)
    row = pair_row(loaded.network.n_y, 2, 7)
    x = probe_points(loaded.network.n_x, count=4)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        module = copy.deepcopy(loaded.module).double().eval()
        expected = module(torch.from_numpy(x).reshape(-1, *loaded.input_shape[1:])).reshape(len(x), -1).numpy()
    got = select_outputs(loaded.network, row).forward(x)
    np.testing.assert_allclose(got[:, 0], expected[:, 2] - expected[:, 7], rtol=1e-9, atol=1e-9)


def test_select_outputs_rejects_a_wrong_width() -> None:
    net = sample("digits_chain").network
    with pytest.raises(ValueError, match="9 columns, the network 10 outputs"):
        select_outputs(net, np.ones(9))


def test_rows_and_pairs() -> None:
    np.testing.assert_array_equal(logit_row(4, 2), [0, 0, 1, 0])
    np.testing.assert_array_equal(pair_row(4, 3, 1), [0, -1, 0, 1])
    pairs = all_pairs(10)
    assert len(pairs) == 45 and len(set(pairs)) == 45 and all(i < j for i, j in pairs)
    assert all_pairs(1) == []
    assert parse_pair("3,5") == (3, 5)
    assert parse_pair(" 3, 5 ") == (3, 5)


@pytest.mark.parametrize("text", ["3", "3,4,5", "a,b", "", "3,", ",3", "1.5,2", "3,--5"])
def test_parse_pair_refuses(text: str) -> None:
    with pytest.raises(BadInputError, match="two class indices like 3,5"):
        parse_pair(text)


@pytest.mark.parametrize(("i", "j"), [(3, 3), (-1, 2), (0, 10)])
def test_pair_row_refuses(i: int, j: int) -> None:
    with pytest.raises(BadInputError, match="--pair"):
        pair_row(10, i, j)


# ---------------------------------------------------------------- relations between bounds


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_naive_selection_relations(name: str) -> None:
    """Products of norms: ||R W|| <= ||W|| and ||(e_i - e_j)^T W|| <= ||e_i^T W|| + ||e_j^T W||, exactly."""
    loaded = sample(name)
    net = loaded.network
    full = estimate(loaded, EstimateOptions(method="naive")).bound
    logit = [estimate(loaded, EstimateOptions(method="naive", selection=logit_row(10, k))).bound for k in range(10)]
    assert max(logit) <= full * (1 + ROUND_SLACK)
    points = probe_points(net.n_x, count=16)
    for i, j in [(0, 1), (3, 8), (4, 9)]:
        pair = estimate(loaded, EstimateOptions(method="naive", selection=pair_row(net.n_y, i, j))).bound
        assert pair <= (logit[i] + logit[j]) * (1 + ROUND_SLACK)
        assert pair <= np.sqrt(2) * full * (1 + ROUND_SLACK)  # ||e_i - e_j|| = sqrt(2)
        assert pair >= empirical_norm(net, pair_row(net.n_y, i, j), points)
    for k in (0, 7):
        assert logit[k] >= empirical_norm(net, logit_row(net.n_y, k), points)


def mlp_onnx(path: Path, widths: tuple[int, ...] = (12, 20, 20, 10), seed: int = 0) -> Path:
    """A random ReLU MLP (Gemm/Relu) as ONNX: LMIs of side < 60, solved in well under a second."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, last = [], [], "x"
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        weight = (rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"W{k}"), numpy_helper.from_array(bias, f"b{k}")]
        nodes.append(helper.make_node("Gemm", [last, f"W{k}", f"b{k}"], [f"h{k}"], transB=1, name=f"fc{k}"))
        last = f"h{k}"
        if k < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{k}"], name=f"relu{k}"))
            last = f"r{k}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def lipsdp_bounds(loaded, logits: tuple[int, ...], pairs: tuple[tuple[int, int], ...]) -> dict:  # noqa: ANN001
    """Full LipSDP (one block) of the whole output, some logits and some pairs."""
    n_y = loaded.network.n_y

    def bound(selection: np.ndarray | None) -> float:
        return estimate(loaded, EstimateOptions(split=(1, 1), selection=selection, workers=1)).bound

    return {
        "loaded": loaded,
        "full": bound(None),
        "logit": {k: bound(logit_row(n_y, k)) for k in logits},
        "pair": {(i, j): bound(pair_row(n_y, i, j)) for i, j in pairs},
    }


RELATION_MODELS = [
    "random_mlp",
    "digits_fnn2_seed0",
    "digits_fnn3_seed0",
    pytest.param("digits_chain", marks=pytest.mark.slow),  # 4 solves of a 384-wide LMI: about a minute
]


@pytest.fixture(scope="module", params=RELATION_MODELS)
def lipsdp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    name = request.param
    if name == "random_mlp":  # always here, and small enough to bound every logit
        loaded = load_cached(str(mlp_onnx(tmp_path_factory.mktemp("mlp") / "mlp.onnx")))
        return lipsdp_bounds(loaded, tuple(range(10)), ((0, 1), (2, 7), (3, 9), (5, 6)))
    if name == "digits_chain":  # a trained CNN: one solve is 10-20 s, so a few selections only
        return lipsdp_bounds(sample(name), (1, 7), ((1, 7),))
    path = ANCHORS_DIR / "glipsdp" / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is absent: anchor tests read ../shared/anchors")
    return lipsdp_bounds(load_cached(str(path)), (1, 3, 7), ((1, 7), (3, 7), (1, 3)))


def test_lipsdp_logit_below_full_output(lipsdp: dict) -> None:
    full = lipsdp["full"]
    for k, value in lipsdp["logit"].items():
        assert value <= full * (1 + SOLVER_SLACK), f"logit {k}: {value} above the full-output bound {full}"


def test_lipsdp_pair_below_sum_of_logits(lipsdp: dict) -> None:
    """The LipSDP optimum is subadditive: a mix of the two logits' certificates is feasible for the pair."""
    logit, full = lipsdp["logit"], lipsdp["full"]
    for (i, j), value in lipsdp["pair"].items():
        assert value <= (logit[i] + logit[j]) * (1 + SOLVER_SLACK), f"pair {i},{j}: {value}"
        assert value <= np.sqrt(2) * full * (1 + SOLVER_SLACK), f"pair {i},{j}: {value}"


def test_lipsdp_selected_bounds_above_jacobian_norms(lipsdp: dict) -> None:
    net = lipsdp["loaded"].network
    points = probe_points(net.n_x, count=64, seed=3)
    assert lipsdp["full"] >= empirical_norm(net, np.eye(net.n_y), points)
    for k, value in lipsdp["logit"].items():
        assert value >= empirical_norm(net, logit_row(net.n_y, k), points)
    for (i, j), value in lipsdp["pair"].items():
        assert value >= empirical_norm(net, pair_row(net.n_y, i, j), points)


def test_lipsdp_beats_naive_on_a_selection(lipsdp: dict) -> None:
    """Not a law, but the point of the feature: the selected LipSDP bound is below the selected product."""
    loaded = lipsdp["loaded"]
    k = max(lipsdp["logit"])
    naive = estimate(loaded, EstimateOptions(method="naive", selection=logit_row(loaded.network.n_y, k))).bound
    assert lipsdp["logit"][k] < naive


# ---------------------------------------------------------------- the command line


def test_cli_logit_out_of_range() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--logit", "10")
    assert result.exit_code == EXIT_USAGE  # a bad option value
    assert "--logit 10 is out of range" in result.output
    assert "10 outputs (0..9)" in result.output


def test_cli_negative_logit() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--logit", "-1")
    assert result.exit_code == EXIT_USAGE  # a bad option value
    assert "(0..9)" in result.output


def test_cli_pair_of_one_class() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--pair", "3,3")
    assert result.exit_code == EXIT_USAGE  # a bad option value
    assert "--pair 3,3: the two classes must differ" in result.output


@pytest.mark.parametrize("text", ["a,b", "3", "3,--5"])
def test_cli_pair_not_two_indices(text: str) -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--pair", text)
    assert result.exit_code == EXIT_USAGE  # a bad option value
    assert f"--pair '{text}' must be two class indices like 3,5" in result.output


def test_cli_pair_out_of_range() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--pair", "2,12")
    assert result.exit_code == EXIT_USAGE  # a bad option value
    assert "--pair 12 is out of range" in result.output


def test_cli_logit_and_pair_together() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--logit", "1", "--pair", "2,3")
    assert result.exit_code == 2
    assert "not both" in result.output


def test_cli_pairs_other_than_all() -> None:
    result = run("estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--pairs", "some")
    assert result.exit_code == 2
    assert "only 'all'" in result.output


def test_cli_with_lower_bounds_the_selected_function() -> None:
    """--with-lower next to --logit must be a lower bound of that logit, so the ratio is >= 1."""
    args = ["estimate", str(SAMPLES / "digits_chain.onnx"), "--method", "naive", "--format", "json", "--with-lower"]
    whole = json.loads(run(*args).output)
    logit = json.loads(run(*args, "--logit", "0").output)
    assert logit["selection"] == "logit 0"
    assert logit["lower"] <= logit["bound"]
    assert logit["lower"] < whole["lower"]  # one row of the Jacobian: far smaller than all ten here


# ---------------------------------------------------------------- peer values (GLipSDP, logit 7)

# Published to 5 significant digits: the exact value lies within half a unit of the last digit.
PEER = {  # file: (LipSDP-Neuron (MOSEK), exact product of norms, half a unit of the last digit)
    "digits_fnn2_seed0.onnx": (5.1097, 7.0922, 5e-5),
    "digits_fnn3_seed0.onnx": (9.7286, 14.694, 5e-4),
}


@requires_anchors
@pytest.mark.parametrize("file", sorted(PEER))
def test_peer_lipsdp_logit_7(file: str) -> None:
    peer, _, _ = PEER[file]
    path = str(ANCHORS_DIR / "glipsdp" / file)
    result = run("estimate", path, "--logit", "7", "--split", "1x1", "--jobs", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    bound = json.loads(result.output)["bound"]
    assert bound >= peer - 5e-5  # a sound certificate is never below the SDP optimum (here: to rounding)
    assert bound <= peer * 1.003, f"{file}: {bound} more than 0.3% above the peer's {peer}"


@requires_anchors
@pytest.mark.parametrize("file", sorted(PEER))
def test_peer_naive_logit_7(file: str) -> None:
    _, product, half_unit = PEER[file]
    path = str(ANCHORS_DIR / "glipsdp" / file)
    result = run("estimate", path, "--logit", "7", "--method", "naive", "--format", "json")
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.output)["bound"] - product) <= half_unit


def test_pairs_in_one_pass_equal_separate_estimates_and_share_blocks() -> None:
    """estimate_pairs solves every distinct block of every pair once, in one pass; each pair's
    certificate is the one a separate estimate gives, bit for bit."""
    from lipcert.pairs import estimate_pairs

    loaded = sample("digits_chain")
    options = EstimateOptions(method="naive", split=(2, 2), combine="overlap")
    pairs = [(0, 1), (3, 8), (7, 2)]
    solved: list[str] = []
    together = estimate_pairs(loaded, options, pairs, progress=lambda outcome, done, total: solved.append(outcome.key))
    for (i, j), result in zip(pairs, together):
        alone = estimate(loaded, dataclasses.replace(options, selection=pair_row(10, i, j)))
        assert result.bound == alone.bound
        assert [b.bound for b in result.certificate.blocks] == [b.bound for b in alone.blocks]
    assert together[0].certificate.combine is None  # naive tiles: no combination theorem was used
    first_group = {b.key for b in together[0].certificate.blocks if b.group == 0}
    assert len(first_group) == 4  # the 2x2 tiles of relu1 do not depend on the pair ...
    assert len(solved) == len(set(solved)) == len(first_group) + len(pairs)  # ... so they are solved once
