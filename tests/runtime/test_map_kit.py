"""What the map kit tells the planner about past attempts, read from a real store."""


from cairn.envs.crafter import CrafterGame
from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, Subgoal
from cairn.runtime.executor import EpisodeState
from cairn.runtime.learning import Learner
from cairn.runtime.map_kit import MapKit
from cairn.runtime.symbolic import SCARCE


def labelled_success(state, key: str, effect: str, step: int = 0) -> ExperienceTuple:
    diagnosis = Diagnosis(True, Cause.SUCCESS, {}, 0.0, [], 1.0, None, 0, 3, effects=[effect])
    return ExperienceTuple("e", step, step + 3, state, Subgoal.parse(key), [5], diagnosis, state)


def test_a_scarce_subgoal_s_successes_are_judged_with_the_drift_known_now(
        small_world, store, crafter_config, rng):
    """Health rose by itself while the agent pressed on stone, before it had seen health
    rise on its own: once it has, that try no longer counts as stone having worked."""
    frame, info = small_world.reset(seed=9)
    kit = MapKit(CrafterGame({}), small_world, crafter_config, Learner(store, "learn"), rng)
    ep = EpisodeState("test", last_info=info)
    kit.begin(frame, ep)
    ctx = kit.context(ep)
    store.add(labelled_success(ctx.state, "interact:stone", "health+1"))
    store.add(labelled_success(ctx.state, "interact:tree", "wood+1"))
    assert ctx.stats("interact:stone", None) == (1, 1)

    kit.world.drift["health"] = {1}
    assert ctx.stats("interact:stone", None) == (1, 0)
    assert ctx.stats("interact:tree", None) == (1, 1)
    assert ctx.stats("interact:stone", ctx.condition) == (1, 1)  # one condition: the labels

    for step in range(1, SCARCE):
        store.add(labelled_success(ctx.state, "interact:stone", "health+1", step))
    assert ctx.stats("interact:stone", None) == (SCARCE, SCARCE)  # tried often: as labelled
