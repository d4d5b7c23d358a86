"""Digging in, in a real Crafter world seen through the pixel parser: the ``burrow``
controller with the knowledge a trained agent has (staged: a pickaxe, stones, a hill)."""

import dataclasses

import numpy as np
import pytest
from crafter import objects

from cairn.envs.crafter import CrafterGame
from cairn.experience.records import Subgoal
from cairn.experience.store import ExperienceStore
from cairn.runtime.executor import EpisodeState, Executor
from cairn.runtime.learning import Learner
from cairn.runtime.map_kit import MapKit
from cairn.runtime.world import WalkStats
from cairn.skills.model import Skill

WALKS = ("grass", "sand", "path")  # Crafter's rule for zombies: used to check, never to act


@pytest.fixture
def store(tmp_path):
    with ExperienceStore(tmp_path / "exp.sqlite") as store:
        yield store


def staged(env, store, config, refuge=True):
    """A world with a hill of stone just above the player, who holds a pickaxe and stones,
    and a learner whose skills dig stone into path and place stone (as trained ones do)."""
    env.reset(seed=0)
    crafter_env = env._env
    player = crafter_env._player
    player.inventory.update(wood_pickaxe=1, stone=3)  # privileged: staging only
    x, y = player.pos
    for dx in (-1, 0, 1):
        for dy in (-1, -2, -3, -4):
            crafter_env._world[(x + dx, y + dy)] = "stone"
    frame, _, _, _, info = env.step(0)
    learner = Learner(store, "learn")
    learner.skills.update(Skill("interact:stone", [], ["wood_pickaxe>=1"],
                                ["changed:0,0:stone>path", "stone+1"], 5, 5, 1))
    learner.skills.update(Skill("use:place_stone", [], ["stone>=1"],
                                ["changed:0,0:>stone", "stone-1"], 5, 5, 1))
    config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, refuge=refuge))
    kit = MapKit(CrafterGame({}), env, config, learner, np.random.default_rng(0))
    for kind in ("stone", "tree", "water"):
        kit.world.walk[kind] = WalkStats(blocked=5)  # learned by bumping into them
    ep = EpisodeState("test", last_info=info)
    kit.begin(frame, ep)
    return kit, ep


def test_with_a_pickaxe_and_stones_the_agent_digs_in_where_nothing_can_reach_it(
        small_world, store, crafter_config):
    kit, ep = staged(small_world, store, crafter_config)
    facts = kit._world_facts()
    assert (facts.dig, facts.place, facts.sealed) == (["stone"], ["place_stone"], False)
    attempt = Executor(small_world, kit).attempt(Subgoal("burrow", "place_stone"), ep)
    assert attempt.diagnosis.success and attempt.diagnosis.detail == "shut in"
    assert kit._world_facts().sealed
    world = small_world._env._world
    x, y = small_world._env._player.pos
    inside = [(x, y)] + [(x + dx, y + dy) for dx, dy in ((0, 1), (0, -1), (1, 0), (-1, 0))
                         if world[(x + dx, y + dy)][0] in WALKS]
    assert len(inside) == 2  # the pocket: where it stands and the far cell it dug
    for cx, cy in inside:
        for dx, dy in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            cell = (cx + dx, cy + dy)
            assert cell in inside or world[cell][0] not in WALKS
    # A zombie next to the hill cannot get at it.
    zombie = objects.Zombie(world, np.array((x + 2, y)), small_world._env._player)
    world.add(zombie)
    health = small_world._env._player.health
    for _ in range(30):
        small_world.step(0)
    assert small_world._env._player.health >= health


def test_without_the_option_the_kit_offers_no_means_to_dig_in(small_world, store,
                                                             crafter_config):
    kit, _ = staged(small_world, store, crafter_config, refuge=False)
    facts = kit._world_facts()
    assert (facts.dig, facts.place, facts.sealed) == ([], [], False)
