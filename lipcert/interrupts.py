"""SIGINT and SIGTERM stop the work at once, whatever runs, and nothing is turned into a result.

SIGINT is Python's KeyboardInterrupt. SIGTERM is made to raise Interrupted(143) in the main
thread (`stop_on_signals`, installed by the CLI around every command). Both are BaseExceptions,
so none of the `except Exception` that turn solver trouble into a fallback catches them.

A Python signal handler runs only when the main thread is back in Python, and a long C call
such as an SCS solve would hold SIGTERM back for minutes. So, while the handler is installed,
`run_interruptibly` runs such a call in a helper thread (SCS releases the GIL) and the main
thread waits where signals reach it. SIGINT needs no help: SCS catches it itself and returns
'interrupted', which lipcert.sdp.solve turns into Interrupted(130).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from lipcert.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted

T = TypeVar("T")

_installed = False  # stop_on_signals is active: long C calls go to a helper thread


def _raise_on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001 - the signal module's signature
    raise Interrupted(EXIT_SIGTERM)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM raises Interrupted(143) in the main thread; the previous handler comes back after."""
    global _installed
    if threading.current_thread() is not threading.main_thread() or _installed:
        yield  # signal handlers can only be set from the main thread; nested: already set
        return
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    _installed = True
    try:
        yield
    finally:
        _installed = False
        signal.signal(signal.SIGTERM, previous)


def as_interrupted(interrupt: KeyboardInterrupt) -> Interrupted:
    """Which signal: a plain KeyboardInterrupt is Python's own SIGINT (130)."""
    return interrupt if isinstance(interrupt, Interrupted) else Interrupted(EXIT_SIGINT)


def run_interruptibly(call: Callable[[], T]) -> T:
    """call(), in a helper thread while SIGTERM is handled here, so that the handler runs at once.

    On a signal the helper is left to die with the process (it is a daemon); its result, if
    any, is never used.
    """
    if not _installed or threading.current_thread() is not threading.main_thread():
        return call()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the main thread, which raises it
            box["error"] = exc

    helper = threading.Thread(target=target, name="lipcert-solver", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(0.25)  # a signal handler runs between these waits, and may raise
    if "error" in box:
        raise box["error"]
    return box["value"]
