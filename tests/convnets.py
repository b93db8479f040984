"""Test helper: small conv networks built both as a `Network` form and as plain torch code.

The form is assembled here directly (not by the tracer): each convolution's sparse
matrix is read off by pushing the identity basis through torch's conv2d in float64,
which is exact (every output of a basis vector is one weight times 1.0). The torch
forward of the same weights is the reference the form must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from lipcert.network.activations import ACTIVATIONS
from lipcert.network.form import Layer, Network

INPUT = -1  # `skip_from` value meaning "the network input x"


@dataclass(frozen=True)
class Conv:
    """A convolution; as a stage it is followed by `activation` (a key of ACTIVATIONS).

    `skip_from` adds, before the activation, the output of an earlier stage (INPUT = x):
    a residual branch. `leaky_relu` with param 1.0 is the identity (slopes [1, 1]).
    """

    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    groups: int = 1
    activation: str = "relu"
    param: float = 0.0
    skip_from: int | None = None


@dataclass
class ConvNet:
    """A network as weights; `.form` is its Network, `.torch_forward` the reference."""

    input_shape: tuple[int, int, int]
    stages: list[Conv]
    head: Conv | None  # a final linear convolution (no activation), or None: y = last activations
    weights: list[torch.Tensor] = field(default_factory=list)
    biases: list[torch.Tensor] = field(default_factory=list)

    def torch_forward(self, x: np.ndarray) -> np.ndarray:
        h = [torch.as_tensor(x, dtype=torch.float64).reshape(-1, *self.input_shape)]
        for s, stage in enumerate(self.stages):
            v = _conv(h[-1], stage, self.weights[s], self.biases[s])
            if stage.skip_from is not None:
                v = v + h[stage.skip_from + 1]
            act = ACTIVATIONS[stage.activation].apply(v.numpy(), stage.param)
            h.append(torch.as_tensor(act))
        out = h[-1] if self.head is None else _conv(h[-1], self.head, self.weights[-1], self.biases[-1])
        return out.reshape(out.shape[0], -1).numpy()

    @property
    def form(self) -> Network:
        return _assemble(self)


def random_convnet(
    input_shape: tuple[int, int, int], stages: list[Conv], head: Conv | None, seed: int = 0, gain: float = 1.0
) -> ConvNet:
    """Random weights (normal, scaled by 1/sqrt(fan_in)) and biases for the given layout."""
    gen = torch.Generator().manual_seed(seed)
    net = ConvNet(input_shape, stages, head)
    channels = input_shape[0]
    for conv in [*stages, *([head] if head else [])]:
        fan_in = channels // conv.groups * conv.kernel**2
        shape = (conv.out_channels, channels // conv.groups, conv.kernel, conv.kernel)
        net.weights.append(gain * torch.randn(shape, generator=gen, dtype=torch.float64) / fan_in**0.5)
        net.biases.append(0.1 * torch.randn(conv.out_channels, generator=gen, dtype=torch.float64))
        channels = conv.out_channels
    return net


def _conv(h: torch.Tensor, conv: Conv, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(h, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def conv_matrix(conv: Conv, weight: torch.Tensor, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, tuple[int, ...]]:
    """The convolution's (n_out x n_in) sparse matrix and its output shape (C, H, W)."""
    n_in = int(np.prod(in_shape))
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threading only adds overhead (x100 on a busy machine)
    try:
        out = _conv(basis, conv, weight, None)
    finally:
        torch.set_num_threads(threads)
    matrix = sp.csr_matrix(out.reshape(n_in, -1).numpy().T)
    matrix.eliminate_zeros()
    return matrix, tuple(out.shape[1:])


def _assemble(net: ConvNet) -> Network:
    shapes: list[tuple[int, ...]] = [net.input_shape]
    mats, layers, start = [], [], 0
    for s, stage in enumerate(net.stages):
        matrix, shape = conv_matrix(stage, net.weights[s], shapes[-1])
        alpha, beta = ACTIVATIONS[stage.activation].slopes(stage.param)
        size = int(np.prod(shape))
        layers.append(Layer(f"stage{s}", stage.activation, start, start + size, shape, alpha, beta, stage.param))
        mats.append(matrix)
        shapes.append(shape)
        start += size
    n_x, n_w = int(np.prod(net.input_shape)), start
    A, B = sp.lil_matrix((n_w, n_x)), sp.lil_matrix((n_w, n_w))
    for s, stage in enumerate(net.stages):
        rows = slice(layers[s].start, layers[s].stop)
        _place(A, B, layers, rows, s - 1, mats[s])
        if stage.skip_from is not None:
            _place(A, B, layers, rows, stage.skip_from, sp.identity(layers[s].size, format="csr"))
    bias_v = np.concatenate(
        [b.numpy().repeat(int(np.prod(shapes[s + 1][1:]))) for s, b in enumerate(net.biases[: len(net.stages)])]
    )
    C, D, bias_y, out_shape = _output(net, layers, shapes, n_x, n_w)
    return Network(A.tocsr(), B.tocsr(), C, D, bias_v, bias_y, tuple(layers), net.input_shape, out_shape)


def _place(A: sp.lil_matrix, B: sp.lil_matrix, layers: list[Layer], rows: slice, src: int, block: sp.spmatrix) -> None:
    """Add `block` as the part of rows reading stage `src`'s activations (or x when src == INPUT)."""
    if src == INPUT:
        A[rows, :] = A[rows, :] + block
    else:
        cols = slice(layers[src].start, layers[src].stop)
        B[rows, cols] = B[rows, cols] + block


def _output(
    net: ConvNet, layers: list[Layer], shapes: list[tuple[int, ...]], n_x: int, n_w: int
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, tuple[int, ...]]:
    last = layers[-1]
    if net.head is None:
        rows = np.arange(last.size)
        D = sp.csr_matrix((np.ones(last.size), (rows, rows + last.start)), shape=(last.size, n_w))
        return sp.csr_matrix((last.size, n_x)), D, np.zeros(last.size), last.shape
    matrix, shape = conv_matrix(net.head, net.weights[-1], shapes[-1])
    D = sp.hstack([sp.csr_matrix((matrix.shape[0], last.start)), matrix]).tocsr()
    bias_y = net.biases[-1].numpy().repeat(int(np.prod(shape[1:])))
    return sp.csr_matrix((matrix.shape[0], n_x)), D, bias_y, shape


def empirical_lower_bound(net: Network, samples: int = 200, seed: int = 0, scale: float = 1.0) -> float:
    """max ||J(x)||_2 over random inputs: the true constant is at least this (MATH.md §5)."""
    rng = np.random.default_rng(seed)
    best = 0.0
    with threadpool_limits(1):  # small SVDs: threaded BLAS is 100x slower on a busy machine
        for _ in range(samples):
            x = scale * rng.standard_normal(net.n_x)
            best = max(best, float(np.linalg.norm(net.jacobian(x), 2)))
    return best


def linear_map(net: Network) -> np.ndarray:
    """The matrix of a network whose activations are all the identity (its exact Jacobian)."""
    return net.jacobian(np.zeros(net.n_x))
