"""JSON reports: the certificate, class pairs (read back by `lipcert radius --bounds`), radii."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lipcert.result import SCHEMA_VERSION, Certificate
from lipcert.versions import versions


def as_json(data: Any) -> str:
    """Strict JSON: a NaN or infinity is refused here rather than written as invalid JSON."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def certificate_json(
    cert: Certificate, *, gates: dict[str, Any] | None = None, arch: str | None = None
) -> dict[str, Any]:
    """The certificate as documented in README.md (schema: lipcert.report.schema.CERTIFICATE).

    `gates`: the thresholds applied and their verdict (lipcert.gates.Verdict.as_json), None without
    gates; `arch`: the --arch a state_dict was built with.
    """
    data = asdict(cert)
    data["schema_version"] = SCHEMA_VERSION
    data["reused_blocks"] = cert.reused_blocks
    data["ratio"] = cert.ratio
    data["versions"] = versions()
    data["arch"] = arch
    data["gates"] = gates
    return data


def pairs_json(
    model: Any, results: list[Any], full: Certificate | None, *, gates: dict | None = None, arch: str | None = None
) -> dict:  # LoadedModel, PairBound
    """The --pairs all report; `lipcert radius --bounds` reads it back."""
    first = results[0].certificate
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "pairs",
        "model": str(model.path),
        "sha256": model.sha256,
        "method": first.method,
        "combine": first.combine,
        "plan": first.plan,
        "full_output_bound": full.bound if full else None,
        "pairs": [{"i": r.i, "j": r.j, "bound": r.bound} for r in results],
        "seconds": max(r.certificate.seconds for r in results),  # one solve pass for all pairs
        "versions": versions(),
        "arch": arch,
        "gates": gates,
    }


def radius_json(
    model: Path,
    sha256: str,
    radii,  # noqa: ANN001 - a lipcert.radius.Radii
    fractions: dict,
    gate: dict | None = None,
    arch: str | None = None,
) -> dict:
    """Per input radii and the certified fractions; `gate`: --min-certified's threshold and verdict."""
    return {
        "model": str(model),
        "sha256": sha256,
        "arch": arch,
        "inputs": [
            {"predicted": int(p), "radius": float(r), "margins": [float(m) for m in row]}
            for p, r, row in zip(radii.predicted, radii.radius, radii.margins)
        ],
        "certified_fraction": [{"eps": e, "fraction": f} for e, f in fractions.items()],
        "gates": gate,
    }
