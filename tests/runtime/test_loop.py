"""The loop on a real Crafter world: what ends an episode."""

from cairn.experience.records import Subgoal
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.loop import MAX_IDLE_ATTEMPTS, Agent

from ..conftest import ROOT


class Unreachable:
    """A planner that only ever asks for a kind of thing the world does not have."""

    last_reason = "test"

    def reset(self):
        pass

    def next_subgoal(self, ctx):
        return Subgoal("interact", "nothing-of-this-kind")

    def on_attempt(self, attempt, ctx):
        pass

    def memory(self):
        return {}

    def recall(self, memory):
        pass


def test_an_episode_where_nothing_takes_a_step_ends_as_stuck_and_the_run_goes_on(tmp_path):
    """Boxed in, no subgoal moves the game on: the world is given up after a while, not the
    run (a million-step run once stopped there, hours in)."""
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 100})
    with ExperienceStore(tmp_path / "s.sqlite") as store, \
            Agent(config, store, None, planner=Unreachable()) as agent:
        results = [agent.run_episode(seed, i) for i, seed in enumerate((3, 4))]
        steps = [t.diagnosis.steps for t in store.by_episode(results[0].episode)]
    assert [r.end for r in results] == ["stuck", "stuck"]
    assert [r.attempts for r in results] == [MAX_IDLE_ATTEMPTS] * 2
    assert set(steps) == {0} and [r.steps for r in results] == [0, 0]
