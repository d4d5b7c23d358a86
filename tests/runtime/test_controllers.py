"""The generic controllers on hand-made percepts (pure logic: no env needed)."""

import numpy as np

from cairn.runtime.config import ActionsConfig, AgentConfig
from cairn.runtime.controllers import AttemptView, Controllers
from cairn.runtime.world import WorldModel
from tests.runtime.test_world import percept, wander

STILL = ["gggg", "gpgg", "gcgg"]  # the cow stands where the agent faces


def wandering_cow_world() -> WorldModel:
    """A world that has seen the cow move now and then: mobile, mostly still."""
    world = WorldModel()
    away = ["cggg", "gpgg", "gggg"]
    wander(world, [away] * 4 + [["gcgg", "gpgg", "gggg"], ["ggcg", "gpgg", "gggg"],
                                ["gggc", "gpgg", "gggg"]] + [["gggc", "gpgg", "gggg"]] * 6)
    world.observe(percept(STILL), passive=True)
    assert world.mobile("cow")
    return world


def press(world, frames):
    """Run the interact controller on the cow; ``frames`` are what each press shows."""
    controllers = Controllers(ActionsConfig(noop="noop", interact="do",
                                            moves={"down": [1, 0]}),
                              AgentConfig(interact_tries=4), np.random.default_rng(0))
    run = controllers.interact(AttemptView(world, {"hp": 5}), "cow")
    actions = []
    try:
        action = next(run)
        for rows in frames:
            actions.append(action)
            world.observe(percept(rows))
            action = run.send(None)
        raise AssertionError("the controller pressed more than the frames given")
    except StopIteration as stop:
        return actions, stop.value


def test_a_target_struck_down_without_a_trace_is_an_effect():
    actions, outcome = press(wandering_cow_world(), [STILL, STILL, ["gggg", "gpgg", "gggg"]])
    assert actions == ["do"] * 3 and outcome.effect and outcome.target == (1, 0)


def test_a_target_that_walked_to_the_next_cell_was_not_struck_down():
    actions, outcome = press(wandering_cow_world(), [STILL] + [["gggg", "gpgg", "ggcg"]] * 3)
    assert actions == ["do"] * 4 and not outcome.effect  # pressed on, to no effect
