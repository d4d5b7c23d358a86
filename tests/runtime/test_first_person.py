"""The one loop playing Minetest in first person from an empty store (a real game on its
own Xvfb): the episode is recorded, its attempts are diagnosed from what perception reads,
and the mod's truth (for this test's measurements only) agrees with what the agent did.
Killing the run leaves no game and no X server behind."""

import os
import shutil
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from cairn.experience.episodes import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent

from ..conftest import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or not os.path.exists("/usr/games/minetest"),
    reason="needs Xvfb and Minetest (apt-get install xvfb minetest minetest-data)")
SEED = 2  # open ground, a trunk a few turns away (tests/envs/test_minetest.py)


class Watched(gym.Wrapper):
    """Keeps the truth of every step for the test; the agent never sees it."""

    def __init__(self, env):
        super().__init__(env)
        self.truths = []

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        self.truths = [info["privileged"]]
        return frame, info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        self.truths.append(info["privileged"])
        return frame, reward, terminated, truncated, info


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first-person")
    config = load_config(ROOT / "configs" / "minetest.yaml", {"max_steps": 70})
    game = config.game_adapter()
    with game.open() as env:
        watched = Watched(env)
        with ExperienceStore(tmp / "s.sqlite") as store, \
                Agent(config, store, tmp / "runs", env=watched, game=game, run_id="m") as agent:
            result = agent.run_episode(SEED, 0)
            attempts = list(store.by_episode(result.episode))
    return result, attempts, watched.truths, config


def test_the_episode_is_recorded_with_its_attempts(episode):
    result, attempts, truths, _ = episode
    recording = load_episode(result.directory)
    assert recording.num_steps == result.steps == len(truths) - 1 > 0
    assert len(recording.frames) == result.steps + 1
    assert [t.subgoal.key for t in recording.attempts] == [t.subgoal.key for t in attempts]
    assert sum(len(t.primitives) for t in attempts) == result.steps


def test_the_truth_agrees_that_it_walked_and_dug(episode):
    result, attempts, truths, config = episode
    names = load_episode(result.directory).metadata["metadata"]["action_names"]
    assert len(names) == 12, names
    actions = [names[i] for t in attempts for i in t.primitives]
    start = np.array(truths[0]["pos"])
    farthest = max(np.linalg.norm(np.array(t["pos"])[[0, 2]] - start[[0, 2]]) for t in truths)
    assert "forward" in actions and farthest > 1.0  # it walked, and the world says so
    dug = [t for t in attempts if t.diagnosis.effects and t.subgoal.controller == "interact"
           and any(e.endswith("+1") for e in t.diagnosis.effects)]
    assert dug, [(t.subgoal.key, t.diagnosis.cause) for t in attempts]
    for t in dug:  # what perception saw gained is in the true inventory, give or take a step
        # (Minetest runs in real time, and the button stays down between dig steps: a node can
        # break after a step's truth record was written and before its frame was taken, or the
        # HUD can show an item a frame after the truth has it)
        before = min(sum(s["count"] for s in truth["inventory"])
                     for truth in truths[max(t.step_start - 1, 0):t.step_start + 1])
        after = max(sum(s["count"] for s in truth["inventory"])
                    for truth in truths[t.step_end:t.step_end + 2])
        assert after > before, (t.subgoal.key, t.diagnosis.effects, t.step_start, t.step_end,
                                truths[t.step_start]["inventory"], truths[t.step_end]["inventory"])


def test_killing_the_run_leaves_no_game_or_x_server(tmp_path):
    run = subprocess.Popen(
        [sys.executable, "-m", "cairn.runtime", "run", str(ROOT / "configs" / "minetest.yaml"),
         "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "runs"), "--quiet"],
        start_new_session=True)
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob("runs/*/episode-000/steps.jsonl")) and \
            time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
    assert run.poll() is None, "the run ended before it could be killed"
    children = _descendants(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in children if _alive(pid)]
    assert children and not left, f"left behind: {[_name(p) for p in left]}"


def _descendants(pid):
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                kids = []
            found += kids
            frontier += kids
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return str(pid)
