"""The JSON Schema of `lipcert estimate --format json` (schema_version 1), as documented in README.md."""

from __future__ import annotations

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}}

BLOCK = {
    "type": "object",
    "required": ["group", "tile", "size", "bound", "seconds", "source", "reused", "key", "raw_objective", "fallback"],
    "properties": {
        "group": {"type": "integer", "minimum": 0},
        "tile": {"type": "integer", "minimum": 0},
        "size": {"type": "integer", "minimum": 0},
        "bound": {"type": "number", "minimum": 0},
        "seconds": {"type": "number", "minimum": 0},
        "source": {"type": "string"},
        "reused": {"type": "boolean"},
        "key": {"type": "string"},
        "raw_objective": _NUMBER_OR_NULL,
        "fallback": {"type": "boolean"},
    },
    "additionalProperties": False,
}

GROUP = {
    "type": "object",
    "required": ["index", "label", "tiling", "combine", "bound"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "label": {"type": "string"},
        "tiling": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "combine": {"enum": ["single", "paper", "overlap", "pou", "coupled"]},
        "bound": {"type": "number", "minimum": 0},
    },
    "additionalProperties": False,
}

BASELINE = {
    "type": "object",
    "required": ["path", "bound", "model"],
    "properties": {"path": {"type": "string"}, "bound": {"type": "number"}, "model": {"type": "string"}},
    "additionalProperties": False,
}

# What the gates decided (lipcert.gates.Verdict): the value judged, every threshold applied, the verdict.
GATES = {
    "type": ["object", "null"],
    "required": [
        "gated",
        "value",
        "max_lipschitz",
        "baseline",
        "max_increase",
        "allowed_by_baseline",
        "verdict",
        "failures",
    ],
    "properties": {
        "gated": {"type": "string"},
        "value": {"type": "number"},
        "max_lipschitz": {"type": ["number", "null"], "minimum": 0},
        "baseline": {"oneOf": [{"type": "null"}, BASELINE]},
        "max_increase": {"type": ["number", "null"], "minimum": 0},
        "allowed_by_baseline": _NUMBER_OR_NULL,
        "verdict": {"enum": ["pass", "fail"]},
        "failures": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}

CERTIFICATE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "lipcert certificate",
    "type": "object",
    "required": [
        "schema_version", "model", "sha256", "bound", "method", "combine", "plan", "blocks", "groups",
        "seconds", "input_shape", "output_shape", "notes", "lower", "ratio", "reused_blocks", "versions",
        "cached_blocks", "selection", "combined_by", "arch", "gates",
    ],
    "properties": {
        "schema_version": {"const": 1},
        "model": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "bound": {"type": "number", "minimum": 0},
        "method": {"enum": ["naive", "lipsdp-neuron", "lipsdp-layer"]},
        "combine": {"enum": [None, "paper", "overlap", "pou", "coupled", "auto", "global"]},
        "plan": {"type": "string"},
        "blocks": {"type": "array", "items": BLOCK, "minItems": 1},
        "groups": {"type": "array", "items": GROUP, "minItems": 1},
        "seconds": {"type": "number", "minimum": 0},
        "input_shape": _SHAPE,
        "output_shape": _SHAPE,
        "notes": {"type": "array", "items": {"type": "string"}},
        "lower": _NUMBER_OR_NULL,
        "ratio": _NUMBER_OR_NULL,
        "reused_blocks": {"type": "integer", "minimum": 0},
        "cached_blocks": {"type": "integer", "minimum": 0},
        "selection": {"type": "string"},
        "combined_by": {"enum": ["product", "whole", "naive"]},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "arch": {"type": ["string", "null"]},
        "gates": GATES,
    },
    "additionalProperties": False,
}  # fmt: skip
