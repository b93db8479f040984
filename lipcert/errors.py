"""The exception tree. Every error carries the exit code the CLI leaves with.

Exit codes (the same table as README.md's "Exit codes"; tests/test_exit_codes.py runs each):
    0    success: a bound was certified and every gate passed
    1    an unexpected internal error (a bug); never a user's mistake
    2    usage error: a bad option or value, refused before any solve (Typer's own code)
    3    a gate failed: the bound exceeds --max-lipschitz, or --baseline's by more than --max-increase
    4    bad input: a missing, unreadable, truncated or corrupt file, an input shape that does not fit,
         a bad plan, non-finite weights, an output path that cannot be written, a bad --baseline
    5    unsupported model: an operator lipcert cannot express, or a model too large
    6    solver failure: no sound bound could be produced
    7    too few inputs certified (lipcert radius --min-certified)
    130  interrupted by SIGINT (Ctrl-C)
    143  interrupted by SIGTERM
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
