"""An input shape that does not fit the model's first layers is the user's (or the file's) mistake:
say so with both shapes, instead of the tracer's internal error deep inside a layer."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from lipcert.errors import BadInputError

# torch's wording for the two mismatches a first layer reports: a linear map and a convolution.
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_CONV = re.compile(r"expected input\[([\d, ]+)\] to have (\d+) channels, but got (\d+) channels")


def check_runs_at(module: nn.Module, shape: tuple[int, ...], path: Path, given: bool) -> None:
    """Run the module once on zeros of `shape` (batch first); a failure is a BadInputError naming the shapes.

    It runs in eval mode, as it is certified (a training-mode BatchNorm refuses a batch of one); the
    modules' own modes are put back afterwards, without calling train() (an unlifted torch.export
    module refuses it).
    """
    modes = [(m, m.training) for m in module.modules()]
    for m, _ in modes:
        m.training = False
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(torch.zeros(shape))
    except (RuntimeError, ValueError, IndexError) as err:
        raise BadInputError(mismatch_message(path, shape, given, err)) from None
    finally:
        for m, mode in modes:
            m.training = mode


def mismatch_message(path: Path, shape: tuple[int, ...], given: bool, err: Exception) -> str:
    source = "--input-shape" if given else "the input shape the file declares"
    text = f"{path}: input shape {_text(shape[1:])} ({source}) does not fit the model"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    found = _MATMUL.search(str(err))
    if found:
        return f"{text}: a linear layer reads {found.group(3)} features and gets {found.group(2)} from this input"
    found = _CONV.search(str(err))
    if found:
        return f"{text}: a convolution reads {found.group(2)} channels and gets {found.group(3)} from this input"
    hint = "; check --input-shape" if given else "; pass --input-shape if the declared shape is wrong"
    return f"{text} ({type(err).__name__}: {first}){hint}"


def _text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)
