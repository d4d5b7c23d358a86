"""The experience store when things go wrong, on real SQLite files and real processes.

- A file that is not a Cairn store is never written to: it is identified through a
  read-only connection and left byte for byte as it was.
- Any number of processes may create, open and write one store at once: none fails, the
  schema is created once, versions of one skill or guardrail stay consecutive, no attempt
  is lost.
- Every unusable store is one StoreError line naming the file and what to do: locked (wait
  and try again), read-only file or folder (make it writable; caught when the store is
  opened for writing), damaged or foreign (move it aside), a folder or a path under a file.

Processes are forked (``multiprocessing`` "fork"), so they start in milliseconds with the
modules already imported and meet at a barrier. Read-only files and folders need a user
that permissions apply to: when the tests run as root, the process that opens the store
drops to ``nobody`` first.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.experience.store import ExperienceStore, StoreError
from cairn.experience.store_schema import APPLICATION_ID, SCHEMA_VERSION
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import GuardrailSet
from cairn.skills.library import SkillLibrary
from cairn.skills.model import Skill

pytestmark = pytest.mark.fault

FORK = multiprocessing.get_context("fork")
NOBODY = 65534


# -- helpers -------------------------------------------------------------------------------

def attempt(episode: str, step: int, subgoal: str = "tree") -> ExperienceTuple:
    state = State(step=step, position=(step % 7, 3), facing=(0, 1), counters={"wood": 1},
                  facing_kind="tree", near=[["grass"] * 3] * 3, visible=["tree"], tags=[])
    ok = step % 2 == 0
    diagnosis = Diagnosis(success=ok, cause=Cause.SUCCESS if ok else Cause.NO_EFFECT,
                          counter_deltas={"wood": 1} if ok else {}, reward=0.0,
                          changed_tiles=[], progress=float(ok), distance=None,
                          health_delta=0, steps=1)
    return ExperienceTuple(episode, step, step + 1, state, Subgoal("interact", subgoal), [5],
                           diagnosis, state)


def in_processes(target: Callable, n: int, *args) -> list:
    """Run ``target(barrier, i, *args)`` in ``n`` forked processes that start together;
    returns what each returned (or the repr of what it raised), in process order."""
    barrier = FORK.Barrier(n)
    results = FORK.Queue()

    def run(i: int) -> None:
        try:
            results.put((i, target(barrier, i, *args)))
        except BaseException as exc:  # reported, not lost in a child's stderr
            results.put((i, f"raised {type(exc).__name__}: {exc}"))

    procs = [FORK.Process(target=run, args=(i,)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        found = dict(results.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [found[i] for i in range(n)]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in a folder, byte for byte (sidecar files included)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(path: Path, **kwargs) -> str:
    """The StoreError message of opening ``path``; it must be one line naming the file."""
    with pytest.raises(StoreError) as err:
        ExperienceStore(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    return message


def foreign_database(path: Path, journal: str = "delete") -> None:
    """Another program's SQLite file: a table, some rows, its own journal mode."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE songs (title TEXT, year INTEGER)")
    conn.executemany("INSERT INTO songs VALUES (?, ?)", [(f"song {i}", 1960 + i)
                                                          for i in range(200)])
    conn.commit()
    conn.close()


# -- 1. nothing is written to a file that is not a Cairn store -----------------------------

@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_foreign_sqlite_file_is_left_byte_identical(tmp_path, journal):
    path = tmp_path / "music.sqlite"
    foreign_database(path, journal)
    before = path.read_bytes()
    files = snapshot(tmp_path)
    for writable in (True, False):
        message = refused(path, writable=writable)
        assert "is a SQLite database but not a Cairn experience store" in message
        assert message.endswith("move it aside or pass another --store")
    assert path.read_bytes() == before  # header bytes 18-19 (journal mode) included
    if journal == "delete":  # a WAL file's readers may leave SQLite's own -wal/-shm files
        assert snapshot(tmp_path) == files
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
    assert conn.execute("SELECT count(*) FROM songs").fetchone()[0] == 200
    conn.close()


@pytest.mark.parametrize("head", [b"", b"SQLite format 3\x00"], ids=["random", "sqlite-magic"])
def test_a_file_of_random_bytes_is_left_byte_identical(tmp_path, head):
    path = tmp_path / "noise.db"
    path.write_bytes(head + random.Random(3).randbytes(8192 - len(head)))
    files = snapshot(tmp_path)
    message = refused(path)
    assert "not a Cairn experience store" in message or "not a readable" in message
    assert message.endswith("move it aside or pass another --store")
    assert snapshot(tmp_path) == files


def test_a_file_marked_as_a_store_but_without_its_tables_is_refused_untouched(tmp_path):
    path = tmp_path / "hollow.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("CREATE TABLE unrelated (x)")
    conn.commit()
    conn.close()
    files = snapshot(tmp_path)
    message = refused(path)
    assert "lacks its tables (attempt_tags, attempts, episodes" in message
    assert snapshot(tmp_path) == files


def test_an_empty_file_is_a_new_store_but_not_for_reading(tmp_path):
    """A 0-byte file is what SQLite calls an empty database and what another process that
    is creating the store leaves for a moment: opening it for writing makes it a store."""
    path = tmp_path / "touched.sqlite"
    path.touch()
    assert "no experience store at" in refused(path, writable=False)
    assert path.stat().st_size == 0
    with ExperienceStore(path) as store:
        assert store.created and store.count() == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()
    with ExperienceStore(path) as again:
        assert not again.created


def test_a_store_killed_mid_run_is_identified_and_read_whole(tmp_path):
    """Identifying reads through a read-only connection; a writer killed with SIGKILL leaves
    its committed batches in the -wal file, and they must still be seen."""
    path = tmp_path / "killed.sqlite"
    script = (
        "import os, signal, sys\n"
        "sys.path[:0] = [sys.argv[2]]\n"
        "from test_store_faults import attempt\n"
        "from cairn.experience.store import ExperienceStore\n"
        "s = ExperienceStore(sys.argv[1])\n"
        "for b in range(5):\n"
        "    s.add_many([attempt('killed', b * 10 + i) for i in range(10)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(Path(__file__).parent)],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / "killed.sqlite-wal").stat().st_size > 0  # not checkpointed
    with ExperienceStore(path, writable=False) as reader:
        assert reader.count() == 50
    with ExperienceStore(path) as store:
        assert [t.step_start for t in store.by_episode("killed")] == list(range(50))


# -- 2. many processes on one store ------------------------------------------------------

def _open_new(barrier, i, path):
    barrier.wait()
    with ExperienceStore(path) as store:
        return store.created


@pytest.mark.parametrize("start", ["missing", "empty-file"])
def test_many_processes_creating_one_store_at_once_all_succeed(tmp_path, start):
    path = tmp_path / "shared.sqlite"
    if start == "empty-file":
        path.touch()
    created = in_processes(_open_new, 80, path)
    assert [c for c in created if c not in (True, False)] == []  # no process failed
    assert created.count(True) == 1  # the schema was created once
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 1
    conn.close()


HOLD = """
import sqlite3, sys, time

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
for statement in sys.argv[3:]:
    conn.execute(statement)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def hold(path: Path, seconds: float, *statements: str) -> subprocess.Popen:
    """Another process (plain sqlite3) that holds a lock on ``path`` for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds), *statements],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "holding\n"
    return proc


def test_a_new_store_waits_for_a_process_holding_its_write_lock(tmp_path):
    """Switching a new file to WAL takes the write lock while holding a read lock, and SQLite
    answers "busy" at once there instead of waiting: the store must wait anyway."""
    path = tmp_path / "new.sqlite"
    holder = hold(path, 0.5, "BEGIN IMMEDIATE")
    started = time.monotonic()
    with ExperienceStore(path) as store:
        assert store.created
        assert time.monotonic() - started >= 0.3  # it waited for the holder
    assert holder.wait(timeout=10) == 0


def _save_skill_versions(barrier, i, path, rounds):
    with ExperienceStore(path) as store:
        library = SkillLibrary(store.knowledge)
        barrier.wait()
        versions = []
        for n in range(rounds):  # a new precondition each time: a new version each time
            skill = Skill("interact:tree", [{"controller": "interact"}], [f"p{i}-{n}"],
                          ["wood+1"], successes=n, attempts=n + 1, rewarded=0)
            versions.append(library.update(skill).version)
        barrier.wait()  # everyone has written; now all save the same body at once
        same = Skill("interact:tree", [{"controller": "interact"}], ["shared"], ["wood+1"],
                     successes=1, attempts=1, rewarded=0)
        versions.append(library.update(same).version)
        return versions


def test_processes_saving_one_skill_at_once_get_consecutive_versions(tmp_path):
    path = tmp_path / "skills.sqlite"
    ExperienceStore(path).close()
    n, rounds = 8, 10
    results = in_processes(_save_skill_versions, n, path, rounds)
    assert all(isinstance(r, list) for r in results), results  # nobody raised
    with ExperienceStore(path) as store:
        history = store.knowledge.history("skill", "interact:tree")
    total = n * rounds + 1  # every distinct body once, the shared body once
    assert [e.version for e in history] == list(range(1, total + 1))
    written = sorted(e.body["preconditions"][0] for e in history[:-1])
    assert written == sorted(f"p{i}-{k}" for i in range(n) for k in range(rounds))
    assert history[-1].body["preconditions"] == ["shared"]
    assert {r[-1] for r in results} == {total}  # each process was told the shared version
    for r in results:  # each process saw its own versions rise
        assert r[:-1] == sorted(r[:-1]) and len(set(r[:-1])) == rounds


def _save_guardrail_versions(barrier, i, path, rounds):
    with ExperienceStore(path) as store:
        guards = GuardrailSet(store.knowledge)
        barrier.wait()
        versions = []
        for n in range(rounds):  # another root cause each time: a new version each time
            guard = Guardrail(f"cause-{i}-{n}", "", Trigger(["wood>=1"]), "subgoal use:table",
                              "subgoal", [i * 100 + n])
            versions.append(guards.update(guard).version)
        return versions


def test_processes_saving_one_guardrail_at_once_get_consecutive_versions(tmp_path):
    path = tmp_path / "guards.sqlite"
    ExperienceStore(path).close()
    n, rounds = 8, 10
    results = in_processes(_save_guardrail_versions, n, path, rounds)
    assert all(isinstance(r, list) for r in results), results
    with ExperienceStore(path) as store:
        (current,) = store.knowledge.current("guardrail")
        history = store.knowledge.history("guardrail", current.key)
    assert [e.version for e in history] == list(range(1, n * rounds + 1))
    assert sorted(e.body["root_cause"] for e in history) == sorted(
        f"cause-{i}-{k}" for i in range(n) for k in range(rounds))


def _append(barrier, i, path, batches):
    with ExperienceStore(path) as store:
        barrier.wait()
        step = 0
        for b in range(batches):
            size = 1 + (i + b) % 4
            batch = [attempt(f"ep{i}", step + k, subgoal=f"s{k % 3}") for k in range(size)]
            if size == 1:
                store.add(batch[0])
            else:
                store.add_many(batch)
            step += size
        return step


def test_processes_appending_attempts_at_once_lose_none(tmp_path):
    path = tmp_path / "attempts.sqlite"
    ExperienceStore(path).close()
    n, batches = 8, 25
    written = in_processes(_append, n, path, batches)
    assert all(isinstance(w, int) for w in written), written
    with ExperienceStore(path) as store:
        assert store.count() == sum(written)
        ids = set()
        for i, steps in enumerate(written):
            episode = store.by_episode(f"ep{i}")
            assert [t.step_start for t in episode] == list(range(steps))  # all, in order
            ids.update(episode.ids)
        assert ids == set(range(1, sum(written) + 1))
        assert sum(s.attempts for s in store.subgoal_stats().values()) == sum(written)


# -- 3. one line for each way a store cannot be used ---------------------------------------

@pytest.mark.parametrize("how", ["store in exclusive locking mode", "new store being written"])
def test_a_locked_store_says_it_is_locked(tmp_path, how):
    path = tmp_path / "busy.sqlite"
    if how == "store in exclusive locking mode":
        ExperienceStore(path).close()
        holder = hold(path, 3, "PRAGMA locking_mode = EXCLUSIVE", "BEGIN EXCLUSIVE")
    else:  # the lock that used to read "move it aside"
        holder = hold(path, 3, "BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        message = refused(path, timeout=0.3)
        assert time.monotonic() - started < 5  # its own timeout, not the default 10 s
        assert message == (f"{path} is locked by another process (still busy after waiting "
                           "for 0.3 s); wait for that process to finish and try again")
    finally:
        holder.kill()
        holder.wait()
    with ExperienceStore(path) as store:  # nothing was harmed
        assert store.count() == 0


def test_a_store_locked_while_writing_says_so(tmp_path):
    path = tmp_path / "busy.sqlite"
    with ExperienceStore(path, timeout=0.3) as store:
        holder = hold(path, 3, "BEGIN IMMEDIATE")
        try:
            with ExperienceStore(path, timeout=0.3) as other:  # opening takes no write lock
                assert other.count() == 0
            with pytest.raises(StoreError, match="busy.sqlite is locked by another process"):
                store.add(attempt("e", 0))
            with pytest.raises(StoreError, match="busy.sqlite is locked by another process"):
                store.knowledge.put("skill", "s", "active", {"a": 1})
        finally:
            holder.kill()
            holder.wait()
        store.add(attempt("e", 0))
        assert store.count() == 1


def test_a_folder_or_a_path_under_a_file_is_one_line(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    assert "is a folder, not a store file" in refused(folder)
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    for path in (plain / "exp.sqlite", plain / "deeper" / "exp.sqlite"):
        assert f"{plain} is a file, not a folder" in refused(path)
    assert plain.read_text() == "x"
    missing = tmp_path / "a" / "b" / "exp.sqlite"
    assert "does not exist" in refused(missing, writable=False)
    with ExperienceStore(missing) as store:  # for writing, missing folders are made
        assert store.created


def test_a_damaged_store_says_move_it_aside(tmp_path):
    path = tmp_path / "cut.sqlite"
    with ExperienceStore(path) as store:
        store.add_many([attempt("e", i) for i in range(300)])
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # the header kept, every page overwritten
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "is not a readable Cairn experience store" in message
    assert message.endswith("move it aside or pass another --store")
    assert path.read_bytes() == bytes(data)


@pytest.fixture
def shared_dir():
    """A folder the tests' unprivileged opener can reach (tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="cairn-ro-"))
    folder.chmod(0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(folder)


def as_unprivileged(fn: Callable, *args):
    """``fn(*args)`` in a forked process whose file permissions apply (root drops to
    nobody); returns what it returned, or a StoreError's message."""
    def run(barrier, i):
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        try:
            return fn(*args)
        except StoreError as err:
            return f"StoreError: {err}"

    (result,) = in_processes(run, 1)
    if isinstance(result, str) and result.startswith("raised PermissionError"):
        pytest.skip(f"cannot drop privileges here: {result}")
    return result


def _open_and_count(path, writable):
    with ExperienceStore(path, writable=writable) as store:
        return store.count()


def _make_store(path: Path, n: int) -> None:
    with ExperienceStore(path) as store:
        store.add_many([attempt("e", i) for i in range(n)])


def test_a_read_only_store_file_is_refused_for_writing_when_opened(shared_dir):
    path = shared_dir / "exp.sqlite"
    _make_store(path, 7)
    path.chmod(0o444)
    if os.geteuid() == 0:
        os.chown(shared_dir, NOBODY, NOBODY)  # the folder is writable, the file is not
    message = as_unprivileged(_open_and_count, path, True)
    assert message == (f"StoreError: {path} is read-only (the file is not writable); "
                       "make it writable or pass another --store")
    assert as_unprivileged(_open_and_count, path, False) == 7


def test_a_store_in_a_read_only_folder_is_refused_for_writing_and_read_as_it_is(shared_dir):
    folder = shared_dir / "ro"
    folder.mkdir()
    path = folder / "exp.sqlite"
    _make_store(path, 5)
    files = snapshot(folder)
    assert sorted(files) == ["exp.sqlite"]  # closed cleanly: no -wal, no -shm
    folder.chmod(0o555)
    message = as_unprivileged(_open_and_count, path, True)
    assert message == (
        f"StoreError: {path} cannot be written: its folder {folder} is not writable (SQLite "
        "creates exp.sqlite-wal and exp.sqlite-shm there); make the folder writable or pass "
        "another --store")
    assert as_unprivileged(_open_and_count, path, False) == 5  # read without the WAL files
    new = folder / "new.sqlite"
    assert as_unprivileged(_open_and_count, new, True) == (
        f"StoreError: cannot create experience store {new}: its folder {folder} is not "
        "writable; make the folder writable or pass another --store")
    assert snapshot(folder) == files


def test_a_store_opened_read_only_refuses_writes_and_leaves_no_wal_files(tmp_path):
    path = tmp_path / "exp.sqlite"
    _make_store(path, 3)
    files = snapshot(tmp_path)
    with ExperienceStore(path, writable=False) as store:
        with pytest.raises(StoreError, match="exp.sqlite was opened read-only"):
            store.add(attempt("e", 9))
        with pytest.raises(StoreError, match="exp.sqlite was opened read-only"):
            store.knowledge.put("skill", "s", "active", {"a": 1})
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # even by hand
            store._conn.execute("DELETE FROM attempts")
        assert store.count() == 3
    assert snapshot(tmp_path) == files  # no -wal or -shm left behind
