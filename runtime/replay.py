"""Deterministic re-execution: play a recording's actions again on a fresh env, made by the
same game adapter from the recorded config and seed, and find the first frame that differs.

A game whose env is deterministic given its seed (Crafter is, with the adapter's pin of its
despawn order) reproduces every frame; a divergence points at hidden state, a changed game
version, or a recording made with other settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cairn.envs.game import GameError
from cairn.experience.episodes import Episode
from cairn.runtime.config import ConfigError, RunConfig, build


class VerifyError(ValueError):
    """A recording that cannot be re-run; the message says why."""


@dataclass
class Verification:
    steps: int
    """Recorded steps compared (after the reset frame)."""
    diverged_at: int | None
    """The first frame that differs (0: the reset frame), or None."""
    detail: str = ""


def verify(episode: Episode) -> Verification:
    meta = episode.metadata.get("metadata") or {}
    if meta.get("game") is None:
        raise VerifyError("it was recorded without its game's name (by an older Cairn): "
                          "there is nothing to re-run it with")
    try:
        game = build(RunConfig, meta.get("config") or {}, "").game_adapter()
    except (ConfigError, GameError) as err:
        raise VerifyError(f"its recorded config cannot be used: {err}") from None
    if game.family != "map":
        raise VerifyError(f"its game ({game.name}) records the regions it clicked, not the "
                          "env's own actions, so it cannot be re-run step by step")
    seed = episode.metadata.get("seed")
    with game.open() as env:
        frame, _ = env.reset(seed=seed, options=meta.get("reset_options"))
        if not np.array_equal(frame, episode.frames[0]):
            return Verification(0, 0, _difference(frame, episode.frames[0]))
        for i, action in enumerate(episode.actions, start=1):
            frame, *_ = env.step(int(action))
            if not np.array_equal(frame, episode.frames[i]):
                return Verification(i, i, _difference(frame, episode.frames[i]))
    return Verification(len(episode.actions), None)


def _difference(now: np.ndarray, recorded: np.ndarray) -> str:
    if now.shape != recorded.shape:
        return f"frame shape {now.shape} against {recorded.shape} recorded"
    differ = np.any(now != recorded, axis=-1)
    return f"{int(differ.sum())} of {differ.size} pixels differ"
