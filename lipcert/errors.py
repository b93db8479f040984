"""The exception tree. Every error carries the exit code the CLI leaves with.

Exit codes (documented in README.md):
    0  success
    1  an unexpected internal error (a bug)
    2  usage error (bad option or value; Typer's own code)
    3  the certified bound exceeds --max-lipschitz
    4  bad input: missing, unreadable or corrupt file, bad plan, non-finite weights
    5  unsupported model: an operator lipcert cannot express, or a model too large
    6  solver failure: no sound bound could be produced
    7  too few inputs certified (lipcert radius --min-certified)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_OVER_THRESHOLD = 3
EXIT_BAD_INPUT = 4
EXIT_UNSUPPORTED = 5
EXIT_SOLVER = 6
EXIT_UNDER_CERTIFIED = 7


class LipcertError(Exception):
    """Base class: a message for the user and the exit code to leave with."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(LipcertError):
    exit_code = EXIT_BAD_INPUT


class UnsupportedModelError(LipcertError):
    exit_code = EXIT_UNSUPPORTED


class ModelTooLargeError(UnsupportedModelError):
    pass


class SolverError(LipcertError):
    exit_code = EXIT_SOLVER
