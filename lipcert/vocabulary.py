"""The words lipcert's options are made of, as types: how a block is bounded, how tiles combine.

Each is a StrEnum, so a member equals its text ("lipsdp-neuron" == Method.NEURON), YAML and JSON
carry the text, and an unknown word fails where it is read (`Method(text)` raises ValueError).
"""

from __future__ import annotations

from enum import StrEnum


class Method(StrEnum):
    """How each block is bounded (README, "Methods")."""

    NAIVE = "naive"  # product of certified operator norms
    NEURON = "lipsdp-neuron"  # LipSDP, one multiplier per neuron
    LAYER = "lipsdp-layer"  # LipSDP, one multiplier per layer

    @property
    def is_sdp(self) -> bool:
        return self is not Method.NAIVE


class Combine(StrEnum):
    """How the tiles of a depth group combine, as the user asks for it (MATH.md §4)."""

    PAPER = "paper"
    OVERLAP = "overlap"
    POU = "pou"
    COUPLED = "coupled"
    AUTO = "auto"  # the smallest proven bound: the depth product, the whole-network certificate, naive
    GLOBAL = "global"  # the solved blocks' multipliers, stitched, descended and proven on the full LMI


class GroupRule(StrEnum):
    """The combination a group actually used: a Combine mode resolved, or one block (single)."""

    SINGLE = "single"
    PAPER = "paper"
    OVERLAP = "overlap"
    POU = "pou"
    COUPLED = "coupled"


def words(kind: type[StrEnum]) -> tuple[str, ...]:
    """The valid words of a vocabulary, in order."""
    return tuple(member.value for member in kind)


def choices(kind: type[StrEnum]) -> str:
    """'a, b, c': the valid words, for messages."""
    return ", ".join(words(kind))
