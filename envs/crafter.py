"""Crafter as a Gymnasium environment whose observation is the RGB frame alone.

Crafter's own state (semantic map, inventory, achievements, daylight) is returned under
``info["privileged"]``: it exists to *measure* perception and score runs, never to act on.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import crafter
import crafter.objects
import gymnasium as gym
import numpy as np
from crafter import constants

from cairn.envs.game import (
    Game,
    GameError,
    ImportedEpisode,
    Score,
    geometric_score,
    package_version,
    success_rates,
)

ACTIONS: tuple[str, ...] = tuple(constants.actions)
ACHIEVEMENTS: tuple[str, ...] = tuple(constants.achievements)


def _pin_object_order() -> None:
    """Make Crafter reproducible from a seed.

    Crafter keeps each chunk's creatures in a set and despawns ``list(set)[random index]``;
    its objects hash by memory address, so which creature goes differs from run to run of the
    same seed. Objects here hash by where they were created instead: the same world makes
    the same choice, and nothing else changes (equality stays identity). Idempotent."""
    cls = crafter.objects.Object
    if getattr(cls, "_cairn_pinned", False):
        return
    init = cls.__init__

    def __init__(self, world, pos):
        init(self, world, pos)
        self._creation_hash = hash((int(self.pos[0]), int(self.pos[1])))

    cls.__init__ = __init__
    cls.__hash__ = lambda self: self._creation_hash
    cls._cairn_pinned = True


class CrafterEnv(gym.Env[np.ndarray, int]):
    """One Crafter world per episode; ``reset(seed=s)`` makes the same world for the same s.

    ``terminated`` is True when the player dies; ``truncated`` when ``length`` steps pass.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int = 64,
        length: int = 10000,
        area: tuple[int, int] = (64, 64),
        render_mode: str | None = "rgb_array",
    ):
        if size < 9:
            raise ValueError(f"size must be at least 9 pixels (one per view column), got {size}")
        _pin_object_order()
        self.size = size
        self.length = length
        self.render_mode = render_mode
        self._env = crafter.Env(area=area, size=(size, size), length=length, reward=True, seed=0)
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.action_names = ACTIONS
        self.achievement_names = ACHIEVEMENTS
        self._last_obs: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # Crafter seeds each world from (seed, episode number); pinning both makes
        # reset(seed=s) reproduce the same world no matter what ran before.
        self._env._seed = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else seed
        self._env._episode = 0
        obs = self._env.reset()
        self._last_obs = obs
        return obs, {"privileged": self._privileged()}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, done, info = self._env.step(int(action))
        dead = info["discount"] == 0.0
        self._last_obs = obs
        return obs, float(reward), dead, bool(done and not dead), {
            "privileged": self._privileged(info)
        }

    def render(self) -> np.ndarray | None:
        return self._last_obs

    def _privileged(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        player = self._env._player
        info = info or {
            "inventory": player.inventory.copy(),
            "achievements": player.achievements.copy(),
            "semantic": self._env._sem_view(),
            "player_pos": player.pos,
        }
        return {
            "semantic": info["semantic"],
            "inventory": info["inventory"],
            "achievements": info["achievements"],
            "player_pos": np.array(info["player_pos"]),
            "facing": tuple(int(v) for v in player.facing),
            "sleeping": bool(player.sleeping),
            "daylight": float(self._env._world.daylight),
            "view": (9, 7),
        }


class CrafterGame(Game):
    """Crafter: a map game scored by Crafter's own achievements."""

    name = "crafter"
    family = "map"

    def make_env(self) -> CrafterEnv:
        kwargs = dict(self.env_kwargs)
        if "area" in kwargs:
            kwargs["area"] = tuple(kwargs["area"])
        try:
            return CrafterEnv(**kwargs)
        except TypeError as err:
            raise GameError(f"env.kwargs: {err} (known: size, length, area)") from None

    def perceiver(self, env: gym.Env) -> Any:
        from cairn.perception.crafter import CrafterParser

        return CrafterParser(size=env.observation_space.shape[0])

    def reached(self, info: dict[str, Any]) -> set[str]:
        achievements = info.get("privileged", {}).get("achievements", {})
        return {name for name, count in achievements.items() if count > 0}

    def items(self) -> tuple[str, ...]:
        return ACHIEVEMENTS

    def score(self, reached: Sequence[set[str]]) -> Score:
        """The Crafter benchmark's score over its 22 achievements."""
        rates = success_rates(reached, ACHIEVEMENTS)
        return Score("Crafter score", geometric_score(rates), rates)

    def versions(self) -> dict[str, str]:
        return {"crafter": package_version("crafter") or "unknown"}

    def import_episode(self, path: Path) -> ImportedEpisode:
        """An episode saved by Crafter's own ``crafter.Recorder`` (what ``python -m
        crafter.run_gui --record DIR`` writes when an episode ends): an ``.npz`` whose
        ``image`` holds the reset frame and one frame per step, and whose ``action``,
        ``reward``, ``done`` and ``discount`` hold one entry per step after a first one
        filled with zeros."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in ("image", "action", "reward", "done",
                                                     "discount") if key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise GameError(f"{path}: not a readable .npz file ({err})") from None
        missing = [key for key in ("image", "action", "reward", "done") if key not in arrays]
        if missing:
            raise GameError(f"{path}: not an episode saved by crafter.Recorder (no "
                            f"{', '.join(missing)}); record with python -m crafter.run_gui "
                            "--record DIR")
        frames = arrays["image"]
        size = int(self.env_kwargs.get("size", 64))
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise GameError(f"{path}: 'image' is {frames.dtype} {frames.shape}, not RGB "
                            "frames (steps + 1, height, width, 3) of uint8")
        if frames.shape[1:3] != (size, size):
            raise GameError(
                f"{path}: its frames are {frames.shape[2]}x{frames.shape[1]} pixels, but the "
                f"config's env.kwargs.size is {size}: set env.kwargs.size to "
                f"{frames.shape[1]} if they are square, or record at {size}x{size} "
                f"(crafter.Env(size=({size}, {size})); run_gui's obs are always 64x64)")
        steps = len(frames) - 1
        if steps < 1 or any(len(arrays[k]) != len(frames) for k in arrays if k != "image"):
            raise GameError(f"{path}: {len(frames)} frames and "
                            f"{', '.join(f'{len(v)} {k}' for k, v in arrays.items())}: an "
                            "episode of at least one step has as many of each")
        actions = arrays["action"][1:].astype(np.int64)
        if actions.min() < 0 or actions.max() >= len(ACTIONS):
            raise GameError(f"{path}: action {int(actions.max())} is not one of Crafter's "
                            f"{len(ACTIONS)} actions")
        self._check_view(path, frames[0], size)
        done = arrays["done"][1:].astype(bool)
        dead = arrays["discount"][1:] == 0 if "discount" in arrays else np.ones_like(done)
        terminated = done & dead
        truncated = done & ~terminated
        if not done[-1]:
            truncated[-1] = True
        return ImportedEpisode(frames, actions, arrays["reward"][1:].astype(np.float64),
                               terminated, truncated, ACTIONS, "crafter.Recorder (npz)")

    def _check_view(self, path: Path, frame: np.ndarray, size: int) -> None:
        """Cairn reads Crafter's default view: 9x7 tiles around the player, the centre one
        the player's, and two rows of inventory, where a fresh world shows every vital
        above zero (another view puts the tiles and digits elsewhere)."""
        from cairn.perception.crafter import PLAYER, CrafterParser

        percept = CrafterParser(size=size).parse(frame)
        vitals = ("health", "food", "drink", "energy")
        if percept.name_at(*PLAYER) != "player" or \
                not all(percept.counters.get(name, 0) > 0 for name in vitals):
            raise GameError(f"{path}: the first frame does not look like Crafter's default "
                            "9x9 view (the player in the middle, every vital above zero); "
                            "record with run_gui's default --view 9 9")
