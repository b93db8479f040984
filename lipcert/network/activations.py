"""Elementwise activations lipcert understands, with their slope bounds (MATH.md §1).

Each entry says how to evaluate the activation, its derivative (for exact Jacobians)
and the interval [alpha, beta] that contains its derivative everywhere. For a function
that is Lipschitz and differentiable almost everywhere, every secant slope
(f(a) - f(b)) / (a - b) is an average of f' over [b, a], so bounds on f' are exactly the
incremental slope bounds LipSDP needs, kinks and jumps of f' included.

The parameter `param` is a float or a tuple of floats (e.g. Clip's (min, max)); PReLU's
per-channel slopes arrive as one float per neuron (a numpy array that broadcasts).
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


GELU_SCALE = 1.0 / np.sqrt(2.0)  # GELU(x) = 0.5 x (1 + erf(x / sqrt 2))
GELU_TANH = (float(np.sqrt(2.0 / np.pi)), 0.044715)  # 0.5 x (1 + tanh(k (x + c x^3)))


def _gelu(x: Array, s: float) -> Array:
    # 0.5 x (1 + erf(s x)); s = 1/sqrt(2) is GELU, other s come from exported constants.
    return 0.5 * x * (1.0 + erf(s * x))


def _gelu_prime(x: Array, s: float) -> Array:
    return 0.5 * (1.0 + erf(s * x)) + s * x * np.exp(-((s * x) ** 2)) / np.sqrt(np.pi)


def _gelu_tanh(x: Array, p: tuple[float, float]) -> Array:
    k, c = p
    return 0.5 * x * (1.0 + np.tanh(k * (x + c * x**3)))


def _gelu_tanh_prime(x: Array, p: tuple[float, float]) -> Array:
    k, c = p
    t = np.tanh(k * (x + c * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x)


def _silu(x: Array, s: float) -> Array:
    return x * expit(s * x)  # s = 1 is SiLU; x * sigmoid(1.702 x) is the "quick GELU"


def _silu_prime(x: Array, s: float) -> Array:
    sig = expit(s * x)
    return sig * (1.0 + s * x * (1.0 - sig))


def _numeric_slopes(derivative: Callable[[Array, object], Array], param: object) -> tuple[float, float]:
    """Slope interval of a smooth activation, widened by a safety margin.

    The derivative is sampled on [-20, 20] with step h = 1e-4 (outside it GELU', tanh-GELU'
    and SiLU' are within 1e-8 of 0 or 1, values inside the sampled range). Between two
    samples f' cannot exceed the nearer sample by more than (h / 2) sup|f''|; sup|f''| is
    below 1 for these three (GELU: 2 phi(0) = 0.80; tanh-GELU: 0.80; SiLU: 0.50, checked
    on a grid in tests/test_activations.py), so the margin 1e-3 covers the gap twenty-fold.
    """
    grid = np.linspace(-20.0, 20.0, 400_001)
    d = derivative(grid, param)
    return float(d.min()) - 1e-3, float(d.max()) + 1e-3


def _gelu_slopes(s: float) -> tuple[float, float]:
    # 0.5 x (1 + erf(s x)) = GELU(sqrt2 s x) / (sqrt2 s), so its derivative at x is GELU'(sqrt2 s x):
    # for every s > 0 the slope interval is GELU's (the pattern matcher accepts s > 0 only).
    return _numeric_slopes(_gelu_prime, GELU_SCALE)


def _silu_slopes(s: float) -> tuple[float, float]:
    # d/dx [x sigmoid(s x)] = SiLU'(s x): for every s > 0 the interval is SiLU's.
    return _numeric_slopes(_silu_prime, 1.0)


def _gelu_tanh_slopes(p: tuple[float, float]) -> tuple[float, float]:
    # Computed for the file's own constants (the matcher accepts k, c within 1e-6 of the usual ones).
    return _numeric_slopes(_gelu_tanh_prime, tuple(p))


def _clip(x: Array, p: tuple[float, float]) -> Array:
    return np.minimum(np.maximum(x, p[0]), p[1])


def _clip_prime(x: Array, p: tuple[float, float]) -> Array:
    return ((x > p[0]) & (x < p[1])).astype(float)


def _clip_slopes(_: tuple[float, float]) -> tuple[float, float]:
    # min(max(x, lo), hi) has slope 1 strictly between the bounds and 0 outside: [0, 1]
    # (ReLU6 is Clip(0, 6); an infinite bound is a missing one; lo > hi gives a constant).
    return 0.0, 1.0


def _hard_sigmoid(x: Array, p: tuple[float, float]) -> Array:
    a, b = p
    return np.clip(a * x + b, 0.0, 1.0)


def _hard_sigmoid_prime(x: Array, p: tuple[float, float]) -> Array:
    a, b = p
    t = a * x + b
    return np.where((t > 0.0) & (t < 1.0), a, 0.0)


def _hard_sigmoid_slopes(p: tuple[float, float]) -> tuple[float, float]:
    # clip(a x + b, 0, 1): slope a where 0 < a x + b < 1, else 0. Torch's Hardsigmoid is a = 1/6.
    a = float(p[0])
    return min(0.0, a), max(0.0, a)


def _hard_swish(x: Array, p: tuple[float, float]) -> Array:
    return x * _hard_sigmoid(x, p)


def _hard_swish_prime(x: Array, p: tuple[float, float]) -> Array:
    return _hard_sigmoid(x, p) + x * _hard_sigmoid_prime(x, p)


def _hard_swish_slopes(p: tuple[float, float]) -> tuple[float, float]:
    """x clip(a x + b, 0, 1); HardSwish is a = 1/6, b = 1/2, giving [-1/2, 3/2].

    Proof (a > 0; a < 0 mirrors it): on x < -b/a, f = 0 (slope 0); on x > (1 - b)/a, f = x
    (slope 1); in between f = a x^2 + b x, whose slope 2 a x + b runs linearly from -b to
    2 - b. So f' lies in [min(0, -b), max(1, 2 - b)]. For a = 0, f = x clip(b, 0, 1) has one
    slope in [0, 1], inside that interval too.
    """
    b = float(p[1])
    return min(0.0, -b), max(1.0, 2.0 - b)


def _elu(x: Array, a: float) -> Array:
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))


def _elu_prime(x: Array, a: float) -> Array:
    return np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))


def _elu_slopes(a: float) -> tuple[float, float]:
    # ELU'(t) = a e^t on t < 0 lies in (0, a], and 1 on t > 0.
    return 0.0, max(1.0, a)


def _prelu_slopes(a: Array | float) -> tuple[Array, Array]:
    # Per neuron: x on x > 0, a_j x below: slopes {a_j, 1}.
    return np.minimum(a, 1.0), np.maximum(a, 1.0)


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
    "gelu": Activation("gelu", _gelu, _gelu_prime, _gelu_slopes),
    "gelu_tanh": Activation("gelu_tanh", _gelu_tanh, _gelu_tanh_prime, _gelu_tanh_slopes),
    "silu": Activation("silu", _silu, _silu_prime, _silu_slopes),
    "prelu": Activation(
        "prelu", lambda x, a: np.where(x > 0, x, a * x), lambda x, a: np.where(x > 0, 1.0, a), _prelu_slopes
    ),
    "clip": Activation("clip", _clip, _clip_prime, _clip_slopes),
    "hard_sigmoid": Activation("hard_sigmoid", _hard_sigmoid, _hard_sigmoid_prime, _hard_sigmoid_slopes),
    "hard_swish": Activation("hard_swish", _hard_swish, _hard_swish_prime, _hard_swish_slopes),
}
