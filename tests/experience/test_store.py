"""The experience store on real SQLite files: round trips, lookups, statistics, bad files."""

from __future__ import annotations

import copy
import itertools
import json
import multiprocessing
import pickle
import random
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.experience.store import ExperienceStore, StoreError, encode_attempts
from cairn.experience.store_schema import APPLICATION_ID, SCHEMA_VERSION

KINDS = ["grass", "tree", "stone", "water", "table", None]
SUBGOALS = [Subgoal("interact", "tree"), Subgoal("interact", "stone"),
            Subgoal("place", "table"), Subgoal("explore")]


def make_state(rng: random.Random, step: int) -> State:
    return State(
        step=step,
        position=(rng.randint(0, 63), rng.randint(0, 63)),
        facing=rng.choice([(0, 1), (1, 0), (0, -1), (-1, 0)]),
        counters={"health": rng.randint(1, 9), "wood": rng.choice([0, 0, 1, 3])},
        facing_kind=rng.choice(KINDS),
        near=[[rng.choice(KINDS) for _ in range(3)] for _ in range(3)],
        visible=rng.sample(["grass", "tree", "stone", "water"], 2),
        tags=rng.choice([[], ["night"], ["night", "hungry"]]),
    )


def make_tuple(rng: random.Random, episode: str, step: int) -> ExperienceTuple:
    steps = rng.randint(1, 9)
    cause = rng.choice(list(Cause))
    diagnosis = Diagnosis(
        success=cause is Cause.SUCCESS, cause=cause,
        counter_deltas={"wood": 1} if cause is Cause.SUCCESS else {},
        reward=rng.choice([0.0, 1.0, -0.1]),
        changed_tiles=[(2, 3, "tree", "grass")] if rng.random() < 0.5 else [],
        progress=rng.random(), distance=rng.choice([None, 2.5]),
        health_delta=rng.randint(-2, 0), steps=steps, stagnation=rng.random() < 0.2,
        loop=rng.random() < 0.1, detail=rng.choice(["", "walked into water"]),
    )
    return ExperienceTuple(
        episode, step, step + steps, make_state(rng, step), rng.choice(SUBGOALS),
        [rng.randint(0, 16) for _ in range(steps)], diagnosis, make_state(rng, step + steps))


@pytest.fixture
def tuples() -> list[ExperienceTuple]:
    rng = random.Random(7)
    return [make_tuple(rng, f"ep{i // 40}", i) for i in range(200)]


@pytest.fixture
def store(tmp_path: Path, tuples: list[ExperienceTuple]) -> ExperienceStore:
    with ExperienceStore(tmp_path / "store.db") as s:
        s.add_many(tuples[:150])
        for t in tuples[150:]:
            s.add(t)
        yield s


def ids(ts) -> set[int]:
    return {t.id for t in ts}


def test_round_trip_keeps_every_field(store, tuples):
    assert store.count() == len(tuples)
    assert [t.id for t in tuples] == list(range(1, len(tuples) + 1))
    for t in tuples:
        back = store.get(t.id)
        assert back.to_dict() == t.to_dict()
        assert (back.condition, back.spatial, back.tags) == (t.condition, t.spatial, t.tags)
    assert store.get(10_000) is None


def test_condition_lookup_finds_exactly_its_tuples(store, tuples):
    for sig in {t.condition for t in tuples[:30]}:
        expected = [t for t in tuples if t.condition == sig]
        hits = store.by_condition(sig, limit=1000)
        assert hits.ids == sorted(ids(expected), reverse=True)  # newest first
        assert [h.to_dict() for h in hits] == [t.to_dict() for t in reversed(expected)]
        for sub in SUBGOALS:
            want = ids(t for t in expected if t.subgoal == sub)
            assert ids(store.by_condition(sig, sub.key, limit=1000)) == want
    assert len(store.by_condition(tuples[0].condition, limit=1)) == 1
    assert list(store.by_condition(12345)) == []
    assert list(store.by_condition(tuples[0].condition, "never:tried")) == []


def test_spatial_tag_and_episode_lookups(store, tuples):
    for cell in {t.spatial for t in tuples[:20]}:
        assert ids(store.by_spatial(cell, limit=1000)) == ids(
            t for t in tuples if t.spatial == cell)
    all_tags = {tag for t in tuples for tag in t.tags}
    assert {"night", "cause:success", "subgoal:explore", "facing:tree"} <= all_tags
    for tag in all_tags:
        assert ids(store.by_tag(tag, limit=1000)) == ids(t for t in tuples if tag in t.tags)
    hits = store.by_tag("night", limit=3)
    assert hits.ids == sorted(ids(t for t in tuples if "night" in t.tags), reverse=True)[:3]
    assert list(store.by_tag("no-such-tag")) == []
    episode = store.by_episode("ep2")
    assert [h.to_dict() for h in episode] == [t.to_dict() for t in tuples[80:120]]
    assert list(store.by_episode("ep-unknown")) == []


def test_newest_attempts_and_attempted_subgoals_come_back_in_store_order(store, tuples):
    """What a run reads to go on where another stopped: the newest attempts of all, newest
    first, and each subgoal once, in the order it was first stored."""
    assert [t.step_start for t in store.newest(7)] == [t.step_start for t in tuples[::-1][:7]]
    assert len(store.newest(1000)) == len(tuples)
    first_seen = list(dict.fromkeys(t.subgoal.key for t in tuples))
    assert store.subgoals() == first_seen and len(first_seen) > 1


def test_summaries_follow_successes_and_failures(store, tuples):
    for sub in SUBGOALS:
        mine = [t for t in tuples if t.subgoal == sub]
        stats = store.summary(sub.key)
        assert stats.attempts == len(mine)
        assert stats.successes == sum(t.diagnosis.success for t in mine)
        assert stats.mean_progress == pytest.approx(
            sum(t.diagnosis.progress for t in mine) / len(mine))
        assert stats.mean_steps == pytest.approx(
            sum(t.diagnosis.steps for t in mine) / len(mine))
        assert sum(stats.causes.values()) == len(mine)
        assert stats.causes.get("success", 0) == stats.successes
        assert stats.last_cause == str(mine[-1].diagnosis.cause)
        assert stats.last_episode == mine[-1].episode
        assert store.subgoal_stats()[sub.key] == stats
        sig = mine[0].condition
        under = [t for t in mine if t.condition == sig]
        one = store.summary(sub.key, sig)
        assert (one.condition, one.attempts) == (sig, len(under))
        assert one.successes == sum(t.diagnosis.success for t in under)
    assert store.summary("never:tried").attempts == 0
    assert store.summary("never:tried").success_rate == 0.0


def test_another_process_reads_what_one_wrote(tmp_path, tuples):
    path = tmp_path / "shared.db"
    with ExperienceStore(path) as writer:
        writer.add_many(tuples)
        with ExperienceStore(path) as reader:  # a second connection, open while writing
            assert reader.get(5).to_dict() == tuples[4].to_dict()
            writer.add(make_tuple(random.Random(1), "late", 0))
            assert reader.count() == len(tuples) + 1
    script = (
        "import sys, json\n"
        "from cairn.experience.store import ExperienceStore\n"
        "with ExperienceStore(sys.argv[1]) as s:\n"
        "    print(json.dumps([s.count(), s.get(7).to_dict(), s.summary('explore').attempts]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                         capture_output=True, text=True).stdout
    count, seventh, explores = json.loads(out)
    assert count == len(tuples) + 1
    assert seventh == json.loads(json.dumps(tuples[6].to_dict()))
    assert explores == sum(t.subgoal.key == "explore" for t in tuples)


def test_counts_agree_with_the_summaries_as_this_and_another_connection_write(tmp_path,
                                                                           tuples):
    """``counts`` under all conditions comes from a tally kept in memory: it must follow
    the writes of its own connection, and notice those of another one."""
    path = tmp_path / "tally.db"

    def agree(reader: ExperienceStore) -> None:
        for sub in SUBGOALS:
            stats = reader.summary(sub.key)
            assert reader.counts(sub.key) == (stats.attempts, stats.successes)
            sig = tuples[0].condition
            one = reader.summary(sub.key, sig)
            assert reader.counts(sub.key, sig) == (one.attempts, one.successes)
        assert reader.counts("never:tried") == (0, 0)

    with ExperienceStore(path) as mine, ExperienceStore(path) as other:
        mine.add_many(tuples[:50])
        agree(mine)  # the tally is made
        mine.add_many(tuples[50:100])
        agree(mine)  # ... and kept up by its own writes
        other.add_many(tuples[100:150])
        agree(mine)  # ... and made again after another connection's
        agree(other)
        mine.add(tuples[150])
        other.add_many(tuples[151:])
        agree(mine)
        agree(other)
        explores = sum(t.subgoal.key == "explore" for t in tuples)
        assert mine.counts("explore")[0] == explores > 0


def test_add_many_is_all_or_nothing(tmp_path, tuples):
    path = tmp_path / "atomic.db"
    with ExperienceStore(path) as s:
        s.add_many(tuples[:10])
        batch = tuples[10:20]
        for t in batch:
            t.episode = "fresh"  # a new name, interned inside the failing transaction
        batch[6].step_start = 2**70  # does not fit SQLite's INTEGER: fails mid-insert
        with pytest.raises(OverflowError):
            s.add_many(batch)
        assert s.count() == 10
        assert all(t.id is None for t in batch)
        assert s.summary(batch[0].subgoal.key).attempts == sum(
            t.subgoal == batch[0].subgoal for t in tuples[:10])
        assert list(s.by_episode("fresh")) == []
        batch[6].step_start = 16
        assert s.add_many(batch) == list(range(11, 21))
        assert s.get(17).to_dict() == batch[6].to_dict()
        assert [t.id for t in s.by_episode("fresh")] == list(range(11, 21))


def test_garbage_file_is_refused_with_its_path(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="notes.db.*not a Cairn experience store"):
        ExperienceStore(path)


def test_truncated_store_is_refused(tmp_path, tuples):
    path = tmp_path / "cut.db"
    with ExperienceStore(path) as s:
        s.add_many(tuples)
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 3000)  # header kept, pages overwritten
    with pytest.raises(StoreError, match="cut.db"):
        ExperienceStore(path)


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="other.sqlite.*not a Cairn experience store"):
        ExperienceStore(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    ExperienceStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"future.db.*version {SCHEMA_VERSION + 1}.*upgrade"):
        ExperienceStore(path)


def test_new_store_is_marked_and_versioned(tmp_path):
    path = tmp_path / "new.db"
    ExperienceStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with ExperienceStore(path) as again:  # reopening an up-to-date store changes nothing
        assert again.count() == 0


def test_a_version_1_store_is_migrated_to_tier_3(tmp_path, monkeypatch, tuples):
    from cairn.experience import store_schema
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:  # write a store as version 1 of the schema knew it
        m.setattr(store_schema, "MIGRATIONS", {1: store_schema.MIGRATIONS[1]})
        m.setattr(store_schema, "SCHEMA_VERSION", 1)
        with ExperienceStore(path) as s:
            s.add_many(tuples[:5])
            assert s._conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with ExperienceStore(path) as s:
        assert s.count() == 5
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.knowledge.current("skill") == []
        assert s.knowledge.put("skill", "interact:tree", "active", {"a": 1}) == 1


def test_effects_written_under_older_names_read_back_in_todays_vocabulary(tmp_path, tuples):
    """Stores and recordings from before one effect vocabulary still open and mean the same:
    ``tile:a>b`` (the target's change of kind) and ``<name>:dr,dc`` (a change at an offset)."""
    from cairn.skills.model import Skill

    old = tuples[0]
    old.diagnosis.effects = ["wood+1", "tile:grass>table", "flip:-1,0", "reward"]
    with ExperienceStore(tmp_path / "old.db") as s:
        (attempt_id,) = s.add_many([old])
        back = s.get(attempt_id)
    assert back.diagnosis.effects == [
        "wood+1", "changed:0,0:grass>table", "changed:-1,0", "reward"]
    skill = Skill.from_dict({"subgoal": "use:place", "procedure": [], "preconditions": [],
                             "verification": ["tile:grass>table"], "successes": 2,
                             "attempts": 2, "rewarded": 0})
    assert skill.verification == ["changed:0,0:grass>table"] and skill.creates() == ["table"]


# -- the split write path: encode anywhere, write in the owning process --------------------

def written(store: ExperienceStore) -> dict:
    """Everything tiers 1 and 2 hold, with names in place of interned ids and payloads
    unpickled; summaries without their wall-clock ``updated_at``."""
    conn = store._conn
    attempts = [(*row[:-1], pickle.loads(row[-1])) for row in conn.execute(
        "SELECT a.id, e.name, a.step_start, a.step_end, s.key, a.success, a.cause, "
        "a.condition, a.spatial, a.payload FROM attempts AS a "
        "JOIN episodes AS e ON e.id = a.episode JOIN subgoals AS s ON s.id = a.subgoal "
        "ORDER BY a.id")]
    tags = set(conn.execute("SELECT g.name, t.attempt FROM attempt_tags AS t "
                            "JOIN tags AS g ON g.id = t.tag"))
    summaries = {row[:3]: row[3:] for row in conn.execute(
        "SELECT s.key, m.condition, m.cause, m.attempts, m.successes, m.progress_sum, "
        "m.steps_sum, m.last_attempt, e.name FROM summaries AS m "
        "JOIN subgoals AS s ON s.id = m.subgoal JOIN episodes AS e ON e.id = m.last_episode")}
    return {"attempts": attempts, "tags": tags, "summaries": summaries}


def expected(batches: list[list[ExperienceTuple]]) -> dict:
    """What storing ``batches`` in order must leave, worked out from the tuples alone."""
    attempts, tags, summaries = [], set(), {}
    for attempt_id, t in enumerate((t for batch in batches for t in batch), 1):
        d = t.to_dict()
        del d["id"]
        cause = str(t.diagnosis.cause)
        attempts.append((attempt_id, t.episode, t.step_start, t.step_end, t.subgoal.key,
                         int(t.diagnosis.success), cause, t.condition, t.spatial, d))
        tags.update((tag, attempt_id) for tag in t.tags)
        n, ok, progress, steps, _, _ = summaries.get(
            (t.subgoal.key, t.condition, cause), (0, 0, 0.0, 0, 0, ""))
        summaries[(t.subgoal.key, t.condition, cause)] = (
            n + 1, ok + t.diagnosis.success, progress + t.diagnosis.progress,
            steps + t.diagnosis.steps, attempt_id, t.episode)
    approx = {key: (*row[:2], pytest.approx(row[2]), *row[3:]) for key, row in summaries.items()}
    return {"attempts": attempts, "tags": tags, "summaries": approx}


def fresh_tuples(n: int = 200) -> list[ExperienceTuple]:
    rng = random.Random(7)
    ts = [make_tuple(rng, f"ep{i // 40}", i) for i in range(n)]
    for i in range(0, n, 5):  # attempts that share (subgoal, condition, cause) in a batch
        twin = copy.deepcopy(ts[i])
        twin.episode, twin.diagnosis.progress, twin.diagnosis.steps = "twin", 0.25, 3
        ts[i + 1] = twin
    return ts


def test_add_encoded_writes_what_add_many_writes_and_what_the_tuples_say(tmp_path):
    ts = fresh_tuples()
    batches = [ts[:120], ts[120:]]
    folded = {(t.subgoal.key, t.condition, str(t.diagnosis.cause)) for t in batches[0]}
    assert len(folded) < len(batches[0])  # some tier-2 rows fold several attempts
    want = expected(batches)
    with ExperienceStore(tmp_path / "many.db") as many:
        assert [many.add_many(b) for b in batches] == [list(range(1, 121)),
                                                        list(range(121, 201))]
        assert [t.id for t in ts] == list(range(1, 201))
        assert written(many) == want
        by_many = [written(many), [many.by_condition(t.condition).ids for t in ts[:20]],
                   [many.by_tag(tag).ids for tag in ts[3].tags], many.subgoal_stats()]
    ts = fresh_tuples()
    with ExperienceStore(tmp_path / "encoded.db") as owner:
        assert [owner.add_encoded(encode_attempts(b)) for b in (ts[:120], ts[120:])] == [
            list(range(1, 121)), list(range(121, 201))]
        assert all(t.id is None for t in ts)  # the tuples never reached the owner
        by_owner = [written(owner), [owner.by_condition(t.condition).ids for t in ts[:20]],
                    [owner.by_tag(tag).ids for tag in ts[3].tags], owner.subgoal_stats()]
    assert by_owner[:3] == by_many[:3]
    assert {k: replace(s, updated_at=None) for k, s in by_owner[3].items()} == {
        k: replace(s, updated_at=None) for k, s in by_many[3].items()}


def test_batches_encoded_in_other_processes_are_written_by_the_owner(tmp_path):
    ts = fresh_tuples()
    batches = [ts[i:i + 50] for i in range(0, len(ts), 50)]
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        encoded = workers.map(encode_attempts, batches)
    assert encoded == [encode_attempts(b) for b in batches]
    assert pickle.loads(pickle.dumps(encoded[0])) == encoded[0]
    with ExperienceStore(tmp_path / "owner.db") as owner:
        for batch in encoded:
            owner.add_encoded(batch)
        assert written(owner) == expected(batches)


def test_a_batch_is_plain_columns_with_each_name_once():
    ts = fresh_tuples(10)
    batch = encode_attempts(ts)
    assert len(batch) == 10 and all(len(column) == 10 for column in batch.attempts)
    assert batch.episodes == ("ep0", "twin")
    assert sorted(batch.subgoals) == sorted({t.subgoal.key for t in ts})
    episode, _, _, subgoal, *_ = batch.attempts
    assert [batch.episodes[i] for i in episode] == [t.episode for t in ts]
    assert [batch.subgoals[i] for i in subgoal] == [t.subgoal.key for t in ts]
    tag, tagged = batch.tagged
    assert sorted((batch.tags[k], i) for k, i in zip(tag, tagged, strict=True)) == sorted(
        (name, i) for i, t in enumerate(ts) for name in t.tags)
    runs = [batch.tags[k] for k, _ in itertools.groupby(tag)]
    assert len(runs) == len(set(runs))  # grouped by tag
    assert len(encode_attempts([])) == 0


def test_a_failed_batch_leaves_nothing_behind_and_no_stale_name(tmp_path):
    path = tmp_path / "atomic.db"
    ts = fresh_tuples(40)
    with ExperienceStore(path) as owner, ExperienceStore(path) as other:
        owner.add_encoded(encode_attempts(ts[:10]))
        before = written(owner)
        for t in ts[10:20]:
            t.episode = "fresh"  # a new name, interned inside the failing transaction
        good = encode_attempts(ts[10:20])
        *columns, progress, steps, last, episode = good.groups
        bad = replace(good, groups=(*columns, (object(),) * len(progress), steps, last,
                                    episode))  # fails at tier 2, after the attempt rows
        with pytest.raises(sqlite3.ProgrammingError):
            owner.add_encoded(bad)
        assert written(owner) == before
        assert owner._conn.execute("SELECT count(*) FROM episodes WHERE name = 'fresh'"
                                   ).fetchone()[0] == 0
        between = replace(ts[20], episode="other")  # takes the id "fresh" had for a moment
        other.add_encoded(encode_attempts([between]))
        assert owner.add_encoded(good) == list(range(12, 22))
        assert owner.by_episode("fresh").ids == list(range(12, 22))
        assert owner.by_episode("other").ids == [11]
        assert written(owner) == expected([ts[:10], [between], ts[10:20]])


def test_a_malformed_or_foreign_batch_is_refused_before_writing(tmp_path):
    ts = fresh_tuples(20)
    batch = encode_attempts(ts)
    episode, *rest = batch.attempts
    tag, tagged = batch.tagged
    broken = [
        replace(batch, episodes=batch.episodes[:1]),  # a position past the names
        replace(batch, attempts=((-1, *episode[1:]), *rest)),  # would name the last one
        replace(batch, attempts=(episode[:-1], *rest)),  # a column short
        replace(batch, tagged=(tag, tuple(i + 20 for i in tagged))),  # past the batch
        replace(batch, groups=batch.groups[:8]),  # a column missing
    ]
    with ExperienceStore(tmp_path / "s.db") as store:
        for b in broken:
            with pytest.raises(ValueError, match="malformed EncodedBatch"):
                store.add_encoded(b)
        with pytest.raises(TypeError, match="takes an EncodedBatch, not list"):
            store.add_encoded(ts)
        assert store.count() == 0
        assert store.add_encoded(encode_attempts([])) == []
        assert store.add_encoded(batch) == list(range(1, 21))


def test_a_read_only_store_refuses_encoded_batches(tmp_path):
    path = tmp_path / "ro.db"
    ExperienceStore(path).close()
    with ExperienceStore(path, writable=False) as store:
        with pytest.raises(StoreError, match="ro.db was opened read-only"):
            store.add_encoded(encode_attempts(fresh_tuples(3)))
        assert store.count() == 0
