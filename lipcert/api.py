"""certify(): one call from a checkpoint file or an in-memory torch module to a Certificate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lipcert.errors import BadInputError
from lipcert.estimate import EstimateOptions, ProgressCallback, estimate
from lipcert.load import LoadedModel, load_model, load_module
from lipcert.partition.grids import grid_from_text
from lipcert.result import Certificate


def certify(
    model: str | Path | LoadedModel | Any,
    *,
    input_shape: Sequence[int] | None = None,
    options: EstimateOptions | None = None,
    progress: ProgressCallback | None = None,
    **settings: Any,
) -> Certificate:
    """A certified upper bound on the global L2 Lipschitz constant of `model`.

    `model`: a checkpoint path (ONNX, TorchScript, torch.export, state_dict with `arch=`, pickle
    with `trust_pickle=True`), a LoadedModel, or a torch.nn.Module (then `input_shape`, without
    the batch axis, is required). `settings` are EstimateOptions fields (method="lipsdp-layer",
    split=(2, 2) or "2x2", combine="overlap", max_block_size=..., workers=...), applied over
    `options`; `arch` and `trust_pickle` are passed to load_model.
    """
    load_args = {k: settings.pop(k) for k in ("arch", "trust_pickle") if k in settings}
    loaded = _loaded(model, input_shape, load_args)
    base = options or EstimateOptions()
    if isinstance(settings.get("split"), str):
        try:
            settings["split"] = grid_from_text(settings["split"])
        except ValueError as exc:
            raise BadInputError(f"split: {exc}") from None
    unknown = set(settings) - set(EstimateOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"certify() got unknown settings {sorted(unknown)}; see lipcert.EstimateOptions")
    return estimate(loaded, replace(base, **settings), progress)


def _loaded(model: Any, input_shape: Sequence[int] | None, load_args: dict[str, Any]) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        shape = tuple(input_shape) if input_shape is not None else None
        return load_model(model, input_shape=shape, **load_args)
    import torch

    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise BadInputError("certifying a torch module needs input_shape (without the batch axis), e.g. (1, 8, 8)")
        return load_module(model, tuple(input_shape))
    raise BadInputError(f"cannot certify a {type(model).__name__}: give a file path or a torch.nn.Module")
