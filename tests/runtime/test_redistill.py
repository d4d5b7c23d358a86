"""Offline re-distillation: a run's recordings distilled into an empty store give the
knowledge the run distilled live, attempt for attempt; a person's play (a recording without
attempts) is cut into attempts by action roles and learned from; bad input is refused."""

import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from cairn.envs.crafter import CrafterEnv
from cairn.experience.episodes import load_episode
from cairn.experience.recording import EpisodeRecorder
from cairn.experience.store import ExperienceStore
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.config import load_config
from cairn.runtime.lockstep import Divergence, RecordedEnv
from cairn.runtime.loop import Agent
from cairn.runtime.redistill import DistillError, distill_episodes, episodes_at

ROOT = Path(__file__).resolve().parents[2]
MANY_TREES_SEED = 28  # as in conftest: a 32x32 world with trees next to the start


def knowledge(path: Path) -> dict[str, list]:
    """Every version of every skill and guardrail (what it is, not when it was written)."""
    with ExperienceStore(path, writable=False) as store:
        out = {}
        for kind in ("skill", "guardrail"):
            current = [(e.key, e.version, e.status, e.body)
                       for e in store.knowledge.current(kind)]
            history = [(e.key, e.version, e.status, e.body) for key, *_ in current
                       for e in store.knowledge.history(kind, key)]
            out[kind] = current
            out[f"{kind} history"] = history
        return out


def attempts(path: Path) -> list[dict]:
    with ExperienceStore(path, writable=False) as store:
        return [store.get(i).to_dict() for i in range(1, store.count() + 1)]


def test_a_runs_recordings_distil_into_the_knowledge_the_run_distilled(recorded_run, tmp_path):
    episodes = episodes_at(recorded_run.run_dir)
    assert [e.directory for e in episodes] == recorded_run.episodes
    recorded = sum(len(e.attempts) for e in episodes)
    lines = []
    with ExperienceStore(tmp_path / "again.sqlite") as store:
        report = distill_episodes(episodes, store, on_episode=lines.append)
    assert [line.episode for line in lines] == [
        e.metadata["metadata"]["episode"] for e in episodes]
    assert report.attempts == report.compared == report.same_diagnosis == recorded > 0
    assert report.mismatches == 0
    assert report.steps == sum(len(e.actions) for e in episodes)

    live, again = knowledge(recorded_run.store), knowledge(tmp_path / "again.sqlite")
    assert live["skill"] and any(status == "active" for _, _, status, _ in live["guardrail"])
    assert again == live  # keys, versions, statuses, bodies (provenance and evidence ids too)
    assert (report.skills_after, report.guardrails_after) == (
        len(live["skill"]), len(live["guardrail"]))
    # Every attempt rebuilt as stored live: ids, states, subgoals, steps, diagnoses.
    assert attempts(tmp_path / "again.sqlite") == attempts(recorded_run.store)


def _copy(src: Path, dst: Path) -> Path:
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:
        a.backup(b)
    return dst


def test_guardrails_stop_steps_offline_as_they_did_live(tmp_path):
    """A store that forbids moving up and left: live, controllers (explore among them, whose
    random direction is not recorded) are stopped by it; offline, the same attempts are
    stopped."""
    with ExperienceStore(tmp_path / "start.sqlite") as store:
        for move in ("move_up", "move_left"):
            GuardrailSet(store.knowledge).update(Guardrail(
                "damage_taken", "set by hand", Trigger(), f"primitive {move}", "task", []))
    live = _copy(tmp_path / "start.sqlite", tmp_path / "live.sqlite")
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 120})
    with ExperienceStore(live) as store, Agent(config, store, tmp_path / "runs") as agent:
        agent.run_episode(MANY_TREES_SEED, 0)
    blocked = [t for t in attempts(live) if t["diagnosis"]["cause"] == "guardrail_blocked"]
    assert {t["subgoal"] for t in blocked} >= {"explore"}

    again = _copy(tmp_path / "start.sqlite", tmp_path / "again.sqlite")
    with ExperienceStore(again) as store:
        report = distill_episodes(episodes_at(tmp_path / "runs"), store)
    assert report.same_diagnosis == report.compared == len(attempts(live))
    assert attempts(again) == attempts(live)
    assert knowledge(again) == knowledge(live)


def test_a_controller_that_departs_from_the_recording_is_judged_after_the_fact(
        recorded_run, tmp_path):
    folder = shutil.copytree(recorded_run.episodes[0], tmp_path / "episode")
    lines = (folder / "attempts.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    changed = next(i for i, row in enumerate(rows)
                   if row["subgoal"] == "explore" and row["primitives"])
    actions = load_episode(folder).metadata["metadata"]["action_names"]
    config = load_config(ROOT / "configs" / "crafter.yaml")
    roles = {config.actions.noop, config.actions.interact, config.actions.sleep,
             *config.actions.moves}
    by_name = next(a for a in actions if a not in roles)
    rows[changed]["subgoal"] = f"use:{by_name}"  # its controller presses that, not a move
    (folder / "attempts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    with ExperienceStore(tmp_path / "s.sqlite") as store:
        report = distill_episodes(episodes_at(folder), store)
        rebuilt = [store.get(i) for i in range(1, store.count() + 1)]
    assert report.mismatches == 1 and report.compared == len(rows) == len(rebuilt)
    assert f"use:{by_name}: its controller chose {by_name}" in str(report.lines[0])
    # Judged as the use controller judges itself, over the steps the recording took.
    odd = rebuilt[changed]
    assert odd.subgoal.key == f"use:{by_name}" and odd.primitives == rows[changed]["primitives"]
    assert odd.diagnosis.steps == len(odd.primitives) and odd.diagnosis.target is not None
    assert [(t.step_start, t.step_end) for t in rebuilt] == [
        (r["step_start"], r["step_end"]) for r in rows]


def record_play(directory: Path, script: list[str], config) -> None:
    """A person's play as a Cairn recording: no attempts, only steps."""
    env = CrafterEnv(area=(32, 32))
    meta = {"episode": "person-1", "seed": MANY_TREES_SEED, "config": asdict(config),
            "game": "crafter", "action_names": list(env.action_names)}
    with EpisodeRecorder(directory, meta) as recorder:
        frame, _ = env.reset(seed=MANY_TREES_SEED)
        recorder.record_reset(frame)
        for name in script:
            index = env.action_names.index(name)
            frame, reward, terminated, truncated, _ = env.step(index)
            recorder.record_step(index, frame, reward, terminated, truncated)


# Walk to the tree two tiles right and one up, strike it; walk up to the next tree, strike
# it; build a table with the two wood; try to sleep while rested; wait.
PLAY = ["move_right", "move_right", "move_up", "move_right", "do", "move_up", "move_up", "do",
        "place_table", "sleep", "noop", "noop"]


def test_a_persons_play_is_cut_into_attempts_and_learned_from(tmp_path):
    config = load_config(ROOT / "configs" / "crafter.yaml", {"env.kwargs.area": [32, 32]})
    record_play(tmp_path / "play", PLAY, config)
    with ExperienceStore(tmp_path / "s.sqlite") as store:
        report = distill_episodes(episodes_at(tmp_path / "play"), store)
        rebuilt = [store.get(i) for i in range(1, store.count() + 1)]
        skills = {e.key: e.body for e in store.knowledge.current("skill")}
    assert report.lines[0].source == "segmented" and report.compared == 0
    assert [(t.subgoal.key, t.step_start, t.step_end) for t in rebuilt] == [
        ("interact:tree", 0, 5),       # the walk, then the press that gave wood
        ("interact:tree", 5, 8),
        ("use:place_table", 8, 9),
        ("sleep", 9, 10),
        ("explore", 10, 12)]
    assert [t.diagnosis.cause for t in rebuilt[:4]] == [
        "success", "success", "success", "no_effect"]
    assert rebuilt[0].diagnosis.progress == 1.0  # walked all the way, changed a counter
    assert "wood+1" in skills["interact:tree"]["verification"]
    assert skills["interact:tree"]["provenance"] == [rebuilt[0].id, rebuilt[1].id]
    assert {"wood-2", "changed:0,0:grass>table"} <= set(skills["use:place_table"]["verification"])


def test_an_agent_recording_can_be_cut_by_roles_too(recorded_run, tmp_path):
    (episode,) = episodes_at(recorded_run.episodes[1])
    with ExperienceStore(tmp_path / "s.sqlite") as store:
        report = distill_episodes([episode], store, use_recorded_attempts=False)
        rebuilt = [store.get(i) for i in range(1, store.count() + 1)]
    assert report.lines[0].source == "segmented" and report.compared == 0
    assert rebuilt[0].step_start == 0 and rebuilt[-1].step_end == len(episode.actions)
    assert all(a.step_end == b.step_start for a, b in zip(rebuilt, rebuilt[1:], strict=False))
    assert {t.subgoal.controller for t in rebuilt} <= {"interact", "use", "sleep", "explore"}
    assert any(t.subgoal.controller == "interact" and t.diagnosis.success for t in rebuilt)
    # Cut by roles alone, most of what the agent did comes out as the agent's own attempts
    # (the agent's sleep, which it woke from, among them).
    def key(t):
        return t.subgoal.key, t.step_start, t.step_end, t.diagnosis.cause, t.diagnosis.detail

    live, cut = {key(t) for t in episode.attempts}, {key(t) for t in rebuilt}
    assert len(live & cut) >= len(live) / 2
    woke = {k for k in live if k[0] == "sleep" and k[3] == "success"}
    assert woke and woke <= cut


def test_a_store_that_holds_the_episodes_is_refused_and_left_as_it_was(
        recorded_run, tmp_path, copy_store):
    path = copy_store(recorded_run.store, tmp_path / "live.sqlite")
    before = (attempts(path), knowledge(path))
    with ExperienceStore(path) as store, pytest.raises(DistillError) as err:
        distill_episodes(episodes_at(recorded_run.run_dir), store)
    assert "already holds the attempts of episode" in str(err.value)
    assert (attempts(path), knowledge(path)) == before


def _recording(directory: Path, metadata: dict) -> Path:
    with EpisodeRecorder(directory, metadata) as recorder:
        recorder.record_reset(np.zeros((64, 64, 3), np.uint8))
        recorder.record_step(0, np.zeros((64, 64, 3), np.uint8), 0.0, False, True)
    return directory


def test_recordings_that_cannot_be_distilled_are_refused_in_one_line(tmp_path):
    crafter = asdict(load_config(ROOT / "configs" / "crafter.yaml"))
    board = asdict(load_config(ROOT / "configs" / "flip.yaml"))
    cases = {
        "no-game": ({"episode": "a"}, "recorded without its game's name"),
        "board": ({"episode": "b", "game": "board", "config": board}, "not a map game"),
        "bad-config": ({"episode": "c", "game": "crafter", "config": {**crafter, "x": 1}},
                       "its recorded config cannot be used: unknown key 'x'"),
        "no-actions": ({"episode": "d", "game": "crafter", "config": crafter},
                       "its action names were not recorded"),
    }
    with ExperienceStore(tmp_path / "s.sqlite") as store:
        for name, (meta, message) in cases.items():
            episodes = episodes_at(_recording(tmp_path / name, meta))
            with pytest.raises(DistillError) as err:
                distill_episodes(episodes, store)
            assert message in str(err.value) and "\n" not in str(err.value)
            assert str(tmp_path / name) in str(err.value)
        assert store.count() == 0
    with pytest.raises(DistillError, match="no recordings there"):
        episodes_at(tmp_path / "nothing")


def test_a_recorded_env_serves_only_the_recorded_actions(recorded_run):
    (episode,) = episodes_at(recorded_run.episodes[0])
    names = episode.metadata["metadata"]["action_names"]
    env = RecordedEnv(episode, names)
    frame, _ = env.reset()
    assert np.array_equal(frame, episode.frames[0])
    first = int(episode.actions[0])
    with pytest.raises(Divergence, match=f"step 0: .* asked for, {names[first]} recorded"):
        env.step((first + 1) % len(names))
    for t, action in enumerate(episode.actions):
        frame, reward, terminated, truncated, _ = env.step(int(action))
        assert np.array_equal(frame, episode.frames[t + 1]) and reward == episode.rewards[t]
    assert terminated or truncated
    with pytest.raises(Divergence, match="past the recording's end"):
        env.step(0)
