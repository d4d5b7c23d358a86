"""Knowledge snapshots: what a worker needs of a store to play, as one small store file.

A run with workers has one knowledge owner, the process that holds the real store. Before
each batch of episodes it takes a snapshot: a new store file holding the current version of
every skill and guardrail (tier 3) and the per-subgoal statistics (tier 2) with the names
they refer to, but no attempts (tier 1), which is what grows with the run. Workers open it
as an ordinary :class:`~cairn.experience.store.ExperienceStore`, add their own attempts to
it while they play (so their statistics move within the episode as in a single process) and
throw it away when the next snapshot comes.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from cairn.experience.store import ExperienceStore

# Tables copied whole, parents before children; knowledge is copied at its current versions.
_COPIED = ("episodes", "subgoals", "tags", "summaries")
_CURRENT_KNOWLEDGE = """
INSERT INTO main.knowledge SELECT * FROM source.knowledge AS k
WHERE version = (SELECT max(version) FROM source.knowledge
                 WHERE kind = k.kind AND key = k.key)
"""


def take_snapshot(store: ExperienceStore) -> bytes:
    """The bytes of a store file with ``store``'s knowledge and statistics, read in one
    transaction (a consistent picture even while other processes write)."""
    with tempfile.TemporaryDirectory(prefix="cairn-snapshot-") as folder:
        path = Path(folder) / "snapshot.sqlite"
        ExperienceStore(path).close()  # the schema and marks of a current store
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            source = store.path.resolve().as_uri() + "?mode=ro"
            conn.execute("ATTACH DATABASE ? AS source", (source,))
            conn.execute("BEGIN")
            for table in _COPIED:
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM source.{table}")
            conn.execute(_CURRENT_KNOWLEDGE)
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE source")
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            conn.close()
        return path.read_bytes()


def open_snapshot(data: bytes, path: Path) -> ExperienceStore:
    """Write a snapshot's bytes to ``path`` (replacing what was there) and open it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    path.write_bytes(data)
    return ExperienceStore(path)
