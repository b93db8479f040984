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
EXIT_SIGINT = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C stopped
EXIT_SIGTERM = 143  # 128 + SIGTERM


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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the work; exit_code is 130 or 143.

    A KeyboardInterrupt, not a LipcertError: the many `except Exception` that turn solver trouble
    into a fallback bound, or a broken model into a batch row, must never catch a signal.
    """

    def __init__(self, exit_code: int = EXIT_SIGINT) -> None:
        super().__init__(exit_code)  # the args rebuild it when it is pickled back from a worker
        self.exit_code = exit_code

    def __str__(self) -> str:
        name = "SIGTERM" if self.exit_code == EXIT_SIGTERM else "SIGINT"
        return f"interrupted by {name}; nothing was written"
