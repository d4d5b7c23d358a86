"""Game adapters: everything about a game that the one loop needs, and nothing else.

The loop (``cairn.runtime.loop``) is written once. A config names a game (``game: crafter``);
the adapter registered under that name supplies what differs between games:

- the environment (a Gymnasium ``Env``) and the options for each episode's ``reset``;
- the perception that turns its frames into ``Percept``s;
- which family of generic controllers plays it (``map``: walk to remembered things and act
  on them; ``board``: click cells of a grid) -- the roles of its actions come from the config;
- what the env reports as the task's score (privileged information, for measuring only);
- the versions of what produced a recording.

Adapters know their game; nothing above this layer does.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym

FAMILIES = ("map", "board", "first_person")

GAMES: dict[str, str] = {
    "crafter": "cairn.envs.crafter:CrafterGame",
    "board": "cairn.envs.board_game:BoardGame",
    "minedojo": "cairn.envs.minedojo:MineDojoGame",
    "minetest": "cairn.envs.minetest:MinetestGame",
}
"""Adapter name (the config's ``game``) -> ``module:class``."""


class GameError(ValueError):
    """A game that cannot be started as configured; the message says why."""


@dataclass
class Score:
    """A run's score as the game defines it, with the per-item rates behind it."""

    name: str
    value: float
    rates: dict[str, float] = field(default_factory=dict)
    """Percent of episodes in which each item (an achievement, "solved") was reached."""


@dataclass
class ImportedEpisode:
    """An episode recorded outside Cairn (by the game's own tools), read into what a Cairn
    recording holds; ``cairn.runtime.redistill.import_episode`` writes it as one."""

    frames: Any
    """(T + 1, H, W, 3) uint8 frames, the reset frame first."""
    actions: Any
    """(T,) indices into ``action_names``."""
    rewards: Any
    terminated: Any
    truncated: Any
    action_names: tuple[str, ...]
    source: str
    """What wrote the file, in words."""


class Game:
    """Base adapter; subclasses set ``name`` and ``family`` and fill in the methods."""

    name = ""
    family = "map"

    def __init__(self, env_kwargs: dict[str, Any], options: dict[str, Any] | None = None):
        self.env_kwargs = dict(env_kwargs)
        self.options = dict(options or {})

    @contextlib.contextmanager
    def open(self) -> Iterator[gym.Env]:
        """The env, closed (with everything it started) when the block ends."""
        env = self.make_env()
        try:
            yield env
        finally:
            env.close()

    def make_env(self) -> gym.Env:
        raise NotImplementedError

    def perceiver(self, env: gym.Env) -> Any:
        """The perception for this env's frames: an object whose ``parse(frame)`` returns a
        ``Percept``."""
        raise NotImplementedError

    def reset_options(self, seed: int, index: int) -> dict[str, Any] | None:
        """Options for the ``reset`` of episode ``index`` (None: plain reset)."""
        return None

    def reached(self, info: dict[str, Any]) -> set[str]:
        """What the env reports the episode reached (privileged: measuring only)."""
        return set()

    def items(self) -> Sequence[str]:
        """Everything an episode can reach, for the score's rates (empty: what was seen)."""
        return ()

    def score(self, reached: Sequence[set[str]]) -> Score:
        """Default score: the share of episodes that reached each item, averaged."""
        items = list(self.items()) or sorted(set().union(set(), *reached))
        rates = success_rates(reached, items)
        value = sum(rates.values()) / len(rates) if rates else 0.0
        return Score("mean success %", value, rates)

    def versions(self) -> dict[str, str]:
        """Versions of the game's own packages, kept in every recording."""
        return {}

    def import_episode(self, path: Path) -> ImportedEpisode:
        """Read an episode recorded by the game's own tools (a person playing it); raise
        GameError, naming the file and what to do, if it cannot be used."""
        raise GameError(f"{path}: game '{self.name}' has no importer for recordings made "
                        "outside Cairn")


def success_rates(reached: Sequence[set[str]], items: Sequence[str]) -> dict[str, float]:
    """Percent of episodes in which each item was reached at least once."""
    n = max(len(reached), 1)
    return {name: 100.0 * sum(name in ep for ep in reached) / n for name in items}


def geometric_score(rates: dict[str, float]) -> float:
    """exp(mean(ln(1 + rate%))) - 1: rewards reaching many items over mastering a few."""
    if not rates:
        return 0.0
    return math.exp(sum(math.log(1 + r) for r in rates.values()) / len(rates)) - 1


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def adapter_class(name: str) -> type[Game]:
    """The adapter class registered under ``name`` (its module is imported, the env is not
    made)."""
    if name not in GAMES:
        raise GameError(f"unknown game '{name}' (known: {', '.join(sorted(GAMES))})")
    module, _, cls = GAMES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_game(name: str, env_kwargs: dict[str, Any],
              options: dict[str, Any] | None = None) -> Game:
    """The adapter a config names."""
    return adapter_class(name)(env_kwargs, options)


def game_family(name: str) -> str:
    """The controller family of a registered game."""
    return adapter_class(name).family

