"""The experience store's on-disk schema: opening a file, checking it, migrating it.

A Cairn store is one SQLite file marked with ``PRAGMA application_id`` (so a foreign SQLite
file is told apart from ours) and versioned with ``PRAGMA user_version``. Each schema version
is a list of statements that brings a store from the previous version to it; opening an older
store applies the missing steps in one transaction, so tier 3 (skills, guardrails) is added
later by appending ``MIGRATIONS[2]`` without touching version 1.

Opening writes nothing to a file until it is known to be ours: an existing file is read
through a read-only connection first (``mode=ro``), and only a Cairn store, an empty (0-byte)
file or an empty SQLite database (no tables, no marks) is reopened read-write. The schema is
created or migrated inside one ``BEGIN IMMEDIATE`` transaction that reads the marks again, so
any number of processes may open (and create) one store at once. Every failure is one
:class:`StoreError` line naming the file and what to do about it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

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


BUSY_TIMEOUT_S = 10.0
"""How long opening or writing waits for another process's write lock before giving up."""

_READ_IDENTITY = """
SELECT (SELECT application_id FROM pragma_application_id),
       (SELECT user_version FROM pragma_user_version),
       (SELECT count(*) FROM sqlite_schema),
       (SELECT group_concat(name, ' ') FROM sqlite_schema WHERE type = 'table')
"""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_MOVE_ASIDE = "move it aside or pass another --store"


class StoreError(Exception):
    """A store file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class _Identity:
    """What a SQLite file says it is, read in one statement (one consistent snapshot)."""

    app_id: int
    version: int
    objects: int
    tables: frozenset[str]

    @property
    def blank(self) -> bool:
        """An empty SQLite database: no tables, no marks; created as a store like a new file."""
        return self.app_id == 0 and self.version == 0 and self.objects == 0


def connect(path: Path, writable: bool = True, timeout: float = BUSY_TIMEOUT_S
            ) -> tuple[sqlite3.Connection, bool]:
    """Open ``path`` as a Cairn store; returns the connection and whether this call created
    the schema. Raises StoreError (one line: the file, what is wrong, what to do).

    ``writable``: create the file (and missing folders) or migrate it if needed, and refuse
    now if it cannot be written, so a run fails before it plays rather than at its first
    write. ``writable=False`` opens it read-only: nothing is created, migrated or written,
    and a store in a folder nobody may write to is read as it is (SQLite's WAL mode needs to
    create ``<name>-wal`` and ``<name>-shm`` beside the file; without them it is read
    ``immutable``). ``timeout``: seconds to wait for another process's lock.
    """
    path = Path(path)
    try:
        _check_location(path, writable)
        has_content = _has_content(path)
        if has_content:
            _check_header(path)
    except OSError as exc:  # a folder on the way that cannot be searched, an I/O error
        raise StoreError(f"cannot reach experience store {path} ({exc.strerror}); check the "
                         "path and its permissions or pass another --store") from exc
    ident: _Identity | None = None
    if has_content:
        ro = _open_readonly(path, timeout)
        with _closed_on_error(ro, path, timeout):
            ident = _identity(ro)
            _check_identity(path, ident)
            if not writable:
                _check_readable_version(path, ident)
                if not _may_write(path):
                    _tune(ro)
                    return ro, False
        ro.close()
        if not writable:
            return _open_query_only(path, timeout), False
    elif not writable:
        raise StoreError(f"no experience store at {path} yet (the file is missing or empty); "
                         "run 'cairn run' first or pass another --store")
    _check_writable(path, new=ident is None or ident.blank)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(exc, path, timeout) from exc
    with _closed_on_error(conn, path, timeout):
        _use_wal(conn, path, timeout)
        current = _identity(conn)  # a store already up to date takes no write lock
        created = False
        if current.app_id != APPLICATION_ID or current.version != SCHEMA_VERSION:
            created = _create_or_migrate(conn, path)
        _tune(conn)
    return conn, created


@contextlib.contextmanager
def _closed_on_error(conn: sqlite3.Connection, path: Path, timeout: float | None):
    """Close ``conn`` if the block fails; SQLite's own errors become one StoreError line."""
    try:
        yield
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(exc, path, timeout) from exc


def store_error(exc: sqlite3.Error, path: Path, timeout: float | None = None) -> StoreError:
    """One line for a SQLite error on the store at ``path``: what happened, what to do."""
    code = getattr(exc, "sqlite_errorcode", None) or 0
    primary = code & 0xFF
    folder = path.parent
    if primary in _BUSY:
        waited = f" for {timeout:g} s" if timeout is not None else ""
        return StoreError(
            f"{path} is locked by another process (still busy after waiting{waited}); "
            "wait for that process to finish and try again")
    if code == sqlite3.SQLITE_READONLY_DIRECTORY or (
            primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)
            and not os.access(folder, os.W_OK)):
        return StoreError(_readonly_folder(path))
    if primary == sqlite3.SQLITE_READONLY:
        if code == sqlite3.SQLITE_READONLY_ROLLBACK:
            return StoreError(
                f"{path} was left mid-write by a process that stopped ({path.name}-journal "
                "beside it) and cannot be checked without writing to it; open it with the "
                f"program that wrote it, or {_MOVE_ASIDE}")
        return StoreError(_readonly_file(path))
    if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return StoreError(
            f"cannot open experience store {path} ({exc}); check the path and its "
            "permissions or pass another --store")
    if primary == sqlite3.SQLITE_FULL:
        return StoreError(f"cannot write experience store {path}: the disk is full; "
                          "free some space and try again")
    return StoreError(
        f"{path} is not a readable Cairn experience store ({exc}); {_MOVE_ASIDE}")


def write_error(exc: sqlite3.Error, path: Path, timeout: float | None = None
                ) -> StoreError | None:
    """The :func:`store_error` line for an error a write met because of the store's
    surroundings (locked, read-only, disk full); None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None) or 0
    if code & 0xFF in (*_BUSY, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                       sqlite3.SQLITE_PERM, sqlite3.SQLITE_FULL):
        return store_error(exc, path, timeout)
    return None


def _readonly_folder(path: Path) -> str:
    return (f"{path} cannot be written: its folder {path.parent} is not writable (SQLite "
            f"creates {path.name}-wal and {path.name}-shm there); make the folder writable "
            "or pass another --store")


def _readonly_file(path: Path) -> str:
    return f"{path} is read-only (the file is not writable); make it writable or pass " \
           "another --store"


def _check_location(path: Path, writable: bool) -> None:
    """A folder as the store, a path under a file, a missing folder: one clear line each."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a store file; pass a file path such as "
                         f"{path / 'experience.sqlite'}")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"cannot use {path} as an experience store: {existing} is a file, "
                         "not a folder; pass another --store")
    if existing == folder:
        return
    if not writable:
        raise StoreError(f"no experience store at {path} (its folder {folder} does not "
                         "exist); run 'cairn run' first or pass another --store")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {folder} for experience store {path} "
                         f"({exc.strerror}); pass another --store") from exc


def _has_content(path: Path) -> bool:
    """Whether ``path`` holds anything: a missing or 0-byte file is a new store (SQLite
    itself reads a 0-byte file as an empty database, and a store another process is
    creating is 0 bytes for a moment)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _check_header(path: Path) -> None:
    """Reject a non-SQLite file before SQLite does, with a clearer message."""
    if not os.access(path, os.R_OK):
        raise StoreError(f"{path} cannot be read (permission denied); fix its permissions "
                         "or pass another --store")
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(
            f"{path} is not a Cairn experience store (not a SQLite file); {_MOVE_ASIDE}")


def _open_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that cannot write to ``path``.

    In a folder that cannot be written, SQLite cannot create the WAL's ``-shm`` file a
    reader needs; if no ``-wal`` file is there either, every committed page is in the file
    itself and it is read ``immutable`` (no locks, no sidecar files)."""
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    conn = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # opens the WAL
        return conn
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        code = getattr(exc, "sqlite_errorcode", 0) or 0
        wal = path.with_name(path.name + "-wal")
        if code & 0xFF not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) \
                or os.access(path.parent, os.W_OK) or wal.exists():
            raise store_error(exc, path, timeout) from exc
    try:
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(exc, path, timeout) from exc


def _may_write(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _open_query_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A reader of a store it could write to: ``query_only`` refuses every write, and being
    a read-write connection it removes the WAL's -wal and -shm files when it closes last
    (a ``mode=ro`` reader leaves them behind)."""
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(exc, path, timeout) from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        _tune(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(exc, path, timeout) from exc
    return conn


def _identity(conn: sqlite3.Connection) -> _Identity:
    app_id, version, objects, tables = conn.execute(_READ_IDENTITY).fetchone()
    return _Identity(app_id, version, objects, frozenset((tables or "").split()))


def _tables_of(version: int) -> set[str]:
    """The tables a store of schema ``version`` has."""
    names = set()
    for step in range(1, version + 1):
        for statement in MIGRATIONS.get(step, ()):
            words = statement.split()
            if words[:2] == ["CREATE", "TABLE"]:
                names.add(words[2])
    return names


def _check_identity(path: Path, ident: _Identity) -> None:
    """Refuse a file that is not a Cairn store this version can use."""
    if ident.blank:
        return
    if ident.app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is a SQLite database but not a Cairn experience store; {_MOVE_ASIDE}")
    if ident.version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {ident.version}, newer than this Cairn reads "
            f"({SCHEMA_VERSION}); upgrade Cairn or pass another --store")
    missing = _tables_of(ident.version) - ident.tables
    if missing:
        raise StoreError(
            f"{path} is marked as a Cairn experience store (schema version {ident.version}) "
            f"but lacks its tables ({', '.join(sorted(missing))}); {_MOVE_ASIDE}")


def _check_readable_version(path: Path, ident: _Identity) -> None:
    if ident.blank:
        raise StoreError(f"no experience store at {path} yet (an empty SQLite database); "
                         "run 'cairn run' first or pass another --store")
    if ident.version < SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {ident.version}, older than this Cairn reads "
            f"({SCHEMA_VERSION}); open it once for writing (e.g. cairn run) to upgrade it")


def _check_writable(path: Path, new: bool) -> None:
    """Refuse now a store that could not be written later (``os.access`` also answers for
    a read-only file system)."""
    if not os.access(path.parent, os.W_OK):
        if new and not path.exists():
            raise StoreError(
                f"cannot create experience store {path}: its folder {path.parent} is not "
                "writable; make the folder writable or pass another --store")
        raise StoreError(_readonly_folder(path))
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(_readonly_file(path))


def _use_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Switch to WAL mode (a no-op once the file is in it).

    Switching takes a write lock while holding a read lock, and SQLite answers "busy" at
    once (without its busy handler) when another connection is switching too; so retry
    here, up to the busy timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) or 0
            if code & 0xFF not in _BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    if mode != "wal":
        log.warning("experience store %s: journal mode %s (WAL unavailable here); "
                    "concurrent readers will wait for writers", path, mode)


def _create_or_migrate(conn: sqlite3.Connection, path: Path) -> bool:
    """Bring the store to SCHEMA_VERSION in one immediate transaction; True if this call
    created it. The marks are read again under the write lock: another process may have
    created or migrated the store since it was identified."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        ident = _identity(conn)
        _check_identity(path, ident)
        for step in range(ident.version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            log.info("experience store %s: schema migrated to version %d", path, step)
        if ident.version != SCHEMA_VERSION or ident.app_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return ident.version == 0


def _tune(conn: sqlite3.Connection) -> None:
    """Per-connection settings; none of them is written to the file."""
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -131072")  # KiB: 128 MiB of page cache
    conn.execute("PRAGMA mmap_size = 4294967296")  # reads of a hot store avoid syscalls
    conn.execute("PRAGMA temp_store = MEMORY")
