"""L2 PGD against a classifier: how close an attack comes to a certified radius (tests, benchmarks).

Nothing here is a bound. A flip found by the attack is an upper bound on the true robustness
radius, so it must never fall inside a certified radius; a radius where the attack finds no flip
proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
