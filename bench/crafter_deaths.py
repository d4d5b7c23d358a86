"""What ends the agent's Crafter episodes? Play a store's knowledge, frozen, on held-out
worlds and name each death's cause from Crafter's privileged state (to measure only):
lava, an attacker's blow (a zombie, awake or asleep; an arrow), a need at zero, or other.

    python -m bench.crafter_deaths STORE [--episodes 100] [--seed 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from cairn.experience.snapshot import open_snapshot, take_snapshot
from cairn.experience.store import ExperienceStore, StoreError
from cairn.perception.crafter import SEMANTIC_NAMES
from cairn.runtime.config import ConfigError, load_config
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parent.parent
NEEDS = ("food", "drink", "energy")
LOOK_BACK = 12
"""Steps before the death searched for the blow that caused it."""
NIGHT = 0.3
"""Daylight below which a death counts as at night."""


@dataclasses.dataclass
class Moment:
    """What mattered about one step, read from the privileged info after it."""

    health: int
    needs: dict[str, int]
    attackers: set[str]
    on: str
    daylight: float
    sleeping: bool


class DeathLog(gym.Wrapper):
    """Keeps a Moment per step of the current episode."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.moments: list[Moment] = []
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        self.moments.append(moment(result[4]["privileged"]))
        return result


def moment(info: dict[str, Any]) -> Moment:
    x, y = (int(v) for v in info["player_pos"])
    sem = info["semantic"]
    around = sem[max(x - 1, 0):x + 2, max(y - 1, 0):y + 2]
    inventory = info["inventory"]
    return Moment(int(inventory["health"]), {n: int(inventory[n]) for n in NEEDS},
                  {SEMANTIC_NAMES[int(v)] for v in np.unique(around)}
                  & {"zombie", "arrow", "skeleton"},
                  SEMANTIC_NAMES[int(sem[x, y])], float(info["daylight"]),
                  bool(info["sleeping"]))


def cause(moments: list[Moment]) -> str:
    """The cause of a death at the end of ``moments``."""
    last = moments[-1]
    if last.on == "lava":
        return "lava"
    recent = moments[-LOOK_BACK:]
    for before, after in reversed(list(zip(recent, recent[1:], strict=False))):
        if before.health - after.health >= 2 and (before.attackers | after.attackers):
            who = sorted(before.attackers | after.attackers)[0]
            return f"{who} (asleep)" if before.sleeping else who
    empty = [n for n in NEEDS if last.needs[n] == 0]
    return f"no {' or '.join(empty)}" if empty else "other"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="experience store whose knowledge is played, frozen")
    parser.add_argument("--config", default=str(ROOT / "configs" / "crafter.yaml"))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=100000, help="first held-out world seed")
    parser.add_argument("--json", help="write the episodes and the tally here")
    args = parser.parse_args(argv)
    try:
        if args.episodes < 1:
            raise ConfigError("--episodes must be positive")
        config = dataclasses.replace(load_config(args.config, {}), learning="frozen")
        with ExperienceStore(args.store, writable=False) as source:
            data = take_snapshot(source)
    except (ConfigError, StoreError) as err:
        print(f"cairn: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    game = config.game_adapter()
    episodes = []
    with tempfile.TemporaryDirectory(prefix="cairn-deaths-") as folder, \
            open_snapshot(data, Path(folder) / "s.sqlite") as snapshot, game.open() as env:
        log = DeathLog(env)
        with Agent(config, snapshot, None, env=log, game=game) as agent:
            for i in range(args.episodes):
                result = agent.run_episode(args.seed + i, i)
                last = log.moments[-1]
                end = cause(log.moments) if result.terminated else result.end
                episodes.append({"seed": result.seed, "steps": result.steps, "end": end,
                                 "night": last.daylight < NIGHT,
                                 "reached": sorted(result.reached)})
                print(f"  world {result.seed}: {result.steps} steps, {end}"
                      f"{' at night' if last.daylight < NIGHT else ''}", flush=True)
    tally = Counter(e["end"] + (" at night" if e["night"] else "") for e in episodes)
    steps = [e["steps"] for e in episodes]
    print(f"\nmedian episode {np.median(steps):.0f} steps; how episodes ended:")
    for end, n in tally.most_common():
        print(f"  {n:>3}  {end}")
    result = {"store": args.store, "episodes": episodes, "tally": dict(tally)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
