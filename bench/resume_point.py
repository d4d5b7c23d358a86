"""A training run's resume point: a full copy of its store as it was after a generation,
and a JSON file saying where the run stood then. ``crafter_learning --resume`` goes on from
it and plays exactly what the uninterrupted run would have (``runtime.evaluate.Progress``).

The copy is written under a new name before the JSON that names it, and the old copy is
removed last: a run stopped at any moment leaves a JSON whose copy exists and matches it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cairn.runtime.evaluate import Progress


class ResumeError(Exception):
    """A resume point that cannot be used for this run (its message says why)."""


class ResumePoint:
    def __init__(self, folder: Path, train_seed: int):
        self.folder, self.train_seed = folder, train_seed
        self.json = folder / f"resume-seed{train_seed}.json"

    def save(self, store_path: Path, progress: Progress, state: dict[str, Any]) -> None:
        """Copy the store (committed writes only) and record ``progress`` with ``state``
        (what the bench needs to go on: its results so far and what the run was made
        with)."""
        copy = self.folder / f"resume-seed{self.train_seed}-{progress.steps}.sqlite"
        partial = copy.with_name(copy.name + ".partial")
        partial.unlink(missing_ok=True)
        source = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        os.replace(partial, copy)
        old = self._copy_named()
        body = {"progress": asdict(progress), "copy": copy.name, **state}
        written = self.json.with_name(self.json.name + ".partial")
        written.write_text(json.dumps(body, indent=1, default=str))
        os.replace(written, self.json)
        if old is not None and old != copy:
            old.unlink(missing_ok=True)

    def load(self, store_path: Path, expected: dict[str, Any]) -> tuple[Progress, dict]:
        """Put the copied store back at ``store_path`` and return the progress and state
        saved with it; ``expected`` holds what must match (config, generation, worlds)."""
        try:
            body = json.loads(self.json.read_text())
            progress = Progress(**body["progress"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ResumeError(f"{self.json}: not a readable resume point ({err})") from None
        for key, value in expected.items():
            if json.loads(json.dumps(value, default=str)) != body.get(key):
                raise ResumeError(f"{self.json} was made with another {key}; run without "
                                  "--resume to start afresh, or give another --out")
        copy = self.folder / body.get("copy", "")
        if not copy.is_file():
            raise ResumeError(f"{self.json} names {copy.name}, which is missing")
        for stale in store_files(store_path):
            stale.unlink(missing_ok=True)
        source, target = sqlite3.connect(copy), sqlite3.connect(store_path)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return progress, body

    def refuse_unfinished(self) -> None:
        """A run stopped before its budget may hold hours of training: starting afresh
        over it takes more than a forgotten ``--resume``."""
        if not self.exists():
            return
        try:
            body = json.loads(self.json.read_text())
            steps, budget = body["progress"]["steps"], body.get("budget", "?")
        except (OSError, ValueError, KeyError, TypeError):
            return  # unreadable: nothing to go on from
        if not body.get("finished"):
            raise ResumeError(f"{self.json}: a run stopped at {steps} steps of {budget}; "
                              "--resume goes on from there (delete it, or give another --out, "
                              "to start afresh)")

    def mark_finished(self) -> None:
        """The run reached its budget: a new run may start afresh over this point (and
        ``--resume`` with a higher budget still goes on from it)."""
        if self.exists():
            body = json.loads(self.json.read_text())
            written = self.json.with_name(self.json.name + ".partial")
            written.write_text(json.dumps({**body, "finished": True}, indent=1))
            os.replace(written, self.json)

    def exists(self) -> bool:
        return self.json.is_file()

    def clear(self) -> None:
        for stale in self.folder.glob(f"resume-seed{self.train_seed}[.-]*"):
            stale.unlink()

    def _copy_named(self) -> Path | None:
        if not self.json.is_file():
            return None
        try:
            return self.folder / json.loads(self.json.read_text())["copy"]
        except (ValueError, KeyError):
            return None


def store_files(path: Path) -> list[Path]:
    """A store file and its write-ahead log and shared-memory files."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
