"""Which world seeds a store's runs have played, so that the next run meets new worlds.

Kept per run name (a config's ``name``) in the store's ``meta`` table as the highest seed
played: one row per name, no schema change. Writing keeps the larger of the stored and the
new seed in one statement, so runs sharing a store at once never lower it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cairn.experience.store_schema import StoreError, write_error

_PREFIX = "last_seed:"
_READ = "SELECT value FROM meta WHERE key = ?"
_RAISE = """
INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET
    value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)
"""


class PlayedSeeds:
    """The highest world seed played per run name, on an open store connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path, timeout: float,
                 writable: bool) -> None:
        self._conn, self._path = conn, path
        self._timeout, self._writable = timeout, writable

    def last(self, name: str) -> int | None:
        """The highest seed an episode of run ``name`` played on this store (None: none)."""
        row = self._conn.execute(_READ, (_PREFIX + name,)).fetchone()
        return None if row is None else int(row[0])

    def add(self, name: str, seed: int) -> None:
        """Remember that an episode of run ``name`` played world ``seed``."""
        if not self._writable:
            raise StoreError(f"{self._path} was opened read-only; open it with writable=True "
                             "to record played seeds")
        try:
            self._conn.execute(_RAISE, (_PREFIX + name, str(int(seed))))
        except sqlite3.OperationalError as exc:
            error = write_error(exc, self._path, self._timeout)
            if error is None:
                raise
            raise error from exc
