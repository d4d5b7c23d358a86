"""Tier 3 of the experience store: skills and guardrails, versioned, with provenance.

Entries are JSON bodies keyed by (kind, key). Writing an entry whose body or status
differs from the current one adds a new version; the old versions stay for the history.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any


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

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def put(self, kind: str, key: str, status: str, body: dict[str, Any],
            subgoal: str = "", trigger: str = "", identity: tuple[str, ...] | None = None
            ) -> int:
        """Write an entry; returns its version.

        A new version is written when the status or the body changes; with ``identity``
        (the body's fields that say what the entry *is*), a change confined to the other
        fields (statistics, evidence lists) updates the current version in place instead.
        """
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
        current = self.get(kind, key)
        if current is None:
            raise KeyError(key)
        body = dict(current.body, status=status)
        self.put(kind, key, status, body, current.subgoal, current.trigger)
        return self.get(kind, key)


def _entry(row: tuple) -> Entry:
    kind, key, version, status, subgoal, trigger, body, created_at = row
    return Entry(kind, key, version, status, subgoal, trigger, json.loads(body), created_at)
