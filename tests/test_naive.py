"""The naive bound and the certified norms it rests on, against independent computations."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import scipy.sparse as sp
from onnx import numpy_helper

from lipcert.linalg import certify_psd, spectral_norm_lower, spectral_norm_upper
from lipcert.naive import naive_bound
from lipcert.network.form import Layer, Network
from tests.conftest import (
    ANCHORS_DIR,
    MODELS_DIR,
    SAMPLES,
    load_cached,
    published_lower_bounds,
    requires_anchors,
    requires_shared_models,
    shared_model_names,
)


def gemm_weights(path) -> list[np.ndarray]:  # noqa: ANN001
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]


@requires_shared_models
@pytest.mark.parametrize("name", shared_model_names())
def test_naive_is_above_the_published_lower_bound(name: str) -> None:
    bound = naive_bound(load_cached(str(MODELS_DIR / name)).network)
    assert bound >= published_lower_bounds()[name]


@pytest.mark.parametrize("name", ["digits_chain", "digits_residual", "digits_tanh"])
def test_naive_is_above_jacobian_norms(name: str) -> None:
    net = load_cached(str(SAMPLES / f"{name}.onnx")).network
    bound = naive_bound(net)
    rng = np.random.default_rng(0)
    lower = max(np.linalg.norm(net.jacobian(rng.random(net.n_x)), 2) for _ in range(20))
    assert lower <= bound


@requires_anchors
@pytest.mark.parametrize(
    "file, expected",
    [("lipsdp/random_2-10-30-20-2.onnx", 43.306), ("lipsdp/mnist_784-50-10.onnx", 31.504)],
)
def test_naive_is_the_exact_product_on_chains(file: str, expected: float) -> None:
    path = ANCHORS_DIR / file
    product = float(np.prod([np.linalg.norm(w.astype(np.float64), 2) for w in gemm_weights(path)]))
    bound = naive_bound(load_cached(str(path)).network)
    assert product == pytest.approx(expected, abs=6e-4)
    assert product <= bound <= product * (1 + 1e-8)


@requires_shared_models
def test_naive_matches_the_issue_value_for_mnist_256x2() -> None:
    bound = naive_bound(load_cached(str(MODELS_DIR / "mnistfc__mnist-net_256x2.onnx")).network)
    assert bound == pytest.approx(839.26, abs=5e-3)


def test_residual_rule_is_one_plus_branch() -> None:
    """y = x + W2 relu(W1 x): the bound is 1 + ||W2|| ||W1||, not ||W2|| ||W1||."""
    rng = np.random.default_rng(5)
    W1, W2 = rng.standard_normal((6, 4)), rng.standard_normal((4, 6))
    net = Network(
        A=sp.csr_matrix(W1),
        B=sp.csr_matrix((6, 6)),
        C=sp.identity(4, format="csr"),
        D=sp.csr_matrix(W2),
        bias_v=np.zeros(6),
        bias_y=np.zeros(4),
        layers=(Layer("relu", "relu", 0, 6, (6,), 0.0, 1.0),),
        input_shape=(4,),
        output_shape=(4,),
    )
    exact = 1.0 + np.linalg.norm(W2, 2) * np.linalg.norm(W1, 2)
    assert exact <= naive_bound(net) <= exact * (1 + 1e-9)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (50, 20), (600, 450)])
def test_spectral_norm_bounds_bracket_the_svd(shape: tuple[int, int]) -> None:
    M = np.random.default_rng(sum(shape)).standard_normal(shape)
    exact = np.linalg.norm(M, 2)
    assert spectral_norm_lower(M) <= exact * (1 + 1e-12)
    assert exact <= spectral_norm_upper(M) <= exact * (1 + 1e-7)


def test_spectral_norm_of_a_sparse_convolution_matrix() -> None:
    M = sp.random(900, 700, density=0.01, random_state=3, format="csr")
    exact = np.linalg.norm(M.toarray(), 2)
    assert exact <= spectral_norm_upper(M) <= exact * (1 + 1e-7)


def test_certify_psd_on_known_matrices() -> None:
    assert certify_psd(np.diag([1.0, 2.0, 3.0]))
    assert certify_psd(np.array([[2.0, 1.0], [1.0, 2.0]]))  # eigenvalues 1 and 3
    assert not certify_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))  # eigenvalue -1
    assert not certify_psd(np.diag([1.0, -1e-3]))
    assert not certify_psd(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    # exactly singular: PSD but not provable with a positive margin, so "not proven"
    assert not certify_psd(np.ones((3, 3)))


def test_certified_norm_does_not_depend_on_what_the_process_computed_before() -> None:
    """Lanczos starts from a fixed vector, so the bound is the same bit for bit on every executor
    (ARPACK's own start vector changes from call to call: jobs 1 and jobs 2 gave bounds 7 ulps apart)."""
    import scipy.sparse.linalg as spla

    from lipcert.linalg import certified_lambda_max, largest_eigenvalue_estimate

    M = np.random.default_rng(7).standard_normal((900, 800))  # n > 400: the Lanczos path
    G = M.T @ M
    first, bound = largest_eigenvalue_estimate(G), certified_lambda_max(G)
    spla.eigsh(G + np.eye(800), k=1, return_eigenvectors=False)  # advances ARPACK's internal state
    assert largest_eigenvalue_estimate(G) == first
    assert certified_lambda_max(G) == bound >= np.linalg.eigvalsh(G).max()


def test_a_remembered_norm_is_the_norm_of_the_same_matrix_and_leaves_it_alone() -> None:
    """spectral_norm_upper remembers by content: the same matrix in any format (duplicates, unsorted
    indices) gets the same certified value, a changed entry does not, and the input is not modified."""
    from lipcert import linalg

    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 40, 300), rng.integers(0, 30, 300)
    values = rng.standard_normal(300)
    messy = sp.csr_matrix((values, (rows, cols)), shape=(40, 30))
    messy.has_canonical_format = False  # as if built without summing duplicates
    before = messy.data.copy()
    first = linalg.spectral_norm_upper(messy)
    assert np.array_equal(messy.data, before)
    dense = messy.toarray()
    assert first >= np.linalg.norm(dense, 2)
    assert linalg.spectral_norm_upper(sp.csc_matrix(dense)) == first
    changed = dense.copy()
    changed[0, 0] += 10.0
    assert linalg.spectral_norm_upper(changed) >= np.linalg.norm(changed, 2) > np.linalg.norm(dense, 2) + 1
