"""Writing reports to files: atomically, so that readers never see half a file; checked before any work."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

from lipcert.errors import BadInputError


def check_writable(path: Path, option: str = "--output") -> None:
    """Refuse, before the work, an output that could not be written after it (exit 4, naming the option).

    The folder is created if missing (as write_atomic would), and a probe file is created and removed
    in it: permission bits alone say nothing for root or on a read-only mount.
    """
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as err:
        raise BadInputError(f"{option} {path} cannot be written: {_reason(err)}") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    mkstemp creates the file 0600; it is given the mode a plain open() would (0666 less the umask),
    so reports are as readable as any other file the user writes.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise BadInputError(f"{path} cannot be written: {_reason(err)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise BadInputError(f"{path} cannot be written: {_reason(err)}") from None
        raise


def remove_stale_temporaries(path: Path) -> None:
    """Delete write_atomic's temporary files for `path` that a killed run left (SIGKILL cannot be
    cleaned up after): for a writer that resumes, such as batch, the sole writer of its output."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask: from /proc on Linux, which reads it without changing it (os.umask can only
    read it by setting it, and for that moment another thread's files would get the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__
