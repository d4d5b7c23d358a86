"""The experience store's on-disk schema: opening a file, checking it, migrating it.

A Cairn store is one SQLite file marked with ``PRAGMA application_id`` (so a foreign SQLite
file is told apart from ours) and versioned with ``PRAGMA user_version``. Each schema version
is a list of statements that brings a store from the previous version to it; opening an older
store applies the missing steps in one transaction, so tier 3 (skills, guardrails) is added
later by appending ``MIGRATIONS[2]`` without touching version 1.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4361726E  # "Carn"
SQLITE_MAGIC = b"SQLite format 3\x00"

# Tier 1 (attempts, append-only) and tier 2 (summaries, rolling statistics).
# Names are interned into small tables so that every indexed column is an integer.
_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE episodes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    "CREATE TABLE subgoals (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        episode INTEGER NOT NULL,
        step_start INTEGER NOT NULL,
        step_end INTEGER NOT NULL,
        subgoal INTEGER NOT NULL,
        success INTEGER NOT NULL,
        cause TEXT NOT NULL,
        condition INTEGER NOT NULL,
        spatial INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    # rowid is implicitly last in every index, so both give "newest first" without a sort
    # (one index on (condition, subgoal) alone sorted every hit of a popular condition).
    "CREATE INDEX attempts_condition ON attempts (condition)",
    "CREATE INDEX attempts_condition_subgoal ON attempts (condition, subgoal)",
    "CREATE INDEX attempts_spatial ON attempts (spatial)",
    "CREATE INDEX attempts_episode ON attempts (episode)",
    """CREATE TABLE attempt_tags (
        tag INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        PRIMARY KEY (tag, attempt)
    ) WITHOUT ROWID""",
    # One row per (subgoal, condition, cause): per-cause counts and last cause come free.
    """CREATE TABLE summaries (
        subgoal INTEGER NOT NULL,
        condition INTEGER NOT NULL,
        cause TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        progress_sum REAL NOT NULL,
        steps_sum INTEGER NOT NULL,
        last_attempt INTEGER NOT NULL,
        last_episode INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (subgoal, condition, cause)
    ) WITHOUT ROWID""",
    "INSERT INTO meta VALUES ('payload_codec', 'pickle5-plain')",
)

# Tier 3: skills and guardrails. A new version of an entry is a new row, never an overwrite,
# so the whole history stays readable; "current" is the highest version per (kind, key).
_V2 = (
    """CREATE TABLE knowledge (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        subgoal TEXT NOT NULL,
        trigger TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (kind, key, version)
    )""",
    "CREATE INDEX knowledge_subgoal ON knowledge (kind, subgoal)",
    "CREATE INDEX knowledge_trigger ON knowledge (kind, trigger)",
    "CREATE INDEX attempts_subgoal ON attempts (subgoal)",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2}
SCHEMA_VERSION = max(MIGRATIONS)


class StoreError(Exception):
    """A store file that cannot be used; the message names the file and what to do."""


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` as a Cairn store, creating or migrating it; raise StoreError if unusable."""
    _check_header(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open experience store {path}: {exc}; check the path") from exc
    try:
        _configure(conn)
        _check_and_migrate(conn, path)
    except StoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{path} is not a readable Cairn experience store ({exc}); "
            "move it aside or pass another store path") from exc
    return conn


def _check_header(path: Path) -> None:
    """Reject a non-SQLite file before SQLite does, with a clearer message."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(
            f"{path} is not a Cairn experience store (not a SQLite file); "
            "move it aside or pass another store path")


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -131072")  # KiB: 128 MiB of page cache
    conn.execute("PRAGMA mmap_size = 4294967296")  # reads of a hot store avoid syscalls
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA busy_timeout = 10000")


def _versions(conn: sqlite3.Connection) -> tuple[int, int]:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return app_id, version


def _check_and_migrate(conn: sqlite3.Connection, path: Path) -> None:
    app_id, version = _versions(conn)
    _check_identity(conn, path, app_id, version)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id, version = _versions(conn)  # another process may have migrated meanwhile
        _check_identity(conn, path, app_id, version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            log.info("experience store %s: schema migrated to version %d", path, step)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_identity(conn: sqlite3.Connection, path: Path, app_id: int, version: int) -> None:
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables:
            raise StoreError(
                f"{path} is a SQLite database but not a Cairn experience store; "
                "pass another store path")
        return
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is a SQLite database but not a Cairn experience store; "
            "pass another store path")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {version}, newer than this Cairn reads "
            f"({SCHEMA_VERSION}); upgrade Cairn or pass another store path")
