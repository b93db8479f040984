"""CSV reports: a certificate per block, a batch per model, class pairs, radii, a sweep."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

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


BATCH_COLUMNS = (
    "file", "sha256", "status", "bound", "method", "combine", "plan",
    "blocks", "reused_blocks", "fallback_blocks", "exit_code", "error",
)  # fmt: skip


def rows_csv(rows: list[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BATCH_COLUMNS)
    for row in rows:
        values = asdict(row)
        values["bound"] = "" if row.bound is None else repr(row.bound)
        writer.writerow([values[c] for c in BATCH_COLUMNS])
    return buffer.getvalue()


def pairs_csv(results: list[Any]) -> str:
    lines = ["i,j,bound,method,combine"]
    lines += [f"{r.i},{r.j},{r.bound!r},{r.certificate.method},{r.certificate.combine or ''}" for r in results]
    return "\n".join(lines) + "\n"


def radius_csv(radii) -> str:  # noqa: ANN001 - a lipcert.radius.Radii
    lines = ["index,predicted,radius,smallest_margin"]
    for k, (p, r, row) in enumerate(zip(radii.predicted, radii.radius, radii.margins)):
        smallest = min((m for j, m in enumerate(row) if j != p), default=0.0)
        lines.append(f"{k},{int(p)},{float(r)!r},{float(smallest)!r}")
    return "\n".join(lines) + "\n"


def sweep_csv(points: list) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "combine", "bound", "seconds"])
    for p in points:
        writer.writerow([p.split, p.combine, repr(p.bound), f"{p.seconds:.3f}"])
    return buffer.getvalue()


LOWER_COLUMNS = ("model", "sha256", "lower", "evaluations", "seed", "starts", "steps")


def lower_csv(data: dict[str, Any]) -> str:
    """`lipcert lower --format csv`: one row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LOWER_COLUMNS)
    writer.writerow([repr(data[c]) if c == "lower" else data[c] for c in LOWER_COLUMNS])
    return buffer.getvalue()
