"""Diagnoses of real attempts in real Crafter worlds, seen through the pixel parser."""

import numpy as np
import pytest

from cairn.envs.crafter import CrafterGame
from cairn.experience.records import Cause, State, Subgoal, condition_signature
from cairn.runtime.diagnosis import may_lack_requirement
from cairn.runtime.executor import EpisodeState, Executor
from cairn.runtime.learning import Learner
from cairn.runtime.map_kit import MapKit
from cairn.runtime.planner import PlanContext
from cairn.skills.library import SkillLibrary
from cairn.skills.model import Skill

TREE_AND_STONE_SEED = 9  # in a 32x32 world: a tree and stone in view at the start



def start(env, store, config, rng, seed):
    """The map kit and the executor the loop would use, at the start of world ``seed``."""
    frame, info = env.reset(seed=seed)
    kit = MapKit(CrafterGame({}), env, config, Learner(store, "off"), rng)
    ep = EpisodeState("test", last_info=info)
    kit.begin(frame, ep)
    return Executor(env, kit), ep


def test_collecting_wood_succeeds(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    attempt = executor.attempt(Subgoal("interact", "tree"), ep)
    d = attempt.diagnosis
    assert d.success and d.cause == Cause.SUCCESS
    assert d.counter_deltas.get("wood") == 1
    assert small_world._env._player.inventory["wood"] == 1  # privileged: measuring only
    assert attempt.pre.counters["wood"] == 0 and attempt.post.counters["wood"] == 1
    assert attempt.primitives[-1] == executor.kit.action_ids["do"]
    assert d.progress == pytest.approx(1.0)


def test_hitting_stone_without_a_pickaxe_has_no_effect(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    attempt = executor.attempt(Subgoal("interact", "stone"), ep)
    d = attempt.diagnosis
    assert not d.success
    assert d.cause == Cause.NO_EFFECT
    assert attempt.pre.counters["stone"] == attempt.post.counters["stone"] == 0
    presses = attempt.primitives.count(executor.kit.action_ids["do"])
    assert presses == crafter_config.agent.interact_tries
    assert attempt.post.facing_kind == "stone"


def test_no_effect_after_success_elsewhere_is_a_suspected_missing_requirement(
        small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    attempt = executor.attempt(Subgoal("interact", "stone"), ep, may_lack_requirement=True)
    assert attempt.diagnosis.cause == Cause.MISSING_REQUIREMENT


def suspect(subgoal, skill, counters, near=(), worked_elsewhere=True):
    """``may_lack_requirement`` for ``subgoal`` in a state holding ``counters`` next to
    ``near``, with ``skill`` (or none) learned for it."""
    state = State(0, (0, 0), (1, 0), dict(counters), "grass", [[None, *near]], [])
    library = SkillLibrary()
    if skill is not None:
        library.update(skill)
    condition = condition_signature(state.predicates())
    elsewhere = (3, 3) if worked_elsewhere else (0, 0)
    ctx = PlanContext(state, condition, [], False,
                      lambda key, where: elsewhere if where is None else (2, 0), library)
    return may_lack_requirement(Subgoal.parse(subgoal), ctx)


def test_a_requirement_is_suspected_only_where_a_known_one_is_missing():
    gather = Skill("interact:grass", [], [], ["sapling+1"], successes=3, attempts=30,
                   rewarded=0)
    craft = Skill("use:make_x", [], ["near:bench", "wood>=1"], ["x+1"], successes=5, attempts=5,
                  rewarded=1)
    # Everything its skill needs held: failing shows no requirement (a one-in-ten gather).
    assert not suspect("interact:grass", gather, {"wood": 1}, ["bench"])
    assert not suspect("use:make_x", craft, {"wood": 1}, ["bench"])
    assert suspect("use:make_x", craft, {"wood": 1})  # away from the bench
    assert suspect("use:make_x", None, {"wood": 1}, ["bench"])  # worked elsewhere, nothing known
    assert not suspect("use:make_x", None, {"wood": 1}, ["bench"],
                       worked_elsewhere=False)  # never worked: nothing to miss


def test_standing_still_is_stagnation(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    window = crafter_config.agent.stagnation_window
    attempts = [executor.attempt(Subgoal("use", "noop"), ep) for _ in range(window)]
    assert not attempts[0].diagnosis.stagnation
    last = attempts[-1].diagnosis
    assert last.stagnation and last.cause in (Cause.STAGNATION, Cause.DEADLOCK)
    assert len({a.post.position for a in attempts}) == 1


def test_target_not_visible(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    attempt = executor.attempt(Subgoal("interact", "diamond"), ep)
    assert attempt.diagnosis.cause == Cause.TARGET_NOT_VISIBLE
    assert attempt.primitives == []


def test_walking_updates_position_by_odometry(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    truth0 = np.array(small_world._env._player.pos)
    executor.attempt(Subgoal("explore"), ep)
    truth = np.array(small_world._env._player.pos) - truth0  # privileged: measuring only
    # Crafter's pos is (x, y); the agent's position is (row, col) on the screen.
    assert executor.kit.world.position == (int(truth[1]), int(truth[0]))


def test_repeated_failure_across_subgoals_is_deadlock(small_world, store, crafter_config, rng):
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    causes = [executor.attempt(Subgoal("interact", kind), ep).diagnosis.cause
              for kind in ("diamond", "iron", "lava")]
    assert causes[:2] == [Cause.TARGET_NOT_VISIBLE] * 2
    assert causes[2] == Cause.DEADLOCK


def test_what_changed_is_said_relative_to_the_target(small_world, store, crafter_config, rng):
    """One vocabulary: the struck tree is the target, and its change is at offset (0, 0),
    in the changed tiles and in the effects alike, wherever the agent stood."""
    executor, ep = start(small_world, store, crafter_config, rng, TREE_AND_STONE_SEED)
    attempt = executor.attempt(Subgoal("interact", "tree"), ep)
    d = attempt.diagnosis
    world = executor.kit.world
    assert d.target == world.facing_position()
    assert world.kind_at(d.target) == "grass"
    assert (0, 0, "tree", "grass") in d.changed_tiles
    assert "changed:0,0:tree>grass" in d.effects and "wood+1" in d.effects


def test_a_blow_that_strikes_down_a_creature_that_wanders_is_an_effect(
        small_world, store, crafter_config, rng):
    """Defeating a zombie raises no counter and, after the first time, earns no reward:
    the agent sees it only as the zombie gone from where it stood and from the view."""
    from crafter import objects

    small_world.reset(seed=TREE_AND_STONE_SEED)
    crafter = small_world._env  # privileged: to set the scene and to measure only
    player, world = crafter._player, crafter._world
    cell = tuple(int(v) for v in np.array(player.pos) + np.array(player.facing))
    assert world[cell][1] is None and world[cell][0] in ("grass", "sand", "path")
    zombie = objects.Zombie(world, cell, player)
    zombie.health = 1  # one blow
    world.add(zombie)
    player.achievements["defeat_zombie"] = 1  # defeated before: no reward this time
    crafter._unlocked.add("defeat_zombie")
    frame, _, _, _, info = small_world.step(small_world.action_names.index("noop"))
    kit = MapKit(CrafterGame({}), small_world, crafter_config, Learner(store, "frozen"), rng)
    kit.world.kind_seen["zombie"] = kit.world.kind_changed["zombie"] = 10  # it wanders
    ep = EpisodeState("test", last_info=info)
    kit.begin(frame, ep)
    executor = Executor(small_world, kit)
    attempt = executor.attempt(Subgoal("interact", "zombie"), ep)
    d = attempt.diagnosis
    assert zombie not in world.objects and player.achievements["defeat_zombie"] == 2
    assert "reward" not in d.effects
    assert d.success and d.cause == Cause.SUCCESS
    assert "changed:0,0:zombie>" in d.effects and attempt.subgoal.target == "zombie"
    assert attempt.primitives.count(kit.action_ids["do"]) == 1
