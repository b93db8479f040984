"""Elementwise activations lipcert understands, with their slope bounds (MATH.md §1).

Each entry says how to evaluate the activation, its derivative (for exact Jacobians)
and the interval [alpha, beta] that contains its derivative everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import erf, expit

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    name: str
    apply: Callable[[Array, float], Array]
    derivative: Callable[[Array, float], Array]
    slopes: Callable[[float], tuple[float, float]]


def _relu_slopes(_: float) -> tuple[float, float]:
    return 0.0, 1.0


def _leaky_slopes(a: float) -> tuple[float, float]:
    return min(a, 1.0), max(a, 1.0)


def _gelu(x: Array, _: float) -> Array:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _gelu_prime(x: Array, _: float) -> Array:
    return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _silu(x: Array, _: float) -> Array:
    return x * expit(x)


def _silu_prime(x: Array, _: float) -> Array:
    s = expit(x)
    return s * (1.0 + x * (1.0 - s))


def _numeric_slopes(derivative: Callable[[Array, float], Array]) -> tuple[float, float]:
    """Slope interval of a smooth activation, widened by a safety margin.

    The derivative is sampled densely on [-20, 20] (outside it GELU' and SiLU' are
    within 1e-8 of 0 or 1); the margin 1e-3 covers the sampling gap, since the
    second derivative is below 1 in magnitude and the grid step is 1e-4.
    """
    grid = np.linspace(-20.0, 20.0, 400_001)
    d = derivative(grid, 0.0)
    return float(d.min()) - 1e-3, float(d.max()) + 1e-3


def _elu(x: Array, a: float) -> Array:
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))


def _elu_prime(x: Array, a: float) -> Array:
    return np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))


def _elu_slopes(a: float) -> tuple[float, float]:
    # ELU'(t) = a e^t on t < 0 lies in (0, a], and 1 on t > 0.
    return 0.0, max(1.0, a)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", lambda x, _: np.maximum(x, 0.0), lambda x, _: (x > 0).astype(float), _relu_slopes),
    "leaky_relu": Activation(
        "leaky_relu",
        lambda x, a: np.where(x > 0, x, a * x),
        lambda x, a: np.where(x > 0, 1.0, a),
        _leaky_slopes,
    ),
    "tanh": Activation("tanh", lambda x, _: np.tanh(x), lambda x, _: 1.0 - np.tanh(x) ** 2, lambda _: (0.0, 1.0)),
    "sigmoid": Activation(
        "sigmoid", lambda x, _: expit(x), lambda x, _: expit(x) * (1.0 - expit(x)), lambda _: (0.0, 0.25)
    ),
    "elu": Activation("elu", _elu, _elu_prime, _elu_slopes),
    "softplus": Activation("softplus", lambda x, _: np.logaddexp(0.0, x), lambda x, _: expit(x), lambda _: (0.0, 1.0)),
    "gelu": Activation("gelu", _gelu, _gelu_prime, lambda _: _numeric_slopes(_gelu_prime)),
    "silu": Activation("silu", _silu, _silu_prime, lambda _: _numeric_slopes(_silu_prime)),
}
