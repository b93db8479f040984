"""The gates a CI pipeline relies on: --max-lipschitz, --min-certified, and the regression gate
--baseline/--max-increase. Parsing refuses every value that would switch a gate off silently
(NaN compares false with everything; a negative or infinite threshold is never what was meant).

No numpy, no solver imports: the CLI parses gates before it loads anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipcert.errors import BadInputError


class GateValueError(ValueError):
    """A gate's value is malformed: the CLI turns this into a usage error (exit 2) naming the option."""


def parse_threshold(text: str) -> float:
    """A finite, non-negative number (a bound): NaN, ±inf and negatives are refused."""
    try:
        value = float(text)
    except ValueError:
        raise GateValueError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise GateValueError(f"'{text}': a finite, non-negative number is needed")
    return value


def parse_fraction(text: str, *, at_most_one: bool = True) -> float:
    """A fraction ("0.4") or a percentage with its sign ("40%"); "40" is refused, not read as 4000%.

    at_most_one=False (--max-increase) allows percentages above 100% ("150%"), never a bare number above 1.
    """
    stripped = text.strip()
    percent = stripped.endswith("%")
    try:
        value = float(stripped[:-1] if percent else stripped)
    except ValueError:
        raise GateValueError(f"'{text}' is not a fraction like 0.4 or a percentage like 40%") from None
    if not math.isfinite(value) or value < 0:
        raise GateValueError(f"'{text}': a finite, non-negative fraction or percentage is needed")
    if percent:
        value /= 100.0
    elif value > 1:
        raise GateValueError(f"'{text}': a fraction is at most 1; write {text}% for a percentage")
    if at_most_one and value > 1:
        raise GateValueError(f"'{text}': at most 100%")
    return value


# ---------------------------------------------------------------- the regression gate


@dataclass(frozen=True)
class Baseline:
    """The parts of an earlier lipcert JSON report the regression gate compares against."""

    path: Path
    bound: float  # the certified bound (for a pairs report: the largest pair bound)
    method: str
    selection: str  # "all outputs", "logit K", "pair I,J" or "all pairs"
    model: str


def read_baseline(path: Path) -> Baseline:
    """An earlier `lipcert estimate --format json` report (or `--pairs all`'s); anything else is refused."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInputError(f"--baseline {path}: cannot read it as JSON ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "method" not in data:
        raise BadInputError(f"--baseline {path}: not a lipcert JSON report (make one with estimate --format json)")
    try:
        if data.get("kind") == "pairs":
            bound = max(float(p["bound"]) for p in data["pairs"])
            selection = "all pairs"
        else:
            bound, selection = float(data["bound"]), str(data["selection"])
        method, model = str(data["method"]), str(data.get("model", ""))
    except (KeyError, TypeError, ValueError):
        raise BadInputError(f"--baseline {path}: a lipcert report without a usable bound") from None
    if not (math.isfinite(bound) and bound > 0):
        raise BadInputError(f"--baseline {path}: its bound {bound} is not a positive finite number")
    return Baseline(Path(path), bound, method, selection, model)


def check_comparable(baseline: Baseline, method: str, selection: str) -> None:
    """A bound is only a regression against the same method and the same function of the outputs."""
    if baseline.method != method:
        raise BadInputError(
            f"--baseline {baseline.path} was made with --method {baseline.method}, this run uses {method}: "
            "the bounds are not comparable"
        )
    if baseline.selection != selection:
        raise BadInputError(
            f"--baseline {baseline.path} bounds {baseline.selection}, this run bounds {selection}: "
            "the bounds are not comparable"
        )


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Gates:
    """The gates of one estimate run, parsed before any work."""

    max_lipschitz: float | None = None
    baseline: Baseline | None = None
    max_increase: float | None = None  # a fraction: 0.05 for 5%

    @property
    def any(self) -> bool:
        return self.max_lipschitz is not None or self.baseline is not None


@dataclass(frozen=True)
class Verdict:
    """What the gates decided: the value judged, each threshold applied, and why it failed (if it did)."""

    gated: str  # "bound" or "largest pair bound (pair I,J)"
    value: float
    max_lipschitz: float | None
    baseline: Baseline | None
    max_increase: float | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def allowed_by_baseline(self) -> float | None:
        if self.baseline is None:
            return None
        return self.baseline.bound * (1.0 + (self.max_increase or 0.0))

    def summary(self) -> str:
        """One line for the log of a passing run: what was judged against what."""
        limits = []
        if self.max_lipschitz is not None:
            limits.append(f"--max-lipschitz {self.max_lipschitz:g}")
        if self.baseline is not None:
            limits.append(
                f"--baseline {self.baseline.path} ({self.baseline.bound:.6g}) + {self.max_increase or 0.0:.2%} "
                f"= {self.allowed_by_baseline:.6g}"
            )
        return f"gates passed: certified {self.gated} {self.value:.6g} is within {' and '.join(limits)}"

    def as_json(self) -> dict[str, Any]:
        base = self.baseline
        return {
            "gated": self.gated,
            "value": self.value,
            "max_lipschitz": self.max_lipschitz,
            "baseline": None if base is None else {"path": str(base.path), "bound": base.bound, "model": base.model},
            "max_increase": self.max_increase,
            "allowed_by_baseline": self.allowed_by_baseline,
            "verdict": "pass" if self.passed else "fail",
            "failures": list(self.failures),
        }


def judge(gates: Gates, value: float, gated: str = "bound") -> Verdict:
    """Apply every gate to the certified value. A NaN value fails (it proves nothing)."""
    failures = []
    if not math.isfinite(value) and gates.any:
        failures.append(f"the certified {gated} is {value}")
    if gates.max_lipschitz is not None and not value <= gates.max_lipschitz:
        failures.append(f"certified {gated} {value:.6g} exceeds --max-lipschitz {gates.max_lipschitz:g}")
    if gates.baseline is not None:
        allowed = gates.baseline.bound * (1.0 + (gates.max_increase or 0.0))
        if not value <= allowed:
            increase = value / gates.baseline.bound - 1.0
            failures.append(
                f"certified {gated} {value:.6g} is {increase:+.2%} against the baseline's {gates.baseline.bound:.6g} "
                f"({gates.baseline.path}), above --max-increase {gates.max_increase or 0.0:.2%}"
            )
    return Verdict(gated, value, gates.max_lipschitz, gates.baseline, gates.max_increase, tuple(failures))
