"""The experience store: every attempt (tier 1) and rolling statistics (tier 2) in SQLite.

One file, WAL mode, so one process can write while others read, and a killed run leaves
every committed batch readable. Any number of processes may open, create and write one store
at once: every write is one ``BEGIN IMMEDIATE`` transaction that waits (up to a busy
timeout) for the others. The schema, its migrations and how a file is opened and checked
live in ``store_schema``.

Writing is split in two so that the one process that owns a store can take attempts in
bulk from many workers: ``store_codec.encode_attempts`` (any process, no store) turns tuples
into a picklable :class:`EncodedBatch`, with the payloads pickled, the batch's names listed
once and its tier-2 increments folded per (subgoal, condition, cause); ``add_encoded`` then
only interns those names, assigns ids and writes, in one transaction whose rows SQLite
builds from the batch's columns without a Python loop. ``add_many`` is the two in one.
Lookups return a :class:`Hits` sequence: the query fetches ids and encoded payloads, and a
tuple is decoded only when it is read. Both are measured in ``bench/store.py``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count, repeat
from pathlib import Path
from typing import Any, overload

from cairn.experience.knowledge import Knowledge
from cairn.experience.records import ExperienceTuple
from cairn.experience.seeds import PlayedSeeds
from cairn.experience.store_codec import EncodedBatch, decode, encode_attempts
from cairn.experience.store_schema import (
    BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    StoreError,
    connect,
    write_error,
)

__all__ = ["EncodedBatch", "ExperienceStore", "Hits", "StoreError", "SubgoalStats",
           "SCHEMA_VERSION", "BUSY_TIMEOUT_S", "encode_attempts"]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
WAL_CHECKPOINT_PAGES = 10_000
"""WAL pages a writer lets build up before a commit copies them into the file. At SQLite's
1,000 every batch of 2,000 attempts was a checkpoint of its own, copying (and syncing) the
index pages it touched at random each time; at 10,000 (about 40 MB of WAL) a page rewritten
by several batches is copied once, and ingest is about 1.3x faster."""

_NEXT_ID = "SELECT coalesce(max(id), 0) + 1 FROM attempts"
_INSERT_ATTEMPT = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TAG = "INSERT INTO attempt_tags VALUES (?, ?)"
_UPSERT_SUMMARY = """
INSERT INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (subgoal, condition, cause) DO UPDATE SET
    attempts = attempts + excluded.attempts,
    successes = successes + excluded.successes,
    progress_sum = progress_sum + excluded.progress_sum,
    steps_sum = steps_sum + excluded.steps_sum,
    last_attempt = excluded.last_attempt,
    last_episode = excluded.last_episode,
    updated_at = excluded.updated_at
"""
_BY_CONDITION = """
SELECT id, payload FROM attempts INDEXED BY attempts_condition
WHERE condition = ? ORDER BY id DESC LIMIT ?
"""
_BY_CONDITION_SUBGOAL = """
SELECT id, payload FROM attempts WHERE condition = ? AND subgoal = ? ORDER BY id DESC LIMIT ?
"""
_BY_SPATIAL = "SELECT id, payload FROM attempts WHERE spatial = ? ORDER BY id DESC LIMIT ?"
_BY_TAG = """
SELECT a.id, a.payload FROM attempt_tags AS t JOIN attempts AS a ON a.id = t.attempt
WHERE t.tag = ? ORDER BY t.attempt DESC LIMIT ?
"""
_BY_EPISODE = "SELECT id, payload FROM attempts WHERE episode = ? ORDER BY id"
_BY_SUBGOAL = "SELECT id, payload FROM attempts WHERE subgoal = ? ORDER BY id DESC LIMIT ?"
_NEWEST = "SELECT id, payload FROM attempts ORDER BY id DESC LIMIT ?"
_ATTEMPTED = """
SELECT key FROM subgoals AS s WHERE EXISTS (SELECT 1 FROM attempts WHERE subgoal = s.id)
ORDER BY id"""
_COUNTS = "SELECT sum(attempts), sum(successes) FROM summaries WHERE subgoal = ? AND condition = ?"
_TOTALS = "SELECT subgoal, sum(attempts), sum(successes) FROM summaries GROUP BY subgoal"
_STATS_COLUMNS = """
SELECT {group} cause, sum(attempts), sum(successes), sum(progress_sum), sum(steps_sum),
       max(last_attempt), last_episode, max(updated_at)
FROM summaries {where} GROUP BY {group} cause
"""


class Hits(Sequence[ExperienceTuple]):
    """The attempts a lookup found, newest first; each is decoded when first read."""

    def __init__(self, rows: list[tuple[int, bytes]]) -> None:
        self._rows = rows
        self._decoded: dict[int, ExperienceTuple] = {}

    @property
    def ids(self) -> list[int]:
        return [row[0] for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> ExperienceTuple: ...
    @overload
    def __getitem__(self, index: slice) -> list[ExperienceTuple]: ...

    def __getitem__(self, index: int | slice) -> ExperienceTuple | list[ExperienceTuple]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self._rows)
        found = self._decoded.get(index)
        if found is None:
            found = self._decoded[index] = decode(*self._rows[index])
        return found

    def __iter__(self) -> Iterator[ExperienceTuple]:
        return (self[i] for i in range(len(self._rows)))

    def __repr__(self) -> str:
        return f"Hits({len(self._rows)} attempts)"


# -- tier-2 statistics ---------------------------------------------------------------------

@dataclass(frozen=True)
class SubgoalStats:
    """How one subgoal went, under one condition or (``condition=None``) under all of them."""

    subgoal: str
    condition: int | None
    attempts: int = 0
    successes: int = 0
    causes: dict[str, int] = field(default_factory=dict)
    mean_progress: float = 0.0
    mean_steps: float = 0.0
    last_cause: str | None = None
    last_episode: str | None = None
    updated_at: float | None = None

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def _stats_from_rows(subgoal: str, condition: int | None, rows: Iterable[tuple],
                     episode_name: Any) -> SubgoalStats:
    """Fold per-cause summary rows (cause, n, ok, progress, steps, last, episode, at)."""
    attempts = successes = steps = 0
    progress = 0.0
    causes: dict[str, int] = {}
    last: tuple[int, str, int, float] | None = None
    for cause, n, ok, prog, stp, last_id, episode, at in rows:
        attempts += n
        successes += ok
        progress += prog
        steps += stp
        causes[cause] = n
        if last is None or last_id > last[0]:
            last = (last_id, cause, episode, at)
    if last is None:
        return SubgoalStats(subgoal, condition)
    return SubgoalStats(
        subgoal, condition, attempts, successes, causes, progress / attempts,
        steps / attempts, last[1], episode_name(last[2]), last[3])


# -- the store -----------------------------------------------------------------------------

class _Names:
    """Interns strings of one kind (episodes, subgoals, tags) into a small id table."""

    def __init__(self, conn: sqlite3.Connection, table: str, column: str) -> None:
        self._conn, self._table, self._column = conn, table, column
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}

    def find(self, name: str) -> int | None:
        """The id of ``name`` if any process has stored it."""
        found = self.ids.get(name)
        if found is None:
            row = self._conn.execute(
                f"SELECT id FROM {self._table} WHERE {self._column} = ?", (name,)).fetchone()
            if row is not None:
                found = self._remember(name, row[0])
        return found

    def name(self, name_id: int) -> str:
        found = self.names.get(name_id)
        if found is None:
            row = self._conn.execute(
                f"SELECT {self._column} FROM {self._table} WHERE id = ?", (name_id,)).fetchone()
            found = row[0]
            self._remember(found, name_id)
        return found

    def intern(self, names: Sequence[str], pending: dict[str, int]) -> list[int]:
        """The ids of ``names``, inserting the new ones; call inside the write transaction.

        New ids go to ``pending`` and are remembered only once the transaction commits,
        so a rolled-back batch never leaves a stale id in memory.
        """
        known = self.ids
        return [known.get(name) or self._insert(name, pending) for name in names]

    def _insert(self, name: str, pending: dict[str, int]) -> int:
        self._conn.execute(
            f"INSERT OR IGNORE INTO {self._table} ({self._column}) VALUES (?)", (name,))
        found = pending[name] = self._conn.execute(
            f"SELECT id FROM {self._table} WHERE {self._column} = ?", (name,)).fetchone()[0]
        return found

    def _remember(self, name: str, name_id: int) -> int:
        self.ids[name] = name_id
        self.names[name_id] = name
        return name_id

    def commit(self, pending: dict[str, int]) -> None:
        for name, name_id in pending.items():
            self._remember(name, name_id)


class ExperienceStore:
    """Tier 1 (every attempt, append-only) and tier 2 (per-subgoal statistics) of experience.

    ``ExperienceStore(path)`` creates the file (and missing folders) or opens (and migrates)
    an existing store, and refuses at once a store it could not write to (read-only file or
    folder), so a run fails before it plays. ``ExperienceStore(path, writable=False)`` only
    reads: it creates, migrates and writes nothing, and reads a store in a read-only folder.
    ``timeout`` is how many seconds to wait for another process's lock; ``created`` tells
    whether this open created the store. An unusable file raises :class:`StoreError` with
    one line naming the file and what to do. Use it as a context manager or ``close()``.
    """

    def __init__(self, path: str | Path, writable: bool = True,
                 timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.writable = writable
        self.timeout = timeout
        self._conn, self.created = connect(self.path, writable, timeout)
        if writable:
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        self._episodes = _Names(self._conn, "episodes", "name")
        self._subgoals = _Names(self._conn, "subgoals", "key")
        self._tags = _Names(self._conn, "tags", "name")
        self._tally: dict[int, list[int]] | None = None
        self._tally_version = -1

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ExperienceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def add(self, t: ExperienceTuple) -> int:
        """Store one attempt; returns (and sets) its id."""
        return self.add_many([t])[0]

    def add_many(self, ts: Sequence[ExperienceTuple]) -> list[int]:
        """Store attempts in one transaction: all of them or, on any error, none.

        Sets ``.id`` on each tuple (only once the batch is committed) and returns the ids.
        The same as ``add_encoded(encode_attempts(ts))``.
        """
        ids = self.add_encoded(encode_attempts(ts))  # encoded before the lock: an encoding
        for t, attempt_id in zip(ts, ids, strict=True):  # error leaves nothing behind
            t.id = attempt_id
        return ids

    def add_encoded(self, batch: EncodedBatch) -> list[int]:
        """Store a batch made by :func:`encode_attempts` (in this process or another) in one
        transaction: all of it or, on any error, none. Returns the new attempts' ids, in
        the batch's order."""
        if not isinstance(batch, EncodedBatch):
            raise TypeError(f"add_encoded takes an EncodedBatch, not {type(batch).__name__}")
        batch.check()
        if not len(batch):
            return []
        if not self.writable:
            raise StoreError(f"{self.path} was opened read-only; open it with writable=True "
                             "to add attempts")
        pending: tuple[dict[str, int], ...] = ({}, {}, {})
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                first = self._write(batch, pending)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            error = write_error(exc, self.path, self.timeout)
            if error is None:
                raise
            raise error from exc
        for names, new in zip((self._episodes, self._subgoals, self._tags), pending,
                              strict=True):
            names.commit(new)
        self._count_own(batch)
        return list(range(first, first + len(batch)))

    def _count_own(self, batch: EncodedBatch) -> None:
        """Add a batch this connection committed to the tally of ``counts``: SQLite's
        ``data_version`` moves only for other connections' commits."""
        if self._tally is None:
            return
        subgoal, _condition, _cause, n, ok = batch.groups[:5]
        for position, attempts, successes in zip(subgoal, n, ok, strict=True):
            entry = self._tally.setdefault(self._subgoals.ids[batch.subgoals[position]], [0, 0])
            entry[0] += attempts
            entry[1] += successes

    def _write(self, b: EncodedBatch, pending: tuple[dict[str, int], ...]) -> int:
        """Write ``b`` inside the open transaction; returns its first attempt's id.

        Ids are max(id) + 1 onwards (the write lock is held), so tag rows and summaries can
        name their attempts before SQLite has stored them; every row is built by ``zip`` and
        ``map`` over the batch's columns, without a Python loop.
        """
        conn = self._conn
        episodes = self._episodes.intern(b.episodes, pending[0]).__getitem__
        subgoals = self._subgoals.intern(b.subgoals, pending[1]).__getitem__
        tags = self._tags.intern(b.tags, pending[2]).__getitem__
        first: int = conn.execute(_NEXT_ID).fetchone()[0]
        episode, start, end, subgoal, success, cause, condition, spatial, payload = b.attempts
        conn.executemany(_INSERT_ATTEMPT, zip(
            count(first), map(episodes, episode), start, end, map(subgoals, subgoal), success,
            cause, condition, spatial, payload))
        tag, tagged = b.tagged
        conn.executemany(_INSERT_TAG, zip(map(tags, tag), map(first.__add__, tagged),
                                          strict=True))
        subgoal, condition, cause, n, ok, progress, steps, last, episode = b.groups
        conn.executemany(_UPSERT_SUMMARY, zip(
            map(subgoals, subgoal), condition, cause, n, ok, progress, steps,
            map(first.__add__, last), map(episodes, episode), repeat(time.time())))
        return first

    # -- tier 1 lookups --------------------------------------------------------------------

    def get(self, attempt_id: int) -> ExperienceTuple | None:
        row = self._conn.execute(
            "SELECT id, payload FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return None if row is None else decode(*row)

    def by_condition(self, condition: int, subgoal: str | None = None,
                     limit: int = DEFAULT_LIMIT) -> Hits:
        """The newest attempts made under a condition signature (and subgoal key, if given)."""
        if subgoal is None:
            return Hits(self._conn.execute(_BY_CONDITION, (condition, limit)).fetchall())
        subgoal_id = self._subgoals.find(subgoal)
        if subgoal_id is None:
            return Hits([])
        return Hits(self._conn.execute(
            _BY_CONDITION_SUBGOAL, (condition, subgoal_id, limit)).fetchall())

    def by_spatial(self, spatial: int, limit: int = DEFAULT_LIMIT) -> Hits:
        """The newest attempts that started in a spatial-hash cell."""
        return Hits(self._conn.execute(_BY_SPATIAL, (spatial, limit)).fetchall())

    def by_tag(self, tag: str, limit: int = DEFAULT_LIMIT) -> Hits:
        """The newest attempts carrying a semantic tag (see ``ExperienceTuple.tags``)."""
        return self._by_name(self._tags, tag, _BY_TAG, limit)

    def by_episode(self, episode: str) -> Hits:
        """Every attempt of an episode, in the order they were stored."""
        return self._by_name(self._episodes, episode, _BY_EPISODE)

    def by_subgoal(self, subgoal: str, limit: int = DEFAULT_LIMIT) -> Hits:
        """The newest attempts at a subgoal (by key), newest first."""
        return self._by_name(self._subgoals, subgoal, _BY_SUBGOAL, limit)

    def newest(self, limit: int = DEFAULT_LIMIT) -> Hits:
        """The newest attempts of any subgoal, newest first."""
        return Hits(self._conn.execute(_NEWEST, (limit,)).fetchall())

    def subgoals(self) -> list[str]:
        """Every subgoal attempted here, in the order they were first stored."""
        return [key for (key,) in self._conn.execute(_ATTEMPTED)]

    def _by_name(self, names: _Names, name: str, query: str, *params: int) -> Hits:
        name_id = names.find(name)
        if name_id is None:
            return Hits([])
        return Hits(self._conn.execute(query, (name_id, *params)).fetchall())

    @property
    def knowledge(self) -> Knowledge:
        """Tier 3: skills and guardrails, versioned."""
        return Knowledge(self._conn, self.path, self.timeout, self.writable)

    @property
    def seeds(self) -> PlayedSeeds:
        """The highest world seed each run name has played here (``cairn run`` goes on
        after it)."""
        return PlayedSeeds(self._conn, self.path, self.timeout, self.writable)

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM attempts").fetchone()[0]

    # -- tier 2 ------------------------------------------------------------------------------

    def summary(self, subgoal: str, condition: int | None = None) -> SubgoalStats:
        """Statistics of a subgoal under one condition, or under all when ``condition`` is None."""
        subgoal_id = self._subgoals.find(subgoal)
        if subgoal_id is None:
            return SubgoalStats(subgoal, condition)
        where, params = "WHERE subgoal = ?", [subgoal_id]
        if condition is not None:
            where, params = where + " AND condition = ?", [subgoal_id, condition]
        rows = self._conn.execute(_STATS_COLUMNS.format(group="", where=where), params)
        return _stats_from_rows(subgoal, condition, rows.fetchall(), self._episodes.name)

    def counts(self, subgoal: str, condition: int | None = None) -> tuple[int, int]:
        """(attempts, successes) at a subgoal under one condition, or under all when
        ``condition`` is None: ``summary``'s two counts, which planners ask of every subgoal
        they weigh. A subgoal has a summary row per condition it met, as many as its
        attempts nearly, so the totals over all of them are tallied in memory: kept up by
        this connection's own writes, read again once another connection has written."""
        subgoal_id = self._subgoals.find(subgoal)
        if subgoal_id is None:
            return 0, 0
        if condition is not None:
            attempts, successes = self._conn.execute(_COUNTS, (subgoal_id, condition)).fetchone()
            return attempts or 0, successes or 0
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if self._tally is None or version != self._tally_version:
            self._tally = {s: [n, ok] for s, n, ok in self._conn.execute(_TOTALS)}
            self._tally_version = version
        attempts, successes = self._tally.get(subgoal_id, (0, 0))
        return attempts, successes

    def subgoal_stats(self) -> dict[str, SubgoalStats]:
        """Statistics of every subgoal ever attempted, over all conditions, by subgoal key."""
        rows = self._conn.execute(_STATS_COLUMNS.format(group="subgoal,", where="")).fetchall()
        by_subgoal: dict[int, list[tuple]] = {}
        for subgoal_id, *rest in rows:
            by_subgoal.setdefault(subgoal_id, []).append(tuple(rest))
        stats = {}
        for subgoal_id, group in by_subgoal.items():
            key = self._subgoals.name(subgoal_id)
            stats[key] = _stats_from_rows(key, None, group, self._episodes.name)
        return stats
