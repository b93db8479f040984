"""The results lipcert reports: per-block certificates and the combined certificate.

The JSON form (lipcert.report.documents) is versioned (SCHEMA_VERSION) and documented in README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BlockResult:
    group: int  # depth group index
    tile: int  # tile index within the group
    size: int  # side of the block's LMI as solved (after input compression)
    bound: float  # verified Lipschitz bound of the block
    seconds: float
    source: str  # "lipsdp-neuron", "naive", "fallback-naive: <why>", ...
    reused: bool = False  # identical to an earlier block: its verified result was reused
    key: str = ""  # hash of the block's matrices
    raw_objective: float | None = None  # the solver's own value, for diagnosis only; NOT a bound
    fallback: bool = False  # LipSDP could not be certified for this block: its bound is the naive one


@dataclass(frozen=True)
class GroupResult:
    index: int
    label: str  # first..last activation layer
    tiling: tuple[int, ...]  # (rows, cols) of a grid, or (parts,)
    combine: str  # how its tiles combined: "single", "paper", "overlap", "pou", "coupled"
    bound: float  # the group's certified bound (the certificate is their product)


@dataclass(frozen=True)
class Certificate:
    model: str
    sha256: str
    bound: float  # the certified upper bound on the global L2 Lipschitz constant
    method: str
    combine: str | None
    plan: str  # a one-line description of the partition
    blocks: tuple[BlockResult, ...]
    seconds: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())
    lower: float | None = None  # empirical lower bound (lipcert.lower), when asked for
    groups: tuple[GroupResult, ...] = field(default=())
    selection: str = "all outputs"  # or "logit K", "pair I,J": which function of the outputs is bounded
    cached_blocks: int = 0  # distinct blocks whose verified result came from the on-disk cache
    combined_by: str = "product"  # which proven bound is certified: "product", "whole" network, or "naive"

    @property
    def ratio(self) -> float | None:
        """Upper over lower: how far the certificate can be from the truth at most."""
        return self.bound / self.lower if self.lower else None

    @property
    def reused_blocks(self) -> int:
        return sum(b.reused for b in self.blocks)
