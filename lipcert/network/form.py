"""The single network form of MATH.md §1.

    v = A x + B w + bias_v      pre-activations (B strictly block lower triangular)
    w = phi(v)                  elementwise, neuron j slope-restricted to [alpha_j, beta_j]
    y = C x + D w + bias_y      output

Biases do not change a Lipschitz constant; they are kept so that the form can be
evaluated and its Jacobian compared with the original model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from lipcert.network.activations import ACTIVATIONS


@dataclass(frozen=True)
class Layer:
    """One block of neurons: the outputs of a single activation node.

    `alpha` and `beta` are scalars valid for every neuron of the layer (the envelope of
    per-neuron slopes, so anything that reads one pair per layer stays sound). A layer
    whose neurons differ (PReLU's per-channel slopes) also carries per-neuron `alphas`,
    `betas` and `params`. Restricting a layer to part of its neurons (tiles) without
    slicing those arrays leaves them the wrong length: then the envelope is used for the
    slopes (looser, still sound) and evaluating the layer is refused.
    """

    name: str
    activation: str  # key of ACTIVATIONS, e.g. "relu" or "leaky_relu"
    start: int
    stop: int
    shape: tuple[int, ...]  # the activation's tensor shape without the batch axis
    alpha: float
    beta: float
    param: Any = 0.0  # e.g. LeakyReLU's negative slope, Clip's (min, max)
    alphas: np.ndarray | None = field(default=None, compare=False, repr=False)
    betas: np.ndarray | None = field(default=None, compare=False, repr=False)
    params: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def neuron_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-neuron (alpha, beta): exact where known for these neurons, else the envelope."""
        alpha, beta = np.full(self.size, float(self.alpha)), np.full(self.size, float(self.beta))
        if self.alphas is not None and len(self.alphas) == self.size:
            alpha = np.asarray(self.alphas, dtype=float)
        if self.betas is not None and len(self.betas) == self.size:
            beta = np.asarray(self.betas, dtype=float)
        return alpha, beta

    def neuron_param(self) -> Any:
        """The parameter to evaluate the activation with: per neuron where the layer has one."""
        if self.params is None:
            return self.param
        if len(self.params) != self.size:
            raise ValueError(
                f"layer {self.name!r} was restricted to {self.size} of its neurons without its per-neuron "
                "parameters; evaluate the full network instead"
            )
        return np.asarray(self.params, dtype=float)


@dataclass(frozen=True)
class OpRecord:
    """One graph node as `lipcert inspect` shows it."""

    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kind: str  # "input", "affine", "activation", "rewrite", "output"
    neurons: int = 0  # neurons a rewrite added (a MaxPool's ReLU tree)


@dataclass(frozen=True)
class Network:
    A: sp.csr_matrix
    B: sp.csr_matrix
    C: sp.csr_matrix
    D: sp.csr_matrix
    bias_v: np.ndarray
    bias_y: np.ndarray
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    ops: tuple[OpRecord, ...] = field(default=())

    def __post_init__(self) -> None:
        n_w, n_x, n_y = self.n_w, self.n_x, self.n_y
        _expect_shape("A", self.A, (n_w, n_x))
        _expect_shape("B", self.B, (n_w, n_w))
        _expect_shape("C", self.C, (n_y, n_x))
        _expect_shape("D", self.D, (n_y, n_w))
        if sp.triu(self.B, k=0).nnz:
            raise ValueError("B must be strictly lower triangular: a neuron reads earlier neurons only")

    @property
    def n_x(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_y(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def n_w(self) -> int:
        return self.layers[-1].stop if self.layers else 0

    @property
    def alpha(self) -> np.ndarray:
        return _per_neuron(self.layers, 0, self.n_w)

    @property
    def beta(self) -> np.ndarray:
        return _per_neuron(self.layers, 1, self.n_w)

    @property
    def lmi_size(self) -> int:
        """Side of the full LipSDP matrix over z = (x, w), before input compression."""
        return self.n_x + self.n_w

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the form on a batch x of shape (batch, n_x); returns (batch, n_y)."""
        v, w = self._pre_and_post(x)
        return x @ self.C.T + w @ self.D.T + self.bias_y

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Exact Jacobian dy/dx at one flat input x (where every activation is differentiable)."""
        v, _ = self._pre_and_post(x[None, :])
        slopes = np.empty(self.n_w)
        for layer in self.layers:
            act = ACTIVATIONS[layer.activation]
            slopes[layer.start : layer.stop] = act.derivative(v[0, layer.start : layer.stop], layer.neuron_param())
        # dw/dx = diag(s) (A + B dw/dx), solved layer by layer since B is block lower triangular.
        dw = np.zeros((self.n_w, self.n_x))
        for layer in self.layers:
            rows = slice(layer.start, layer.stop)
            dv = self.A[rows].toarray() + self.B[rows] @ dw
            dw[rows] = slopes[rows, None] * dv
        return self.C.toarray() + self.D @ dw

    def _pre_and_post(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = x.shape[0]
        v = np.zeros((batch, self.n_w))
        w = np.zeros((batch, self.n_w))
        for layer in self.layers:
            rows = slice(layer.start, layer.stop)
            v[:, rows] = x @ self.A[rows].T + w @ self.B[rows].T + self.bias_v[rows]
            act = ACTIVATIONS[layer.activation]
            w[:, rows] = act.apply(v[:, rows], layer.neuron_param())
        return v, w


def _expect_shape(name: str, matrix: sp.spmatrix, shape: tuple[int, int]) -> None:
    if matrix.shape != shape:
        raise ValueError(f"{name} has shape {matrix.shape}, expected {shape}")


def _per_neuron(layers: tuple[Layer, ...], which: int, n_w: int) -> np.ndarray:
    out = np.empty(n_w)
    for layer in layers:
        out[layer.start : layer.stop] = layer.neuron_slopes()[which]
    return out
