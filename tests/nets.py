"""Test helper: random small networks (chains and residual conv nets, mixed activations) and a λ
with R(λ) ≺ 0 for them, for the sparse proof, the sparse Schur complement and the descent."""

from __future__ import annotations

import numpy as np

from lipcert.network.form import Network
from lipcert.sdp.verify import NotCertified, schur_rho
from tests.convnets import Conv, random_convnet
from tests.test_verify import chain

ACTS = ("relu", "leaky_relu", "tanh", "sigmoid", "elu", "softplus", "gelu", "silu")


def random_net(seed: int) -> Network:
    """Even seeds: a chain of 1–3 dense layers; odd seeds: a small conv net with a residual skip."""
    rng = np.random.default_rng(seed)
    if seed % 2 == 0:
        depth = int(rng.integers(1, 4))
        sizes = [int(rng.integers(1, 7)) for _ in range(depth + 2)]
        weights = [rng.standard_normal((m, n)) * rng.uniform(0.3, 3.0) / np.sqrt(n) for n, m in zip(sizes, sizes[1:])]
        return chain(weights, [str(rng.choice(ACTS)) for _ in range(depth)])
    c = int(rng.integers(1, 3))
    stages = [
        Conv(c, kernel=3, padding=1, activation=str(rng.choice(ACTS)), param=0.1),
        Conv(c, kernel=3, padding=1, activation=str(rng.choice(ACTS)), param=0.1, skip_from=0),
    ]
    head = Conv(2, kernel=3, padding=0)
    return random_convnet((c, 3, 3), stages, head, seed=seed, gain=float(rng.uniform(0.5, 2.0))).form


def feasible_multipliers(net: Network, seed: int) -> np.ndarray:
    """Random per-neuron λ on a per-layer geometric profile, scaled up until R(λ) ≺ 0."""
    rng = np.random.default_rng(seed + 10_000)
    noise = np.exp(rng.normal(0.0, 0.3, net.n_w))
    for ratio in (8.0, 64.0, 1024.0):
        lam = noise.copy()
        for k, layer in enumerate(net.layers):
            lam[layer.start : layer.stop] *= ratio ** (len(net.layers) - k)
        for _ in range(60):
            try:
                schur_rho(net, lam)
                return lam
            except NotCertified:
                lam = lam * 2.0
    raise AssertionError("no feasible λ found")
