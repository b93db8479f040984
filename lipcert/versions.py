"""Versions of lipcert and of the solvers, recorded in every JSON result."""

from __future__ import annotations

from importlib import metadata


def versions() -> dict[str, str]:
    found = {}
    for package in ("lipcert", "cvxpy", "scs", "numpy", "scipy", "torch", "onnx", "onnx2torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
