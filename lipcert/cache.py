"""A result cache on disk, so that an interrupted run re-solves only what had not finished.

Each finished block is one small JSON file named by its job key, written atomically
(temporary file, then rename): a run killed at any moment leaves only whole files.
"""

from __future__ import annotations

import json
from pathlib import Path

from lipcert.jobs import BlockOutcome
from lipcert.report.files import write_atomic


class BlockCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / "blocks" / key[:2] / f"{key}.json"

    def get(self, key: str) -> BlockOutcome | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return BlockOutcome(**data)
        except (OSError, ValueError, TypeError):
            return None  # absent or unreadable: solve again

    def put(self, outcome: BlockOutcome) -> None:
        write_atomic(self._path(outcome.key), json.dumps(outcome.to_json()))
