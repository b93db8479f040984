"""Keep third-party chatter out of the report: torch's deprecation warnings, a solver's prints.

stdout carries the report and nothing else (`--format json` must stay parseable), but SCS
prints, e.g. 'Failure:interrupted' even with verbose off: through Python's sys.stdout in the
Python build, through C's stdout (file descriptor 1) in others. `solver_stdout` redirects both.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"torch(\.|$)")
        yield


@contextlib.contextmanager
def solver_stdout(verbose: bool = False) -> Iterator[None]:
    """While a solver runs, what it prints goes to stderr (verbose) or nowhere, never to stdout."""
    _flush()  # what was printed before goes where it was meant to
    with open(os.devnull, "w", encoding="utf-8") as sink:
        target = sys.stderr if verbose else sink
        saved = _redirect_fd(1, target)
        try:
            with contextlib.redirect_stdout(target):
                yield
        finally:
            _flush()  # C's buffer still holds text meant for the sink: empty it there
            if saved is not None:
                os.dup2(saved, 1)
                os.close(saved)


def _redirect_fd(fd: int, target: object) -> int | None:
    """Point fd at target's file; a copy of the old fd to restore, or None where that cannot be done
    (no real file behind target, fd closed: then only Python's sys.stdout is redirected)."""
    try:
        target_fd = target.fileno()  # type: ignore[attr-defined]
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both OSError and ValueError
        return None
    try:
        os.dup2(target_fd, fd)
    except OSError:
        os.close(saved)
        return None
    return saved


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or exotic stream has nothing to flush
            stream.flush()
    with contextlib.suppress(Exception):  # no C library to reach (not POSIX): nothing buffered by it
        ctypes.CDLL(None).fflush(None)
