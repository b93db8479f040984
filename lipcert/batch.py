"""Certify every checkpoint in a folder, resumably.

Each finished block and each finished model is cached on disk, keyed by the file's hash
and the options, and the CSV is rewritten atomically after every model. A run killed at
any moment and started again loads what was done and solves only what was not. The CSV
holds no timings, so an interrupted-and-resumed run writes the same file as an
uninterrupted one.

Any error in one model, a bug included (exit code 1 in its row), becomes that model's row and
the run goes on. A signal does not: it stops the run, and the model it stopped leaves no row
and no record, so a rerun solves it again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lipcert.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_UNSUPPORTED, BadInputError, LipcertError
from lipcert.estimate import EstimateOptions, ProgressCallback, after_loading, estimate
from lipcert.load import file_sha256, load_model
from lipcert.report.files import remove_stale_temporaries, write_atomic
from lipcert.report.tables import rows_csv


@dataclass(frozen=True)
class BatchRow:
    file: str
    sha256: str
    status: str  # "ok" or "error"
    bound: float | None = None
    method: str = ""
    combine: str = ""
    plan: str = ""
    blocks: int = 0
    reused_blocks: int = 0
    fallback_blocks: int = 0
    exit_code: int = 0
    error: str = ""


ModelCallback = Callable[[str, int, int], None]  # file, index, total


@dataclass
class BatchReport:
    rows: list[BatchRow]
    solved_blocks: int = 0  # distinct blocks solved in this run
    cached_blocks: int = 0  # distinct blocks taken from an earlier (interrupted) run
    cached_models: int = 0  # models whose whole result was taken from an earlier run


def find_checkpoints(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        raise BadInputError(f"{folder} is not a folder")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise BadInputError(f"{folder}: no file matches --glob '{pattern}'")
    return files


def run_batch(
    files: list[Path],
    options: EstimateOptions,
    cache_dir: Path,
    output: Path,
    on_model: ModelCallback | None = None,
    on_block: ProgressCallback | None = None,
    *,
    output_node: str | None = None,
) -> BatchReport:
    """output_node: certify every model up to the ONNX node of that name (--output-node)."""
    options = replace(options, cache_dir=cache_dir)
    remove_stale_temporaries(output)  # a killed run's half-written CSV; the CSV itself is whole
    report = BatchReport([])
    for index, path in enumerate(files):
        if on_model is not None:
            on_model(str(path), index, len(files))
        report.rows.append(_certify_one(path, options, cache_dir, on_block, report, output_node))
        write_atomic(output, rows_csv(report.rows))
    return report


def _certify_one(
    path: Path,
    options: EstimateOptions,
    cache_dir: Path,
    on_block: ProgressCallback | None,
    report: BatchReport,
    output_node: str | None = None,
) -> BatchRow:
    try:
        digest = file_sha256(path)
    except OSError as err:  # unreadable (permissions, vanished since the folder was listed): its row says so
        return BatchRow(str(path), "", "error", exit_code=EXIT_BAD_INPUT, error=f"cannot read {path}: {err}")
    record = cache_dir / "models" / f"{_model_key(digest, options, output_node)}.json"
    if record.is_file():
        try:
            row = BatchRow(**{**json.loads(record.read_text(encoding="utf-8")), "file": str(path)})
            report.cached_models += 1
            return row
        except (ValueError, TypeError):
            pass  # an unreadable record is solved again
    row = _estimate_row(path, digest, options, on_block, report, output_node)
    if row.exit_code != EXIT_INTERNAL:  # a bug may be fixed, or was transient: the next run tries again
        write_atomic(record, json.dumps(asdict(row)))
    return row


def _estimate_row(
    path: Path,
    digest: str,
    options: EstimateOptions,
    on_block: ProgressCallback | None,
    report: BatchReport,
    output_node: str | None = None,
) -> BatchRow:
    try:
        began = time.perf_counter()
        loaded = load_model(path, output_node=output_node)
        cert = estimate(loaded, after_loading(options, began), on_block)
    except LipcertError as err:
        return BatchRow(str(path), digest, "error", exit_code=err.exit_code, error=str(err))
    except MemoryError:
        return BatchRow(str(path), digest, "error", exit_code=EXIT_UNSUPPORTED, error="out of memory")
    except Exception as err:  # a bug in one model must not cost the others their rows (signals are not Exceptions)
        why = f"internal error ({type(err).__name__}: {err}); please report it"
        return BatchRow(str(path), digest, "error", exit_code=EXIT_INTERNAL, error=why)
    distinct = len(cert.blocks) - cert.reused_blocks
    report.cached_blocks += cert.cached_blocks
    report.solved_blocks += distinct - cert.cached_blocks
    return BatchRow(
        file=str(path),
        sha256=digest,
        status="ok",
        bound=cert.bound,
        method=cert.method,
        combine=cert.combine or "",
        plan=cert.plan,
        blocks=len(cert.blocks),
        reused_blocks=cert.reused_blocks,
        fallback_blocks=sum(b.fallback for b in cert.blocks),
    )


def _model_key(digest: str, options: EstimateOptions, output_node: str | None = None) -> str:
    """Same file, same options (and output node): the same result. Executors do not change results."""
    relevant = {k: v for k, v in asdict(options).items() if k not in ("workers", "scheduler", "cache_dir")}
    key = [digest, relevant] if output_node is None else [digest, relevant, output_node]  # old keys stay valid
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
