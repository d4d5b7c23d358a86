"""Workers under a real local Ray cluster (2 CPUs, started here) playing real Crafter worlds
into one real store: what arrives, what the next batch knows, what a killed worker leaves."""

import dataclasses
import json
import os
import signal
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from cairn.envs.x11 import Terminated  # noqa: E402
from cairn.experience.episodes import load_episode  # noqa: E402
from cairn.experience.store import ExperienceStore  # noqa: E402
from cairn.runtime.config import load_config  # noqa: E402
from cairn.runtime.worker import EpisodeWorker  # noqa: E402
from cairn.runtime.workers import (  # noqa: E402
    LOST,
    MAX_DEATHS_IN_A_ROW,
    WorkerError,
    _deferred_interrupts,
    _terminate_as_interrupt,
    run_parallel,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def config(tmp_path, episodes, max_steps, workers=2):
    return load_config(ROOT / "configs" / "crafter.yaml", {
        "env.kwargs.area": [32, 32], "max_steps": max_steps, "episodes": episodes,
        "workers": workers, "store": str(tmp_path / "store.sqlite"), "seed": 3})


def play(tmp_path, cfg, on_progress=None):
    with ExperienceStore(cfg.store) as store:
        return run_parallel(cfg, store, tmp_path / "runs", "test", on_progress)


def test_two_workers_fill_one_store_and_later_episodes_know_earlier_ones(cluster, tmp_path):
    cfg = config(tmp_path, episodes=4, max_steps=150)
    run = play(tmp_path, cfg)

    assert [r.episode for r in run.results] == [f"crafter-test-e{i}" for i in range(4)]
    with ExperienceStore(cfg.store, writable=False) as store:
        per_episode = [len(store.by_episode(r.episode)) for r in run.results]
        assert per_episode == [r.attempts for r in run.results]
        assert all(n > 0 for n in per_episode)
        assert store.count() == sum(per_episode)
        skills = len(list(store.knowledge.current("skill")))
    # Each worker slot played every other episode, in its own process.
    assert [w.episodes for w in run.workers] == [2, 2]
    # Episodes 0 and 1 started from an empty store; episode 2 from what episode 0 taught,
    # episode 3 from what episodes 0 and 1 taught (its peer was still playing episode 2).
    assert run.known[0] == (0, 0)
    assert run.known[1][0] > 0 and run.known[2][0] >= run.known[1][0]
    assert run.knew == [run.known[0], run.known[0], run.known[1], run.known[2]]
    assert skills >= run.known[2][0]
    for i in range(4):
        episode = load_episode(tmp_path / "runs" / f"episode-{i:03d}")
        assert episode.finished and len(episode.actions) == run.results[i].steps


def test_a_worker_plays_frozen_but_experiments_when_its_owner_learns(tmp_path):
    learning = config(tmp_path, 1, 10)
    worker = EpisodeWorker(learning, 0, "run", None, tmp_path).config
    assert worker.learning == "frozen" and worker.experiments
    frozen = dataclasses.replace(learning, learning="frozen")
    assert not EpisodeWorker(frozen, 0, "run", None, tmp_path).config.experiments


def test_the_same_config_gives_the_same_run(cluster, tmp_path):
    """Episodes are dealt to worker slots by index and distilled in index order, so the
    timing of the workers cannot change what is learned or played."""
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        run = play(folder, config(folder, episodes=4, max_steps=120))
        runs.append([(r.steps, round(r.reward, 3), r.attempts, sorted(r.reached))
                     for r in run.results])
    assert runs[0] == runs[1]


def player_of(episode: Path) -> int | None:
    """The process writing an episode's recording (found through /proc, as a user would)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ray::EpisodeWorker" not in (entry / "cmdline").read_bytes():
                continue
            if any(str(episode) in os.readlink(fd) for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


def recorded_steps(episode: Path) -> int:
    try:
        return (episode / "steps.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def test_a_killed_worker_is_replaced_and_nothing_sent_is_lost(cluster, tmp_path):
    cfg = config(tmp_path, episodes=8, max_steps=300)
    killed: list[int] = []

    def kill_one(done: int, steps: int) -> None:
        """Once two episodes are done, kill the worker of the first one that is 10 steps in."""
        if killed or done < 2:
            return
        for episode in sorted((tmp_path / "runs").glob("episode-*")):
            meta = episode / "meta.json"
            if episode.name < "episode-002" or recorded_steps(episode) < 10 \
                    or not meta.exists() or json.loads(meta.read_text())["finished"]:
                continue
            pid = player_of(episode)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return

    run = play(tmp_path, cfg, kill_one)

    assert killed, "no worker was running to kill"
    assert len(run.results) == 8
    lost = [i for i, r in enumerate(run.results) if r.end == LOST]
    assert len(lost) == 1 and 2 <= lost[0] <= 5
    assert sum(w.replaced for w in run.workers) == 1
    # The replacement played the slot's later episode.
    assert run.results[lost[0] + 2].end != LOST and run.results[lost[0] + 2].steps > 0
    with closing(sqlite3.connect(cfg.store)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ExperienceStore(cfg.store, writable=False) as store:
        assert store.count() == sum(r.attempts for r in run.results)
        assert not store.by_episode(run.results[lost[0]].episode)
    recording = load_episode(tmp_path / "runs" / f"episode-{lost[0]:03d}", salvage=True)
    assert not recording.finished
    assert recording.metadata["end_reason"] == LOST
    assert len(recording.frames) == len(recording.actions) + 1 > 1


def test_stopping_keeps_what_was_played(cluster, tmp_path, ctrl_c):
    """Ctrl-C reaches the owner: workers stop at their next attempt and send what they
    played; it is stored, and the recordings end as interrupted."""
    cfg = config(tmp_path, episodes=6, max_steps=300)
    main = threading.main_thread().ident

    def interrupt(done: int, steps: int) -> None:
        if steps > 100 and threading.get_ident() == main:
            signal.raise_signal(signal.SIGINT)

    run = play(tmp_path, cfg, interrupt)

    assert run.stopped
    assert 1 <= len(run.results) < 6  # an episode may have ended by itself before the stop
    assert "interrupted" in [r.end for r in run.results]
    with ExperienceStore(cfg.store, writable=False) as store:
        assert store.count() == sum(r.attempts for r in run.results) > 0
        for r in run.results:
            assert len(store.by_episode(r.episode)) == r.attempts
    for r in run.results:
        recording = load_episode(r.directory)
        assert recording.finished and recording.metadata["end_reason"] == r.end
        assert len(recording.actions) == r.steps


def test_a_worker_that_dies_every_time_ends_the_run_in_one_line(cluster, tmp_path):
    """A game that kills its worker on every episode must not be replaced forever."""
    cfg = config(tmp_path, episodes=40, max_steps=300)
    kills: list[int] = []

    def kill_every_player(done: int, steps: int) -> None:
        for episode in (tmp_path / "runs").glob("episode-*"):
            pid = player_of(episode) if recorded_steps(episode) else None
            if pid is not None and pid not in kills:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)

    with pytest.raises(WorkerError, match=f"died {MAX_DEATHS_IN_A_ROW} times in a row"):
        play(tmp_path, cfg, kill_every_player)
    assert len(kills) >= MAX_DEATHS_IN_A_ROW
    with closing(sqlite3.connect(cfg.store)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_sigterm_while_the_owner_writes_waits_for_the_write():
    """A SIGTERM that arrived between storing an episode and counting it in the run's
    results left the episode out of the final table (seen once in CI)."""
    received: list[int] = []
    written = []
    with pytest.raises(KeyboardInterrupt) as stopped, _terminate_as_interrupt(received), \
            _deferred_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        written.append("stored")
        written.append("counted")
    assert written == ["stored", "counted"]
    assert received == [signal.SIGTERM] and isinstance(stopped.value, Terminated)
    # Outside a write, SIGTERM stops at once, as before.
    with pytest.raises(Terminated), _terminate_as_interrupt([]):
        os.kill(os.getpid(), signal.SIGTERM)
        written.append("never")
    assert written == ["stored", "counted"]
