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
from cairn.runtime.views.html import write_atomic


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
        _backup(f"{store_path.resolve().as_uri()}?mode=ro", partial)
        os.replace(partial, copy)
        try:
            old = self._read()
        except ResumeError:  # unreadable: nothing of it to keep
            old = None
        body = {"progress": asdict(progress), "copy": copy.name, **state}
        write_atomic(self.json, json.dumps(body, indent=1, default=str))
        if old is not None and old.get("copy") not in (None, copy.name):
            (self.folder / old["copy"]).unlink(missing_ok=True)

    def check(self, expected: dict[str, Any]) -> tuple[Progress, dict[str, Any]]:
        """The progress and state saved here, if they can be gone on from: ``expected``
        holds what must match (config, generation, worlds) and the copy must exist."""
        body = self._read()
        if body is None:
            raise ResumeError(f"{self.json}: there is no resume point")
        try:
            progress = Progress(**body["progress"])
        except (KeyError, TypeError) as err:
            raise ResumeError(f"{self.json}: not a readable resume point ({err})") from None
        for key, value in expected.items():
            if json.loads(json.dumps(value, default=str)) != body.get(key):
                raise ResumeError(f"{self.json} was made with another {key}; run without "
                                  "--resume to start afresh, or give another --out")
        if not (self.folder / body.get("copy", "")).is_file():
            raise ResumeError(f"{self.json} names {body.get('copy')}, which is missing")
        return progress, body

    def load(self, store_path: Path, expected: dict[str, Any]) -> tuple[Progress, dict]:
        """Put the copied store back at ``store_path`` and return the progress and state
        saved with it (``check``)."""
        progress, body = self.check(expected)
        for stale in store_files(store_path):
            stale.unlink(missing_ok=True)
        _backup(str(self.folder / body["copy"]), store_path)
        return progress, body

    def refuse_unfinished(self) -> None:
        """A run stopped before its budget may hold hours of training: starting afresh
        over it takes more than a forgotten ``--resume``."""
        try:
            body = self._read()
            steps = body["progress"]["steps"] if body is not None else None
        except (ResumeError, KeyError, TypeError):
            return  # unreadable: nothing to go on from
        if body is None or body.get("finished"):
            return
        raise ResumeError(f"{self.json}: a run stopped at {steps} steps of "
                          f"{body.get('budget', '?')}; --resume goes on from there (delete it, "
                          "or give another --out, to start afresh)")

    def mark_finished(self) -> None:
        """The run reached its budget: a new run may start afresh over this point (and
        ``--resume`` with a higher budget still goes on from it)."""
        body = self._read()
        if body is not None:
            write_atomic(self.json, json.dumps({**body, "finished": True}, indent=1))

    def exists(self) -> bool:
        return self.json.is_file()

    def clear(self) -> None:
        for stale in self.folder.glob(f"resume-seed{self.train_seed}[.-]*"):
            stale.unlink()

    def _read(self) -> dict[str, Any] | None:
        """The saved JSON; None when there is none."""
        try:
            body = json.loads(self.json.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ResumeError(f"{self.json}: not a readable resume point ({err})") from None
        if not isinstance(body, dict):
            raise ResumeError(f"{self.json}: not a readable resume point (not an object)")
        return body


def _backup(source: str, target: Path) -> None:
    """Copy a SQLite file (``source``: a path or a URI) through SQLite's backup API."""
    src = sqlite3.connect(source, uri=source.startswith("file:"))
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def store_files(path: Path) -> list[Path]:
    """A store file and its write-ahead log and shared-memory files."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
