import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cairn import envs
from cairn.envs.crafter import ACTIONS, CrafterEnv


def test_registered_env_passes_gymnasium_check():
    env = gym.make(envs.CRAFTER_ID, area=(32, 32))  # a small world resets faster
    check_env(env.unwrapped)
    env.close()


def test_reset_with_the_same_seed_makes_the_same_world():
    env = CrafterEnv()
    first, _ = env.reset(seed=7)
    env.step(1)
    other, _ = env.reset(seed=8)
    again, _ = env.reset(seed=7)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_observation_is_the_frame_and_privileged_state_is_marked():
    env = CrafterEnv(size=90)
    obs, info = env.reset(seed=1)
    assert obs.shape == (90, 90, 3) and obs.dtype == np.uint8
    assert set(info) == {"privileged"}
    assert {"semantic", "inventory", "daylight"} <= set(info["privileged"])


def test_truncated_at_the_length_limit_not_terminated():
    env = CrafterEnv(length=5)
    env.reset(seed=3)
    flags = [env.step(ACTIONS.index("noop"))[2:4] for _ in range(5)]
    assert flags[:4] == [(False, False)] * 4
    assert flags[4] == (False, True)


def test_terminated_when_the_player_dies():
    env = CrafterEnv()
    env.reset(seed=3)
    env._env._player.health = 0  # test setup: force death through Crafter's own state
    _, _, terminated, truncated, _ = env.step(ACTIONS.index("noop"))
    assert terminated and not truncated


def test_too_small_render_size_is_refused():
    with pytest.raises(ValueError, match="size"):
        CrafterEnv(size=4)
