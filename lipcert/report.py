"""Machine-readable reports (CSV) and atomic file writes."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from lipcert.result import Certificate

CSV_COLUMNS = (
    "model", "sha256", "method", "combine", "plan", "bound", "seconds",
    "group", "tile", "size", "block_bound", "block_seconds", "source", "reused",
)  # fmt: skip


def certificate_csv(cert: Certificate) -> str:
    """One row per block; the certificate's own fields repeat on every row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    head = [
        cert.model,
        cert.sha256,
        cert.method,
        cert.combine or "",
        cert.plan,
        repr(cert.bound),
        cert.seconds,
    ]
    for b in cert.blocks:
        writer.writerow([*head, b.group, b.tile, b.size, repr(b.bound), b.seconds, b.source, b.reused])
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
