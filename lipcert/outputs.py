"""Selected outputs: a logit, a difference of two logits, or any linear functional of y.

The Lipschitz constant of R f(x) comes from the same form with the output map y = C x + D w
replaced by R C x + R D w. Only the group that holds the output map changes, so every
other block keeps its key and its verified result is reused across selections.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import scipy.sparse as sp

from lipcert.errors import BadInputError
from lipcert.network.form import Network


def select_outputs(net: Network, rows: np.ndarray) -> Network:
    """The network x -> rows @ f(x), for a (k, n_y) matrix `rows`."""
    R = sp.csr_matrix(np.atleast_2d(np.asarray(rows, dtype=np.float64)))
    if R.shape[1] != net.n_y:
        raise ValueError(f"the selection has {R.shape[1]} columns, the network {net.n_y} outputs")
    return dataclasses.replace(
        net,
        C=(R @ net.C).tocsr(),
        D=(R @ net.D).tocsr(),
        bias_y=R @ net.bias_y,
        output_shape=(R.shape[0],),
    )


def logit_row(n_y: int, k: int) -> np.ndarray:
    check_index(n_y, k, "--logit")
    row = np.zeros(n_y)
    row[k] = 1.0
    return row


def pair_row(n_y: int, i: int, j: int) -> np.ndarray:
    """f_i - f_j: the margin between two classes."""
    check_index(n_y, i, "--pair")
    check_index(n_y, j, "--pair")
    if i == j:
        raise BadInputError(f"--pair {i},{j}: the two classes must differ")
    row = np.zeros(n_y)
    row[i], row[j] = 1.0, -1.0
    return row


def all_pairs(n_y: int) -> list[tuple[int, int]]:
    """Unordered pairs i < j: L(f_i - f_j) = L(f_j - f_i)."""
    return list(itertools.combinations(range(n_y), 2))


def check_index(n_y: int, k: int, option: str) -> None:
    if not 0 <= k < n_y:
        raise BadInputError(f"{option} {k} is out of range: the model has {n_y} outputs (0..{n_y - 1})")


def parse_pair(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(re.fullmatch(r"-?[0-9]+", p.strip()) for p in parts):
        raise BadInputError(f"--pair '{text}' must be two class indices like 3,5")
    return int(parts[0]), int(parts[1])


def selected_module(module, rows: np.ndarray):  # noqa: ANN001, ANN201 - torch is imported lazily
    """x -> rows @ module(x) as a torch module: the function a --logit/--pair certificate bounds."""
    import torch

    class Selected(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            self.register_buffer("rows", torch.as_tensor(np.atleast_2d(rows), dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x).reshape(x.shape[0], -1) @ self.rows.T

    return Selected()
