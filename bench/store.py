"""Experience store: ingest rate and lookup latency, beside bare SQLite in the same run.

    python -m bench.store --tuples 1000000

Ingest runs batch by batch, the four timings interleaved so that all see the same machine
(owner and bare taking turns at going first):

- encode: ``encode_attempts(ts)`` alone, the part a worker process does (no store);
- owner: ``ExperienceStore.add_encoded(batch)`` on that encoded batch, the one writing
  process's whole cost (interning names, the next id, attempt rows, tag rows and the tier-2
  UPSERT, one transaction);
- add_many: ``ExperienceStore.add_many(ts)`` on a second store, encoding included;
- bare: what SQLite itself costs to store the same data. A fresh file gets the store's own
  ``attempts`` and ``attempt_tags`` tables and the five indexes on ``attempts`` (their DDL
  read from the store file), the store connection's pragmas (read from it), and per batch one
  ``BEGIN IMMEDIATE``, the same two ``executemany`` inserts and ``COMMIT``, of the very rows
  the store wrote: the same ids, integer episode, subgoal and tag ids, causes, conditions,
  cells and payload bytes, tag rows in the same order, all built before the timer starts
  (and checked against the store's after the run). It does not intern names (it has no
  ``episodes``, ``subgoals`` or ``tags`` tables), keep tier-2 summaries, look up the next id
  or check the batch: that is the store's overhead.

Lookups time the user-facing call (query plus fetch of ids and encoded payloads, newest
first), key by key alternating with the same SQL on the bare file, whose ids for subgoals and
tags are resolved before timing; "+decode" also turns hits into ExperienceTuples. The pool of
generated tuples is moved out of the garbage collector's sight (``gc.freeze``) so that
encoding is not charged for collections that walk the bench's own 20,000-tuple pool.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.experience.store import EncodedBatch, ExperienceStore, encode_attempts

TARGET_INGEST = 0.8  # owner ingest / bare SQLite rows/s
TARGET_P99 = 1.2  # by_condition p99 / bare SQLite p99, at 1M tuples

KINDS = ["grass", "sand", "tree", "water", "stone", "coal", "iron", "table", "path", None]
ITEMS = ["sapling", "wood", "stone", "coal", "iron", "diamond", "wood_pickaxe",
         "stone_pickaxe", "wood_sword"]
SUBGOALS = ([Subgoal("interact", k) for k in ("tree", "stone", "coal", "iron", "water")]
            + [Subgoal("place", k) for k in ("table", "furnace", "stone")]
            + [Subgoal("make", k) for k in ("wood_pickaxe", "stone_pickaxe")]
            + [Subgoal("explore"), Subgoal("sleep")])
STATE_TAGS = [[], [], ["night"], ["hungry"], ["night", "thirsty"]]

PRAGMAS = ("page_size", "auto_vacuum", "journal_mode", "synchronous", "cache_size",
           "mmap_size", "temp_store", "wal_autocheckpoint", "cache_spill", "locking_mode")
"""Read from the store's connection and set on the bare one (file-level ones first)."""
BY_CONDITION = """
SELECT id, payload FROM attempts INDEXED BY attempts_condition
WHERE condition = ? ORDER BY id DESC LIMIT ?
"""
BY_CONDITION_SUBGOAL = """
SELECT id, payload FROM attempts WHERE condition = ? AND subgoal = ? ORDER BY id DESC LIMIT ?
"""
BY_SPATIAL = "SELECT id, payload FROM attempts WHERE spatial = ? ORDER BY id DESC LIMIT ?"
BY_TAG = """
SELECT a.id, a.payload FROM attempt_tags AS t JOIN attempts AS a ON a.id = t.attempt
WHERE t.tag = ? ORDER BY t.attempt DESC LIMIT ?
"""


def situation(rng: random.Random) -> tuple:
    """What a condition signature hinges on: held items, faced kind, 3x3 around, tags."""
    held = tuple(item for item in ITEMS if rng.random() < 0.25)
    near = tuple(tuple(rng.choice(KINDS[:5]) for _ in range(3)) for _ in range(3))
    return held, rng.choice(KINDS), near, tuple(rng.choice(STATE_TAGS))


def make_state(rng: random.Random, where: tuple, step: int) -> State:
    held, facing_kind, near, tags = where
    counters = {name: rng.randint(1, 9) for name in ("health", "food", "drink", "energy")}
    counters.update({item: rng.randint(1, 5) if item in held else 0 for item in ITEMS})
    return State(step, (rng.randint(0, 63), rng.randint(0, 63)),
                 rng.choice([(0, 1), (1, 0), (0, -1), (-1, 0)]), counters, facing_kind,
                 [list(row) for row in near], rng.sample(KINDS[:-1], 5), list(tags))


def make_tuple(rng: random.Random, situations: list[tuple], weights: list[float],
               i: int) -> ExperienceTuple:
    steps = rng.randint(1, 12)
    cause = rng.choices(list(Cause), weights=[8] + [1] * (len(Cause) - 1))[0]
    diagnosis = Diagnosis(
        cause is Cause.SUCCESS, cause, {"wood": 1} if cause is Cause.SUCCESS else {},
        rng.choice([0.0, 1.0]), [(1, 2, "tree", "grass")] if rng.random() < 0.3 else [],
        rng.random(), rng.random() * 9 if rng.random() < 0.5 else None, rng.randint(-2, 0),
        steps, rng.random() < 0.1, rng.random() < 0.05, "")
    pre = make_state(rng, rng.choices(situations, weights)[0], i)
    post = make_state(rng, rng.choice(situations), i + steps)
    return ExperienceTuple(f"ep{i // 300}", i, i + steps, pre, rng.choice(SUBGOALS),
                           [rng.randint(0, 16) for _ in range(steps)], diagnosis, post)


def make_pool(size: int, n_situations: int, seed: int) -> list[ExperienceTuple]:
    rng = random.Random(seed)
    situations = [situation(rng) for _ in range(n_situations)]
    weights = [1.0 / (rank + 20) for rank in range(n_situations)]  # a mild popularity skew
    return [make_tuple(rng, situations, weights, i) for i in range(size)]


class Bare:
    """The store's attempts and attempt_tags tables, written by SQLite alone."""

    def __init__(self, path: Path, store: sqlite3.Connection) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in PRAGMAS:
            value = store.execute(f"PRAGMA {pragma}").fetchone()[0]
            self.conn.execute(f"PRAGMA {pragma} = {value}")
        ddl = store.execute(
            "SELECT sql FROM sqlite_schema WHERE tbl_name IN ('attempts', 'attempt_tags') "
            "AND sql IS NOT NULL ORDER BY type = 'index', name").fetchall()
        for (statement,) in ddl:
            self.conn.execute(statement)
        self.indexes = sum("CREATE INDEX" in statement for (statement,) in ddl)
        self.episodes: dict[str, int] = {}
        self.subgoals: dict[str, int] = {}
        self.tags: dict[str, int] = {}
        self.next_id = 1

    @staticmethod
    def _ids(known: dict[str, int], names: tuple[str, ...]) -> list[int]:
        return [known.setdefault(name, len(known) + 1) for name in names]

    def rows(self, b: EncodedBatch) -> tuple[list[tuple], list[tuple[int, int]]]:
        """The attempt rows and tag rows ``add_encoded`` writes for ``b``, as plain tuples."""
        episodes = self._ids(self.episodes, b.episodes)
        subgoals = self._ids(self.subgoals, b.subgoals)
        tags = self._ids(self.tags, b.tags)
        first = self.next_id
        self.next_id += len(b)
        episode, start, end, subgoal, success, cause, condition, spatial, payload = b.attempts
        rows = list(zip(range(first, first + len(b)), [episodes[i] for i in episode], start,
                        end, [subgoals[i] for i in subgoal], success, cause, condition, spatial,
                        payload, strict=True))
        tag, tagged = b.tagged
        return rows, list(zip([tags[i] for i in tag], [first + i for i in tagged], strict=True))

    def write(self, rows: list[tuple], tag_rows: list[tuple[int, int]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.conn.executemany("INSERT INTO attempt_tags VALUES (?, ?)", tag_rows)
        self.conn.execute("COMMIT")


def ingest(owner: ExperienceStore, many: ExperienceStore, bare: Bare,
           pool: list[ExperienceTuple], n: int, batch: int) -> dict[str, float]:
    """Add ``n`` tuples (the pool, cycled, renamed per episode) to each; seconds spent in
    encode, owner (add_encoded), add_many and bare."""
    spent = dict.fromkeys(("encode", "owner", "add_many", "bare"), 0.0)
    clock = time.perf_counter
    for k, start in enumerate(range(0, n, batch)):
        ts = [pool[i % len(pool)] for i in range(start, min(start + batch, n))]
        for offset, t in enumerate(ts, start):
            t.episode = f"ep{offset // 300}"
        began = clock()
        encoded = encode_attempts(ts)
        spent["encode"] += clock() - began
        rows, tag_rows = bare.rows(encoded)
        writes = (("owner", owner.add_encoded, (encoded,)), ("bare", bare.write, (rows, tag_rows)))
        for kind, write, args in writes if k % 2 == 0 else writes[::-1]:
            began = clock()
            write(*args)
            spent[kind] += clock() - began
        del rows, tag_rows, encoded, writes
        began = clock()
        many.add_many(ts)
        spent["add_many"] += clock() - began
    return spent


def paired(store_call: Callable, bare_call: Callable, keys: list[tuple]
           ) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``store_call(k)`` and ``bare_call(b)`` for each (k, b) in ``keys``,
    alternating which goes first."""
    ours: list[float] = []
    theirs: list[float] = []
    for i, (key, bare_key) in enumerate(keys):
        order = ((store_call, key, ours), (bare_call, bare_key, theirs))
        for call, arg, out in order if i % 2 == 0 else order[::-1]:
            began = time.perf_counter()
            call(arg)
            out.append((time.perf_counter() - began) * 1e3)
    return ours, theirs


def timed(call: Callable, keys: list) -> list[float]:
    out = []
    for key in keys:
        began = time.perf_counter()
        call(key)
        out.append((time.perf_counter() - began) * 1e3)
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def line(name: str, lat: list[float], target: str = "", raw: list[float] | None = None) -> str:
    text = f"  {name:<34} p50 {pct(lat, .5):7.3f} ms   p99 {pct(lat, .99):7.3f} ms"
    if raw is not None:
        text += f"   (p99 {pct(lat, .99) / pct(raw, .99):4.2f}x bare)"
    return text + (f"   target p99 <= {target}" if target else "")


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuples", type=int, default=1_000_000, help="tuples to ingest")
    parser.add_argument("--path", type=Path, help="store file (default: a temporary one)")
    parser.add_argument("--batch", type=int, default=2000, help="tuples per batch")
    parser.add_argument("--pool", type=int, default=20_000, help="distinct tuples generated")
    parser.add_argument("--situations", type=int, default=3000,
                        help="distinct pre-state situations (bounds distinct conditions)")
    parser.add_argument("--lookups", type=int, default=3000, help="lookups per kind")
    parser.add_argument("--limit", type=int, default=50, help="hits per lookup")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    path = args.path or workdir / "store.db"
    if path.exists():
        parser.error(f"{path} exists; pass a new --path")
    pool = make_pool(args.pool, args.situations, args.seed)
    gc.collect()
    gc.freeze()
    rng = random.Random(args.seed + 1)
    sample = [rng.choice(pool) for _ in range(args.lookups)]  # keys as often as they occur
    print(f"{args.tuples:,} tuples, batches of {args.batch}, "
          f"{len({t.condition for t in pool}):,} distinct conditions, "
          f"{len({tag for t in pool for tag in t.tags})} tags, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}")

    with ExperienceStore(path) as store, ExperienceStore(workdir / "many.db") as many:
        bare = Bare(workdir / "bare.db", store._conn)
        spent = ingest(store, many, bare, pool, args.tuples, args.batch)
        rate = {kind: args.tuples / seconds for kind, seconds in spent.items()}
        conn = store._conn
        payload = conn.execute(
            "SELECT avg(length(payload)) FROM attempts WHERE id <= 1000").fetchone()[0]
        summaries = conn.execute("SELECT count(*) FROM summaries").fetchone()[0]
        limit = args.limit
        tags = [rng.choice(rng.choice(sample).tags) for _ in range(args.lookups)]
        lat_cond, bare_cond = paired(
            lambda k: store.by_condition(k, limit=limit),
            lambda k: bare.conn.execute(BY_CONDITION, (k, limit)).fetchall(),
            [(t.condition, t.condition) for t in sample])
        lat_cond_dec = timed(lambda t: list(store.by_condition(t.condition, limit=limit)),
                             sample)
        lat_first = timed(lambda t: store.by_condition(t.condition, limit=limit)[:1], sample)
        lat_sub, bare_sub = paired(
            lambda t: store.by_condition(t.condition, t.subgoal.key, limit=limit),
            lambda k: bare.conn.execute(BY_CONDITION_SUBGOAL, (*k, limit)).fetchall(),
            [(t, (t.condition, bare.subgoals[t.subgoal.key])) for t in sample])
        lat_tag, bare_tag = paired(
            lambda k: store.by_tag(k, limit=limit),
            lambda k: bare.conn.execute(BY_TAG, (k, limit)).fetchall(),
            [(tag, bare.tags[tag]) for tag in tags])
        lat_spatial, bare_spatial = paired(
            lambda k: store.by_spatial(k, limit=limit),
            lambda k: bare.conn.execute(BY_SPATIAL, (k, limit)).fetchall(),
            [(t.spatial, t.spatial) for t in sample])
        lat_summary = timed(lambda t: store.summary(t.subgoal.key, t.condition), sample)
        load = os.getloadavg()[0]
        hits = statistics.mean(len(store.by_condition(t.condition, limit=limit))
                               for t in sample)
        same = ("SELECT count(*), sum(length(payload)), sum(episode), sum(subgoal), "
                "sum(step_start), sum(success), total(condition), sum(spatial) FROM attempts")
        same_tags = "SELECT count(*), sum(tag), sum(attempt) FROM attempt_tags"
        for query in (same, same_tags):
            ours, theirs = conn.execute(query).fetchone(), bare.conn.execute(query).fetchone()
            if ours != theirs:
                raise SystemExit(f"the bare file does not hold what the store does: {query} "
                                 f"gives {ours} against {theirs}")
        bare.conn.close()
    sizes = file_size(path), file_size(workdir / "bare.db")

    print(f"store file {sizes[0] / 1e6:,.0f} MB (bare {sizes[1] / 1e6:,.0f} MB), payload "
          f"{payload:.0f} B/tuple avg, {summaries:,} tier-2 rows")
    print(f"ingest (bare: the same attempt and tag rows, {bare.indexes} indexes, pragmas and "
          "batches; no names, no tier 2)")
    owner, bare_rate = rate["owner"], rate["bare"]
    print(f"  owner add_encoded (encoded batches) {owner:10,.0f} tuples/s   "
          f"({owner / bare_rate:.2f}x bare)   target >= {TARGET_INGEST}x bare")
    print(f"  add_many (encoding included)        {rate['add_many']:10,.0f} tuples/s   "
          f"({rate['add_many'] / bare_rate:.2f}x bare)")
    print(f"  encode_attempts alone (worker side) {rate['encode']:10,.0f} tuples/s")
    print(f"  bare SQLite                         {bare_rate:10,.0f} rows/s")
    print(f"lookups over {args.lookups} random keys, limit {limit} (mean {hits:.1f} hits), "
          f"each beside the same SQL on the bare file; load average {load:.1f} on "
          f"{os.cpu_count()} CPUs (other processes' time shows in the p99s)")
    print(line("by_condition (ids + payloads)", lat_cond, f"{TARGET_P99}x bare", bare_cond))
    print(line("by_condition + decode first", lat_first))
    print(line("by_condition + decode all", lat_cond_dec))
    print(line("by_condition with subgoal", lat_sub, raw=bare_sub))
    print(line("by_tag", lat_tag, raw=bare_tag))
    print(line("by_spatial", lat_spatial, raw=bare_spatial))
    print(line("summary(subgoal, condition)", lat_summary))
    print(line("bare SQLite indexed lookup", bare_cond))
    for p in workdir.iterdir():
        p.unlink()
    workdir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
