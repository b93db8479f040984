"""The certified sparse PSD proof (lipcert/sdp/sparse_psd.py) and the sparse proof of −L(λ, ρ̂) ⪰ 0
(lipcert/sdp/sparse_verify.py): agreement with the dense proof, exact arithmetic, refusals, no dense n×n."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg as la
import scipy.sparse as sp

from lipcert.linalg import certify_psd, gamma
from lipcert.sdp.lifted import lifted_matrix
from lipcert.sdp.schur import schur_rho
from lipcert.sdp.sparse_psd import EXTRA_ROUNDINGS, certify_psd_sparse, factor_row_count, ldl_factor
from lipcert.sdp.verify import PROOF_ATTEMPTS, REL_MARGIN, prove_rho, prove_rho_sparse, verify_multipliers
from tests.nets import feasible_multipliers, random_net
from tests.test_sequential import exact_min_eigenvalue
from tests.test_verify import one_neuron

# ρ̂ = round_up(ρ* + margin), margin ≥ REL_MARGIN ρ* growing ×10 per failed attempt: two proofs of the
# same ρ* agree within the largest margin either can reach; on these small, well-scaled nets the first
# margins suffice (the first margin also covers δ and the Cholesky shift, ~1e-13 relative here).
AGREE = REL_MARGIN * 10.0**3


def test_sparse_and_dense_proofs_agree_on_200_random_nets() -> None:
    proven = 0
    for seed in range(200):
        net = random_net(seed)
        lam = feasible_multipliers(net, seed)
        rho_star = schur_rho(net, lam)
        dense, sparse = prove_rho(net, lam, rho_star), prove_rho_sparse(net, lam, rho_star)
        assert (dense is None) == (sparse is None), seed
        if dense is None:
            continue
        proven += 1
        assert dense >= rho_star and sparse >= rho_star
        assert sparse == pytest.approx(dense, rel=AGREE, abs=1e-300), seed
        assert sparse <= rho_star * (1 + AGREE) + 1e-300
        if seed % 20:
            continue
        # ρ* well below the true one must be refused by both (all margins together stay under 1%).
        assert prove_rho_sparse(net, lam, 0.9 * rho_star) is None, seed
        assert prove_rho(net, lam, 0.9 * rho_star) is None, seed
    assert proven >= 190


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 6, 9])
def test_sparse_proof_is_exact_in_mpmath(seed: int) -> None:
    """Where the sparse proof gives ρ̂, the exact −L(λ, ρ̂) (50 digits) has no negative eigenvalue."""
    net = random_net(seed)
    assert net.lmi_size <= 30
    lam = feasible_multipliers(net, seed)
    rho_hat = prove_rho_sparse(net, lam, schur_rho(net, lam))
    assert rho_hat is not None
    assert exact_min_eigenvalue(net, lam, rho_hat) >= 0
    # 2% below ρ*, −L is indefinite in exact arithmetic, and no margin the proof may add reaches ρ*
    # (the largest is REL_MARGIN·10^(PROOF_ATTEMPTS−1) = 1% here, as the first margin is the relative one)
    low = 0.98 * schur_rho(net, lam)
    assert exact_min_eigenvalue(net, lam, low) < 0
    assert REL_MARGIN * 10.0 ** (PROOF_ATTEMPTS - 1) <= 0.01
    assert prove_rho_sparse(net, lam, low) is None


def test_qdldl_backward_error_bound_holds_in_exact_arithmetic() -> None:
    """The rounding argument in sparse_psd.py: |PᵀHP − (I+L)D(I+L)ᵀ| ≤ γ_{c+8}|I+L||D||I+L|ᵀ, in mpmath."""
    mpmath.mp.dps = 40
    rng = np.random.default_rng(3)
    for trial in range(6):
        n = int(rng.integers(3, 14))
        A = sp.random(n, n, density=0.3, random_state=rng) + sp.identity(n)
        H = sp.csc_matrix((A @ A.T).toarray() * rng.uniform(0.1, 10.0))
        L, d, p = ldl_factor(H)
        c = factor_row_count(L)
        Lf = L.toarray() + np.eye(n)
        Hp = H.toarray()[np.ix_(p, p)]
        bound = gamma(c + EXTRA_ROUNDINGS) * (np.abs(Lf) * np.abs(d)) @ np.abs(Lf).T
        for i in range(n):
            for j in range(n):
                exact = mpmath.fsum(mpmath.mpf(Lf[i, k]) * mpmath.mpf(d[k]) * mpmath.mpf(Lf[j, k]) for k in range(n))
                assert abs(exact - mpmath.mpf(Hp[i, j])) <= mpmath.mpf(bound[i, j]), (trial, i, j)


def test_certify_psd_sparse_matches_dense_and_refuses_indefinite() -> None:
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(150):
        n = int(rng.integers(1, 40))
        A = sp.random(n, n, density=0.25, random_state=rng)
        H = (A @ A.T).toarray()
        offset = float(rng.choice([1e-3, 1e-8, 0.0, -1e-10, -1e-3]))
        H = H - (np.linalg.eigvalsh(H)[0] - offset) * np.eye(n)
        H = 0.5 * (H + H.T)
        sparse = certify_psd_sparse(sp.csr_matrix(H))
        agree += sparse == certify_psd(H)
        if offset < 0:
            assert not sparse  # λ_min(H) ≈ offset < 0 (to ~1e-15 relative): never proven
    assert agree >= 145  # borderline λ_min ≈ 0 may differ (different orders, different shifts)


def test_certify_psd_sparse_refuses_bad_input() -> None:
    assert not certify_psd_sparse(sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]])))  # indefinite
    assert not certify_psd_sparse(sp.csr_matrix(np.array([[1.0, 0.5], [0.4, 1.0]])))  # not symmetric
    assert not certify_psd_sparse(sp.csr_matrix(np.array([[np.nan, 0.0], [0.0, 1.0]])))
    assert not certify_psd_sparse(sp.csr_matrix(np.array([[0.0, 0.0], [0.0, 1.0]])))  # PSD, not provable
    assert certify_psd_sparse(sp.identity(5, format="csr"))
    assert certify_psd_sparse(sp.csr_matrix((0, 0)))


def test_sparse_proof_refuses_when_activation_block_is_not_negative_definite() -> None:
    net = one_neuron(2.0, 3.0)  # R = d² − λ: λ < d² is not ≺ 0
    lam = np.array([0.5 * 9.0])
    assert prove_rho_sparse(net, lam, 1e6) is None
    check = verify_multipliers(net, lam, sparse=True)
    assert not check.certified and check.bound == np.inf
    repaired = verify_multipliers(net, np.array([9.0]), sparse=True)  # R = 0: repaired as in verify.py
    assert repaired.certified and repaired.how.startswith("repaired")
    assert repaired.bound >= 6.0


def test_verify_multipliers_sparse_matches_dense() -> None:
    for seed in (3, 8, 11):
        net = random_net(seed)
        lam = feasible_multipliers(net, seed)
        dense, sparse = verify_multipliers(net, lam), verify_multipliers(net, lam, sparse=True)
        assert dense.certified and sparse.certified
        assert sparse.rho_estimate == pytest.approx(dense.rho_estimate, rel=1e-10)
        assert sparse.bound == pytest.approx(dense.bound, rel=AGREE)


def test_lifted_matrix_is_congruent_to_the_lmi() -> None:
    """G = [[−L₀, Yᵀ], [Y, I]] and −L have the same inertia on z (Schur complement of I)."""
    net = random_net(5)
    lam = feasible_multipliers(net, 5)
    rho = 1.5 * schur_rho(net, lam)
    from lipcert.sdp.lipsdp import lmi_matrix

    G = lifted_matrix(net, lam, rho).toarray()
    n = net.lmi_size
    schur = G[:n, :n] - G[:n, n:] @ G[n:, :n]
    assert np.allclose(schur, -lmi_matrix(net, lam, rho).toarray(), rtol=1e-12, atol=1e-12 * np.abs(G).max())
    assert np.array_equal(G, G.T)


# --- no dense n×n on the sparse path ---------------------------------------------------------

DENSE_SIDE = 4000


def _guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make forming any dense matrix with both sides above DENSE_SIDE an error."""

    def too_big(shape: tuple[int, ...]) -> bool:
        return len(shape) == 2 and min(shape) > DENSE_SIDE

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array, sp.coo_array):
        for name in ("toarray", "todense"):
            original = getattr(cls, name)

            def patched(self, *args, _original=original, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
                if too_big(self.shape):
                    raise AssertionError(f"dense {self.shape} formed on the sparse path")
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, name, patched)
    for module, name in ((la, "cholesky"), (la, "eigh"), (np.linalg, "eigh"), (np.linalg, "cholesky")):
        original = getattr(module, name)

        def guarded(a, *args, _original=original, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if too_big(np.shape(a)):
                raise AssertionError(f"dense factorisation of {np.shape(a)} on the sparse path")
            return _original(a, *args, **kwargs)

        monkeypatch.setattr(module, name, guarded)


def test_no_dense_matrix_above_4000_on_the_sparse_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from lipcert.sdp.descent import minimise_rho
    from lipcert.sdp.schur import schur_eigen, sparse_schur_rho
    from lipcert.sdp.verify import verify_multipliers
    from tests.convnets import Conv, random_convnet

    net = random_convnet(
        (1, 32, 32),
        [Conv(2), Conv(2, activation="leaky_relu", param=0.1, skip_from=0)],
        Conv(3, kernel=3, padding=0),
        seed=2,
    ).form
    assert net.lmi_size > DENSE_SIDE and net.n_w > DENSE_SIDE
    lam = np.ones(net.n_w)
    for k, layer in enumerate(net.layers):
        lam[layer.start : layer.stop] = 64.0 ** (len(net.layers) - k)
    _guard(monkeypatch)
    with pytest.raises(AssertionError, match="dense"):
        sp.identity(DENSE_SIDE + 1, format="csr").toarray()  # the guard is active
    rho = sparse_schur_rho(net, lam)
    assert np.isfinite(rho)
    found = schur_eigen(net, lam, 4)
    assert found is not None and found.gradients.shape == (4, net.n_w)
    assert prove_rho_sparse(net, lam, rho) is not None
    check = verify_multipliers(net, lam)
    assert check.certified
    result = minimise_rho(net, lam, iterations=2, seconds=60, k=4, k_max=4)
    assert result.rho <= rho


def test_the_whole_network_certificate_forms_no_dense_matrix_above_4000(monkeypatch: pytest.MonkeyPatch) -> None:
    """estimate's new path (sdp/whole.py): the default start (the chain recursion, whose dense
    matrices are layer-sized, at most CHAIN_WIDTH = DENSE_LIMIT), its descent and the one proof."""
    from lipcert.sdp.whole import default_starts, whole_network_certificate
    from tests.convnets import Conv, random_convnet

    net = random_convnet(
        (1, 32, 32), [Conv(3), Conv(3, skip_from=0)], Conv(2, kernel=3, padding=0, stride=2), seed=5
    ).form
    assert net.lmi_size > DENSE_SIDE
    _guard(monkeypatch)
    cert = whole_network_certificate(net, default_starts(net), iterations=3, seconds=120)
    assert cert is not None and cert.verification.certified
    assert cert.verification.bound <= np.sqrt(cert.start_rho) * (1 + 1e-6)  # the descent never loses the start
