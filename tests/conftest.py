"""Shared fixtures: real Crafter worlds and real SQLite stores."""

from pathlib import Path

import numpy as np
import pytest
from cairn.envs.crafter import CrafterEnv
from cairn.perception.crafter import CrafterParser
from cairn.runtime.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def crafter_config():
    return load_config(ROOT / "configs" / "crafter.yaml")


@pytest.fixture
def small_world():
    """A real Crafter env with a 32x32 world: the same 64x64 frames, resets 4x faster."""
    env = CrafterEnv(size=64, area=(32, 32))
    yield env
    env.close()


@pytest.fixture(scope="session")
def parse():
    return CrafterParser(64).parse


@pytest.fixture
def rng():
    return np.random.default_rng(0)


TABLE_SCRIPT = (
    ["use:place_table"] * 2            # nothing to build with: no effect
    + ["interact:tree"] * 4            # gather
    + ["use:place_table", "explore", "use:place_table", "use:place_table"]
)
MANY_TREES_SEED = 28  # 32x32 world: six trees in view at the start


class ScriptedThenPlanned:
    """Test planner: a fixed list of subgoals first, then the agent's own planner decides."""

    def __init__(self, script, planner):
        self.script = list(script)
        self.planner = planner

    def reset(self):
        self.planner.reset()

    def next_subgoal(self, ctx):
        from cairn.experience.records import Subgoal

        if self.script:
            return Subgoal.parse(self.script.pop(0))
        return self.planner.next_subgoal(ctx)

    def on_attempt(self, attempt, ctx):
        self.planner.on_attempt(attempt, ctx)


@pytest.fixture(scope="session")
def table_run(tmp_path_factory):
    """A real learning episode from an empty store: a short script of attempts (so the
    evidence is certain to contain successes and failures), then the agent's own planner.
    Returns (agent, store path, run dir, episode name)."""
    from cairn.experience.store import ExperienceStore
    from cairn.runtime.loop import Agent

    tmp = tmp_path_factory.mktemp("table-run")
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 250})
    store = ExperienceStore(tmp / "exp.sqlite")
    agent = Agent(config, store, tmp / "runs" / "table")
    agent.planner = ScriptedThenPlanned(TABLE_SCRIPT, agent.planner)
    result = agent.run_episode(MANY_TREES_SEED, 0)
    yield agent, tmp / "exp.sqlite", tmp / "runs", result.episode
    store.close()
