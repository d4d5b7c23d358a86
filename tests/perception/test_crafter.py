"""CrafterParser against Crafter's privileged state, on real frames from random rollouts.

A day is 300 steps and night (daylight < 0.5) runs from about step 150 to 270, but a random
player seldom lives that long (and Crafter's object updates depend on set order, so even a
seed does not fix how long). The sample's rollouts therefore top the player's health up
before each step: every rollout then spans day, night and deep night (daylight < 0.15), and
random actions still put the player to sleep along the way.
"""

import numpy as np
import pytest

from cairn.envs.crafter import CrafterEnv
from cairn.perception.crafter import ITEMS, CrafterParser, expected_tiles
from cairn.perception.percept import UNKNOWN

SEEDS = range(1, 9)  # taken in turn until every daylight band has MIN_FRAMES frames
STEPS = 300
MIN_FRAMES = 60
BANDS = {"day": (0.5, 2.0), "night": (0.15, 0.5), "deep night": (-1.0, 0.15)}


def rollout(env: CrafterEnv, seed: int, steps: int, immortal: bool = False
            ) -> list[tuple[np.ndarray, dict]]:
    rng = np.random.default_rng(seed)
    frame, info = env.reset(seed=seed)
    frames = [(frame, info["privileged"])]
    for _ in range(steps):
        if immortal:
            env._env._player.health = 9  # test setup, through Crafter's own state
        frame, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        frames.append((frame, info["privileged"]))
        if terminated or truncated:  # lava still kills at once
            break
    return frames


@pytest.fixture(scope="module")
def parsed():
    """(percept, privileged) for every frame of the sample, parsed in order."""
    env, parser = CrafterEnv(), CrafterParser(64)
    out = []
    for seed in SEEDS:
        frames = rollout(env, seed, STEPS, immortal=True)
        out += [(parser.parse(frame), priv) for frame, priv in frames]
        counts = [sum(lo <= priv["daylight"] < hi for _, priv in out) for lo, hi in BANDS.values()]
        if min(counts) >= MIN_FRAMES:
            break
    return out


def band(parsed, name: str):
    lo, hi = BANDS[name]
    frames = [(p, priv) for p, priv in parsed if lo <= priv["daylight"] < hi]
    assert len(frames) >= MIN_FRAMES, f"the sample has only {len(frames)} {name} frames"
    return frames


def tile_stats(frames) -> tuple[float, float, float]:
    """(accuracy over all tiles, share confident, accuracy of confident tiles)."""
    right = sure = sure_right = total = 0
    for percept, priv in frames:
        truth = expected_tiles(priv)
        known = percept.tiles != UNKNOWN
        right += (percept.tiles == truth).sum()
        sure += known.sum()
        sure_right += (percept.tiles[known] == truth[known]).sum()
        total += truth.size
    return right / total, sure / total, sure_right / sure


def test_tiles_by_day(parsed):
    accuracy, _, _ = tile_stats(band(parsed, "day"))
    assert accuracy >= 0.995


def test_tiles_at_night(parsed):
    accuracy, _, confident_accuracy = tile_stats(band(parsed, "night"))
    assert accuracy >= 0.99
    assert confident_accuracy >= 0.99


def test_deep_night_reports_noise_as_unknown_not_as_a_guess(parsed):
    accuracy, confident, confident_accuracy = tile_stats(band(parsed, "deep night"))
    # Measured on this sample over 36 runs (it varies: Crafter's creature updates follow set
    # order): 0.998-0.9997 of the confident tiles right; 74-86% of all tiles confident and
    # right (the bench over 100 seeds, with fewer of the darkest frames, measures ~93%).
    assert confident_accuracy >= 0.995
    # The vignette's corners are noise, the middle is still read.
    assert confident >= 0.70
    assert accuracy >= 0.70


def test_inventory_is_read_exactly(parsed):
    for percept, priv in parsed:
        assert set(percept.counters) == set(ITEMS)
        assert percept.counters == {k: int(v) for k, v in priv["inventory"].items()}


def test_facing_is_read_off_the_player_sprite(parsed):
    awake = [(p, priv) for p, priv in parsed if not priv["sleeping"]]
    assert len(awake) > 100  # random rollouts sleep a lot; enough awake frames remain
    for percept, priv in awake:
        dx, dy = priv["facing"]
        assert percept.facing == (dy, dx)
        assert percept.player == (3, 4) and percept.name_at(3, 4) == "player"


def test_sleeping_and_night_tags(parsed):
    assert sum(priv["sleeping"] for _, priv in parsed) >= 30
    for percept, priv in parsed:
        assert ("sleeping" in percept.tags) == priv["sleeping"]
        if abs(priv["daylight"] - 0.5) > 0.01:
            assert ("night" in percept.tags) == (priv["daylight"] < 0.5)


def test_confidence_is_a_probability_and_unknown_means_unsure(parsed):
    for percept, _ in parsed[::10]:
        assert percept.tiles.shape == percept.confidence.shape == (7, 9)
        assert ((percept.confidence >= 0) & (percept.confidence <= 1)).all()
        assert (percept.confidence[percept.tiles == UNKNOWN] < 0.99).all()


def test_other_render_sizes_by_day():
    env, parser = CrafterEnv(size=90), CrafterParser(90)
    frames = rollout(env, seed=1, steps=60)
    percepts = [(parser.parse(frame), priv) for frame, priv in frames]
    accuracy, _, _ = tile_stats(percepts)
    assert accuracy >= 0.995
    for percept, priv in percepts:
        assert percept.counters == {k: int(v) for k, v in priv["inventory"].items()}


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 4), (90, 90, 3), (63, 64, 3)])
def test_a_frame_of_the_wrong_shape_is_refused(parse, shape):
    with pytest.raises(ValueError, match=r"expected a \(64, 64, 3\) RGB frame"):
        parse(np.zeros(shape, np.uint8))
