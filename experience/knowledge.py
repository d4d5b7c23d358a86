"""Tier 3 of the experience store: skills and guardrails, versioned, with provenance.

Entries are JSON bodies keyed by (kind, key). Writing an entry whose body or status
differs from the current one adds a new version; the old versions stay for the history.

Several processes may write one store's knowledge at once (two runs distilling the same
skill): each write reads the newest version and writes the next one inside one
``BEGIN IMMEDIATE`` transaction, so versions stay consecutive, and a body another process
has just written as the newest version is not written again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.experience.store_schema import BUSY_TIMEOUT_S, StoreError, write_error


@dataclass
class Entry:
    kind: str
    key: str
    version: int
    status: str
    subgoal: str
    trigger: str
    body: dict[str, Any]
    created_at: float


_COLUMNS = "kind, key, version, status, subgoal, trigger, body, created_at"
_CURRENT = f"""
SELECT {_COLUMNS} FROM knowledge AS k
WHERE kind = ? AND version = (SELECT max(version) FROM knowledge
                              WHERE kind = k.kind AND key = k.key)
ORDER BY key"""


class Knowledge:
    """Reads and writes tier-3 entries on an open store connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None,
                 timeout: float = BUSY_TIMEOUT_S, writable: bool = True):
        self._conn = conn
        self._path = path
        self._timeout = timeout
        self._writable = writable

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction that holds the store's write lock from the first read on
        (a savepoint when the caller already has a transaction open)."""
        conn = self._conn
        if not self._writable:
            raise StoreError(f"{self._store_path()} was opened read-only; open it with "
                             "writable=True to write skills or guardrails")
        try:
            if conn.in_transaction:
                conn.execute("SAVEPOINT knowledge")
                try:
                    yield
                    conn.execute("RELEASE knowledge")
                except BaseException:
                    conn.execute("ROLLBACK TO knowledge")
                    conn.execute("RELEASE knowledge")
                    raise
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            error = write_error(exc, self._store_path(), self._timeout)
            if error is None:
                raise
            raise error from exc

    def _store_path(self) -> Path:
        return self._path or Path(self._conn.execute("PRAGMA database_list").fetchone()[2])

    def put(self, kind: str, key: str, status: str, body: dict[str, Any],
            subgoal: str = "", trigger: str = "", identity: tuple[str, ...] | None = None
            ) -> int:
        """Write an entry; returns its version.

        A new version is written when the status or the body changes; with ``identity``
        (the body's fields that say what the entry *is*), a change confined to the other
        fields (statistics, evidence lists) updates the current version in place instead.
        The newest version is read and the next one written in one immediate transaction.
        """
        current = self.get(kind, key)  # unchanged: nothing to write, no write lock to take
        if current is not None and current.status == status and current.body == body:
            return current.version
        with self._writing():
            return self._put(kind, key, status, body, subgoal, trigger, identity)

    def _put(self, kind: str, key: str, status: str, body: dict[str, Any], subgoal: str,
             trigger: str, identity: tuple[str, ...] | None) -> int:
        current = self.get(kind, key)
        if current is not None and current.status == status:
            if current.body == body:
                return current.version
            if identity is not None and all(
                    current.body.get(f) == body.get(f) for f in identity):
                self._conn.execute(
                    "UPDATE knowledge SET body = ? WHERE kind = ? AND key = ? AND version = ?",
                    (json.dumps(body, sort_keys=True), kind, key, current.version))
                return current.version
        version = 1 if current is None else current.version + 1
        self._conn.execute(
            f"INSERT INTO knowledge ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, key, version, status, subgoal, trigger, json.dumps(body, sort_keys=True),
             time.time()))
        return version

    def get(self, kind: str, key: str) -> Entry | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM knowledge WHERE kind = ? AND key = ? "
            "ORDER BY version DESC LIMIT 1", (kind, key)).fetchone()
        return None if row is None else _entry(row)

    def current(self, kind: str) -> list[Entry]:
        """The newest version of every entry of a kind."""
        return [_entry(row) for row in self._conn.execute(_CURRENT, (kind,))]

    def history(self, kind: str, key: str) -> list[Entry]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM knowledge WHERE kind = ? AND key = ? ORDER BY version",
            (kind, key))
        return [_entry(row) for row in rows]

    def set_status(self, kind: str, key: str, status: str) -> Entry:
        """Write a new version with another status; KeyError if there is no such entry."""
        with self._writing():
            current = self.get(kind, key)
            if current is None:
                raise KeyError(key)
            body = dict(current.body, status=status)
            self._put(kind, key, status, body, current.subgoal, current.trigger, None)
            return self.get(kind, key)


def _entry(row: tuple) -> Entry:
    kind, key, version, status, subgoal, trigger, body, created_at = row
    return Entry(kind, key, version, status, subgoal, trigger, json.loads(body), created_at)
