"""lipcert: certified upper bounds on the global L2 Lipschitz constant of trained networks.

    import lipcert

    cert = lipcert.certify("model.onnx")                          # a checkpoint file
    cert = lipcert.certify(model, input_shape=(1, 28, 28))        # a torch.nn.Module in memory
    cert = lipcert.certify(model, input_shape=(1, 28, 28), method="lipsdp-layer", split=(2, 2))
    print(cert.bound)                                             # proven in float64

This module is the whole public API. Names are imported on first use, so `import lipcert`
(and `lipcert --help`) stays instant.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lipcert.api import certify
    from lipcert.errors import BadInputError, LipcertError, ModelTooLargeError, SolverError, UnsupportedModelError
    from lipcert.estimate import EstimateOptions
    from lipcert.load import LoadedModel, load_model, load_module
    from lipcert.result import Certificate
    from lipcert.vocabulary import Combine, Method

_EXPORTS = {
    "certify": "lipcert.api",
    "load_model": "lipcert.load",
    "load_module": "lipcert.load",
    "LoadedModel": "lipcert.load",
    "EstimateOptions": "lipcert.estimate",
    "Certificate": "lipcert.result",
    "Method": "lipcert.vocabulary",
    "Combine": "lipcert.vocabulary",
    "LipcertError": "lipcert.errors",
    "BadInputError": "lipcert.errors",
    "UnsupportedModelError": "lipcert.errors",
    "ModelTooLargeError": "lipcert.errors",
    "SolverError": "lipcert.errors",
}

__all__ = [
    "BadInputError",
    "Certificate",
    "Combine",
    "EstimateOptions",
    "LipcertError",
    "LoadedModel",
    "Method",
    "ModelTooLargeError",
    "SolverError",
    "UnsupportedModelError",
    "__version__",
    "certify",
    "load_model",
    "load_module",
]

try:
    __version__ = metadata.version("lipcert")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lipcert' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
