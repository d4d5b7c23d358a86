"""Experience store: ingest rate and lookup latency, beside bare SQLite in the same run.

    python -m bench.store --tuples 1000000

Ingest times ``ExperienceStore.add_many`` alone (encoding, interning, tags and the tier-2
UPSERT included). Lookups time the user-facing call (query plus fetch of ids and encoded
payloads, newest first); "+decode" also turns every hit into an ExperienceTuple. The bare
table (integer key, index on it, blob of the same size) is SQLite's own floor.
"""

from __future__ import annotations

import argparse
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
from cairn.experience.store import ExperienceStore

TARGET_INGEST = 50_000  # tuples/s
TARGET_P99_MS = 0.25  # by condition signature, at 1M tuples

KINDS = ["grass", "sand", "tree", "water", "stone", "coal", "iron", "table", "path", None]
ITEMS = ["sapling", "wood", "stone", "coal", "iron", "diamond", "wood_pickaxe",
         "stone_pickaxe", "wood_sword"]
SUBGOALS = ([Subgoal("interact", k) for k in ("tree", "stone", "coal", "iron", "water")]
            + [Subgoal("place", k) for k in ("table", "furnace", "stone")]
            + [Subgoal("make", k) for k in ("wood_pickaxe", "stone_pickaxe")]
            + [Subgoal("explore"), Subgoal("sleep")])
STATE_TAGS = [[], [], ["night"], ["hungry"], ["night", "thirsty"]]


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


def ingest(store: ExperienceStore, pool: list[ExperienceTuple], n: int, batch: int) -> float:
    """Add ``n`` tuples (the pool, cycled, renamed per episode); returns seconds in add_many."""
    spent = 0.0
    for start in range(0, n, batch):
        ts = [pool[i % len(pool)] for i in range(start, min(start + batch, n))]
        for offset, t in enumerate(ts, start):
            t.episode = f"ep{offset // 300}"
        began = time.perf_counter()
        store.add_many(ts)
        spent += time.perf_counter() - began
    return spent


def raw_sqlite(path: Path, keys: list[int], payload_size: int, n: int, batch: int,
               lookups: list[int], limit: int) -> tuple[float, list[float]]:
    """A bare indexed table with the same settings: rows/s and lookup latencies (ms)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -131072",
                   "mmap_size = 4294967296"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB)")
    conn.execute("CREATE INDEX raw_k ON raw (k)")
    blob = os.urandom(payload_size)
    spent = 0.0
    for start in range(0, n, batch):
        rows = [(i + 1, keys[i % len(keys)], blob) for i in range(start, min(start + batch, n))]
        began = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - began
    query = "SELECT id, v FROM raw WHERE k = ? ORDER BY id DESC LIMIT ?"
    latencies = timed(lambda k: conn.execute(query, (k, limit)).fetchall(), lookups)
    conn.close()
    return n / spent, latencies


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
        text += f"   (p99 {pct(lat, .99) / pct(raw, .99):4.1f}x raw)"
    return text + (f"   target p99 <= {target}" if target else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuples", type=int, default=1_000_000, help="tuples to ingest")
    parser.add_argument("--path", type=Path, help="store file (default: a temporary one)")
    parser.add_argument("--batch", type=int, default=2000, help="tuples per add_many call")
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
    rng = random.Random(args.seed + 1)
    sample = [rng.choice(pool) for _ in range(args.lookups)]  # keys as often as they occur
    conditions = [t.condition for t in sample]
    print(f"{args.tuples:,} tuples, batches of {args.batch}, "
          f"{len({t.condition for t in pool}):,} distinct conditions, "
          f"{len({tag for t in pool for tag in t.tags})} tags, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}")

    with ExperienceStore(path) as store:
        seconds = ingest(store, pool, args.tuples, args.batch)
        rate = args.tuples / seconds
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        payload = store._conn.execute(
            "SELECT avg(length(payload)) FROM attempts WHERE id <= 1000").fetchone()[0]
        tags = [rng.choice(rng.choice(sample).tags) for _ in range(args.lookups)]
        limit = args.limit
        lat_cond = timed(lambda k: store.by_condition(k, limit=limit), conditions)
        lat_cond_dec = timed(lambda k: list(store.by_condition(k, limit=limit)), conditions)
        lat_first = timed(lambda k: store.by_condition(k, limit=limit)[:1], conditions)
        lat_sub = timed(lambda t: store.by_condition(t.condition, t.subgoal.key, limit=limit),
                        sample)
        lat_tag = timed(lambda k: store.by_tag(k, limit=limit), tags)
        lat_spatial = timed(lambda t: store.by_spatial(t.spatial, limit=limit), sample)
        lat_summary = timed(lambda t: store.summary(t.subgoal.key, t.condition), sample)
        hits = statistics.mean(len(store.by_condition(k, limit=limit)) for k in conditions)

    raw_rate, lat_raw = raw_sqlite(workdir / "raw.db", conditions, int(payload), args.tuples,
                                   args.batch, conditions, limit)
    print(f"store file {size / 1e6:,.0f} MB, payload {payload:.0f} B/tuple avg")
    print("ingest (add_many)")
    print(f"  store {rate:10,.0f} tuples/s   target >= {TARGET_INGEST:,}"
          f"   ({rate / TARGET_INGEST:.2f}x target)")
    print(f"  bare  {raw_rate:10,.0f} rows/s     (store/bare = {rate / raw_rate:.2f})")
    print(f"lookups over {args.lookups} random keys, limit {limit} (mean {hits:.1f} hits)")
    print(line("by_condition (ids + payloads)", lat_cond, f"{TARGET_P99_MS} ms", lat_raw))
    print(line("by_condition + decode first", lat_first))
    print(line("by_condition + decode all", lat_cond_dec))
    print(line("by_condition with subgoal", lat_sub))
    print(line("by_tag", lat_tag))
    print(line("by_spatial", lat_spatial))
    print(line("summary(subgoal, condition)", lat_summary))
    print(line("bare SQLite indexed lookup", lat_raw))
    if args.path is None:
        for p in workdir.iterdir():
            p.unlink()
        workdir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
