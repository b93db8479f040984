"""Helpers shared by the tests and the benchmarks (benchmarks import `tests.support`).

- where the real models and anchors live, and their published values;
- an independent dense LipSDP (cvxpy + Clarabel, written from MATH.md §2 alone) for reference values;
- an L2 PGD attack, to check certified radii against (nothing here is a bound).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"
SHARED = REPO.parent / "shared"
MODELS_DIR = SHARED / "models"
ANCHORS_DIR = SHARED / "anchors"

requires_shared_models = pytest.mark.skipif(
    not MODELS_DIR.is_dir(), reason=f"{MODELS_DIR} is absent: real-model tests read ../shared/models"
)
requires_anchors = pytest.mark.skipif(
    not ANCHORS_DIR.is_dir(), reason=f"{ANCHORS_DIR} is absent: anchor tests read ../shared/anchors"
)

# ../shared/anchors/README.md, glipsdp/: logit 7 (0-based) w.r.t. the standardised input, MOSEK.
# file: (exact product, LipSDP-Neuron, GLipSDP, LipLT, sampled lower bound)
GLIPSDP_PEERS = {
    "digits_fnn2_seed0.onnx": (7.0922, 5.1097, 5.1097, 6.0642, 4.1054),
    "digits_fnn3_seed0.onnx": (14.694, 9.7286, 9.7286, 12.050, 6.8233),
    "digits_cnn2_seed0.onnx": (11.604, 5.1111, 10.579, 7.1208, 2.6398),
    "digits_cnn3_seed0.onnx": (33.920, 11.2005, 30.719, 19.667, 3.1689),
}
# The peers' LipSDP, LipLT and sampled lower bound of the CNNs describe a scrambled network; LipLT re-computed
# on the real networks (these ONNX files):
SCRAMBLED = {"digits_cnn2_seed0.onnx": 9.197, "digits_cnn3_seed0.onnx": 25.18}
# ../shared/anchors/README.md, lipsdp/: the whole output, LipSDP README (MOSEK) and ECLipsE-Fast measured there.
LIPSDP_PEERS = {
    "random_2-10-30-20-2.onnx": {"neuron": 36.482, "layer": 39.839, "product": 43.306, "eclipse-fast": 39.90},
    "mnist_784-50-10.onnx": {"neuron": 24.366, "layer": 26.256, "product": 31.504, "eclipse-fast": 26.81},
}


def shared_model_names() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []


@cache
def published_lower_bounds() -> dict[str, float]:
    """The 'lower bound' column of ../shared/models/README.md (max ||J|| over 16 inputs), by file name."""
    readme = MODELS_DIR / "README.md"
    if not readme.exists():
        return {}
    bounds = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and cells[1].endswith(".onnx") and re.fullmatch(r"[0-9.]+", cells[5]):
            bounds[cells[1]] = float(cells[5])
    return bounds


def load_quietly(path: str | Path, **kwargs):  # noqa: ANN003, ANN201 - lipcert.LoadedModel
    """lipcert.load_model with torch's import-time chatter silenced."""
    import lipcert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lipcert.load_model(path, **kwargs)


def selected_lower(loaded, row: np.ndarray | None = None) -> float:  # noqa: ANN001 - LoadedModel
    """lipcert.lower's seeded hill climbing on x -> row @ f(x) (on f itself when row is None)."""
    from lipcert.lower import lower_bound
    from lipcert.outputs import selected_module

    module = loaded.module if row is None else selected_module(loaded.module, row)
    return lower_bound(module, loaded.input_shape).value


# --------------------------------------------------------------------------- an independent LipSDP


def dense_lipsdp(net, per_layer: bool = False, eps: float = 1e-7) -> float:  # noqa: ANN001 - a lipcert Network
    """sqrt of the LipSDP value of a small network, from a dense LMI written here from MATH.md §2 alone.

    With M = [A B], Y = [C D] dense and z = (x, w), minimise ρ subject to
    YᵀY − ρ EₓᵀEₓ + Σ_j λ_j S_j ⪯ 0, λ ≥ 0, S_j = −α_jβ_j m_jᵀm_j + (α_j+β_j)/2 (m_jᵀe_j + e_jᵀm_j) − e_jᵀe_j,
    i.e. Σ_j λ_j S_j = −Mᵀ diag(λαβ) M + sym(Mᵀ diag(λ(α+β)/2) E) − Eᵀ diag(λ) E. No lipcert code is
    used. An interior-point solver (Clarabel, about 1e-8) for LMIs up to 80, SCS at `eps` above.
    For reference values only: a solver's objective, not a proof.
    """
    import cvxpy as cp

    M = np.hstack([net.A.toarray(), net.B.toarray()])
    Y = np.hstack([net.C.toarray(), net.D.toarray()])
    n_x, n_w = net.n_x, net.n_w
    n = n_x + n_w
    alpha, beta = net.alpha, net.beta
    E = np.eye(n)[n_x:]
    groups = np.arange(n_w)
    if per_layer:
        for k, layer in enumerate(net.layers):
            groups[layer.start : layer.stop] = k
    theta = cp.Variable(int(groups.max()) + 1, nonneg=True)
    lam = theta[groups]
    rho = cp.Variable()
    cross = M.T @ cp.diag(cp.multiply(lam, 0.5 * (alpha + beta))) @ E
    multipliers = -M.T @ cp.diag(cp.multiply(lam, alpha * beta)) @ M + cross + cross.T - E.T @ cp.diag(lam) @ E
    Ex = np.diag(np.r_[np.ones(n_x), np.zeros(n_w)])
    L = Y.T @ Y - rho * Ex + multipliers
    problem = cp.Problem(cp.Minimize(rho), [(L + L.T) / 2 << 0])
    if n <= 80:
        problem.solve(solver=cp.CLARABEL)
    else:
        problem.solve(solver=cp.SCS, eps_abs=eps, eps_rel=eps, max_iters=200_000)
    return float(np.sqrt(rho.value))


# --------------------------------------------------------------------------- an L2 PGD attack (issue 7)
# Nothing here is a bound. A flip found by the attack is an upper bound on the true robustness radius,
# so it must never fall inside a certified radius; a radius where the attack finds no flip proves nothing.


def pgd_margin(
    model: torch.nn.Module,
    x0: torch.Tensor,
    label: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 50,
    restarts: int = 10,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 PGD on every row of x0 at its own radius: the best max_{j != label} f_j - f_label found, and its delta.

    Restart 0 starts at x0, the others uniformly in the ball. Steps of 2.5 eps / steps along the
    normalised gradient, projected back onto the ball (no box: the radius covers all of R^n).
    A positive margin is a flip. `model` should be float64 with frozen parameters.
    """
    gen = torch.Generator().manual_seed(seed)
    n, shape = len(x0), x0.shape[1:]
    flat = int(np.prod(shape))
    xs = x0.repeat_interleave(restarts, 0).reshape(n * restarts, flat)
    labels = label.repeat_interleave(restarts)
    radius = eps.repeat_interleave(restarts)[:, None]
    direction = torch.randn(n * restarts, flat, generator=gen, dtype=torch.float64)
    direction /= direction.norm(dim=1, keepdim=True)
    scale = torch.rand(n * restarts, 1, generator=gen, dtype=torch.float64) ** (1.0 / flat)
    scale[::restarts] = 0.0
    delta = direction * scale * radius
    rows = torch.arange(n * restarts)

    def margin(d: torch.Tensor) -> torch.Tensor:
        out = model((xs + d).reshape(-1, *shape)).reshape(n * restarts, -1)
        other = torch.ones_like(out, dtype=torch.bool)
        other[rows, labels] = False
        return out.masked_fill(~other, -torch.inf).amax(dim=1) - out[rows, labels]

    best = torch.full((n * restarts,), -torch.inf, dtype=torch.float64)
    best_delta = delta.clone()
    step = 2.5 * radius / steps
    for _ in range(steps + 1):
        delta = delta.detach().requires_grad_(True)
        value = margin(delta)
        (grad,) = torch.autograd.grad(value.sum(), delta)
        with torch.no_grad():
            better = value > best
            best = torch.where(better, value, best)
            best_delta[better] = delta[better]
            delta = delta + step * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
            delta = delta * (radius / delta.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
    best, index = best.reshape(n, restarts).max(dim=1)
    return best, best_delta.reshape(n, restarts, flat)[torch.arange(n), index]


@dataclass(frozen=True)
class AttackRadii:
    flip: np.ndarray  # (N,) the smallest radius at which PGD flipped the prediction; inf if it never did
    no_flip: np.ndarray  # (N,) the largest radius tried at which it found no flip (0 if none)

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.flip)

    @property
    def closest(self) -> np.ndarray:
        """The smallest flip radius where there is one, else the largest radius tried without one."""
        return np.where(self.found, self.flip, self.no_flip)


def attack_radius(
    model: torch.nn.Module,
    x0: torch.Tensor,
    label: torch.Tensor,
    start: np.ndarray,
    doublings: int = 8,
    bisections: int = 12,
    steps: int = 50,
    restarts: int = 10,
) -> AttackRadii:
    """The smallest radius at which PGD finds a flip: double from `start` until it does, then bisect.

    Up to `doublings` radii start, 2 start, ... (256 x start by default), then `bisections` halvings of
    the bracket [largest radius without a flip, smallest with one]; the bisection uses another seed.
    """
    lo, hi = np.zeros(len(x0)), np.asarray(start, dtype=np.float64).copy()
    found = np.zeros(len(x0), dtype=bool)
    for _ in range(doublings):
        todo = ~found
        if not todo.any():
            break
        flipped = pgd_margin(model, x0, label, torch.from_numpy(hi), steps, restarts)[0].numpy() > 0
        found |= flipped
        lo = np.where(todo & ~flipped, hi, lo)
        hi = np.where(todo & ~flipped, 2 * hi, hi)
    for _ in range(bisections):
        mid = (lo + hi) / 2
        flipped = pgd_margin(model, x0, label, torch.from_numpy(mid), steps, restarts, seed=1)[0].numpy() > 0
        found |= flipped
        lo, hi = np.where(flipped, lo, mid), np.where(flipped, mid, hi)
    return AttackRadii(np.where(found, hi, np.inf), lo)


# --------------------------------------------------------------------------- CIFAR-shaped nets (issue 13)


def cifar_resnet(blocks: int = 4, width: int = 4, seed: int = 0, side: int = 32) -> torch.nn.Module:
    """A CIFAR-shaped (3 x side x side, 32 for CIFAR) ResNet: a stem, `blocks` residual blocks
    (conv-BN-ReLU-conv-BN plus a 1x1-conv projection shortcut with BN where the shape changes,
    every other block strided), a head.
    Seeded weights and BatchNorm statistics, in eval mode."""
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )
            self.out = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.body(x) + self.skip(x))

    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1), nn.ReLU()]
    channels = width
    for k in range(blocks):
        grow = k % 2 == 1
        layers.append(Block(channels, channels * 2 if grow else channels, 2 if grow else 1))
        channels = channels * 2 if grow else channels
    layers += [nn.Flatten(), nn.LazyLinear(10)]
    model = nn.Sequential(*layers)
    model(torch.zeros(1, 3, side, side))  # materialise the lazy head
    _randomise_batchnorm(model)
    return model.eval()


def cifar_plain(convs: int = 8, width: int = 4, seed: int = 0, side: int = 32) -> torch.nn.Module:
    """A CIFAR-shaped (3 x side x side) plain CNN: `convs` 3x3 convolutions with ReLU (every third
    one strided), a head."""
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for k in range(convs):
        layers += [nn.Conv2d(cin, width, 3, 2 if k % 3 == 0 else 1, 1), nn.ReLU()]
        cin = width
    layers += [nn.Flatten(), nn.LazyLinear(10)]
    model = nn.Sequential(*layers)
    model(torch.zeros(1, 3, side, side))
    return model.eval()


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))


def break_the_solver(monkeypatch) -> None:  # noqa: ANN001 - pytest.MonkeyPatch
    """SCS raises and the naive fallback cannot be certified either: no sound bound exists (exit 6)."""
    import scs

    import lipcert.naive

    class Exploding:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")

    def no_naive(net: object) -> float:
        raise ArithmeticError("could not certify an eigenvalue bound")

    monkeypatch.setattr(scs, "SCS", Exploding)
    monkeypatch.setattr(lipcert.naive, "naive_bound", no_naive)
