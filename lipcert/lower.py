"""Empirical lower bounds on the Lipschitz constant (MATH.md §5).

At any point x where the model is differentiable, L >= ||J(x)||_2, and power iteration on
J(x)^T J(x) returns a Rayleigh quotient that never exceeds ||J(x)||_2. So the largest value
found over many inputs is a true lower bound. The search is seeded hill climbing with random
perturbations: on piecewise-linear networks the Jacobian is piecewise constant, so its
gradient carries no information almost everywhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lipcert.quiet import quiet_torch


@dataclass(frozen=True)
class LowerBound:
    value: float  # the largest ||J(x)||_2 estimate found: a lower bound on L
    point: np.ndarray  # the input that achieved it (flat)
    evaluations: int


def _as_float64(module: nn.Module) -> nn.Module:
    with quiet_torch():
        return copy.deepcopy(module).double().eval()


def jacobian_norm(f, x: torch.Tensor, v: torch.Tensor, iterations: int) -> tuple[float, torch.Tensor]:  # noqa: ANN001
    """Power iteration on J^T J at x (jvp then vjp); returns (sqrt of Rayleigh quotient, v)."""
    sigma = 0.0
    for _ in range(iterations):
        _, jv = torch.func.jvp(f, (x,), (v,))
        _, vjp = torch.func.vjp(f, x)
        (jtjv,) = vjp(jv)
        norm = float(jtjv.norm())
        sigma = float(jv.norm())  # ||J v|| with ||v|| = 1: never above ||J||_2
        if norm == 0.0:
            break
        v = jtjv / norm
    return sigma, v


EXACT_OUTPUTS = 64  # up to this many outputs the whole Jacobian is formed and its norm is exact


def batch_jacobian_norms(f, X: torch.Tensor, power_iterations: int, gen: torch.Generator) -> torch.Tensor:  # noqa: ANN001
    """||J(x)||_2 (or a power-iteration lower estimate of it) for every row x of X."""
    m = f(X[0]).numel()
    if m <= EXACT_OUTPUTS:
        jac = torch.func.vmap(torch.func.jacrev(f))(X)  # (batch, m, n)
        return torch.linalg.matrix_norm(jac, ord=2)
    norms = []
    for x in X:
        v = _unit(torch.randn(x.shape, generator=gen, dtype=torch.float64))
        norms.append(jacobian_norm(f, x, v, power_iterations)[0])
    return torch.tensor(norms, dtype=torch.float64)


def lower_bound(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    starts: int = 16,
    steps: int = 30,
    power_iterations: int = 20,
    step_size: float = 0.05,
    seed: int = 0,
) -> LowerBound:
    """Seeded hill climbing over inputs, from `starts` points (uniform in [0, 1]^n and Gaussian).

    Each step moves every point by a random perturbation of relative size `step_size` and
    keeps the move where the Jacobian norm grows.
    """
    model = _as_float64(module)
    gen = torch.Generator().manual_seed(seed)
    n = int(np.prod(input_shape))

    def f(flat: torch.Tensor) -> torch.Tensor:
        return model(flat.reshape(input_shape)).reshape(-1)

    with torch.no_grad(), quiet_torch():
        X = _starting_points(starts, n, gen)
        sigma = batch_jacobian_norms(f, X, power_iterations, gen)
        for _ in range(steps):
            noise = torch.randn(X.shape, generator=gen, dtype=torch.float64)
            candidates = X + step_size * noise
            cand_sigma = batch_jacobian_norms(f, candidates, power_iterations, gen)
            better = cand_sigma > sigma
            X[better], sigma[better] = candidates[better], cand_sigma[better]
    best = int(torch.argmax(sigma))
    return LowerBound(float(sigma[best]), X[best].numpy(), starts * (steps + 1))


def _starting_points(starts: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Half in the image range [0, 1]^n, half standard normal: activation patterns differ a lot."""
    uniform = torch.rand(starts - starts // 2, n, generator=gen, dtype=torch.float64)
    normal = torch.randn(starts // 2, n, generator=gen, dtype=torch.float64)
    return torch.cat([uniform, normal])


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()
