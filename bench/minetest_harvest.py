"""Harvest a log in Minetest from the screen: from an empty store, then with stored knowledge.

    python -m bench.minetest_harvest                       # about 3 min a world, at most
    python -m bench.minetest_harvest --worlds 201 202 --train-worlds 101 --minutes 1

Plays ``configs/minetest.yaml`` (the first-person kit, the default symbolic planner, pixels
only) on held-out worlds the project never used elsewhere, one episode per world:

- ``empty``: each world starts from its own empty store;
- ``trained``: one store first learns on ``--train-worlds`` (one episode of
  ``--train-minutes`` each, going on after a log), then each held-out world starts from a
  copy of that store.

A measured episode ends one step after the first log (the env's task reward: a trunk dug or
held, read from the world mod's truth) or after ``--minutes`` of the server's clock since the
world started. The truth only scores and stops the episode; the agent never sees it. The
table gives, per world, the game seconds to the first log (``-`` when none) and how far the
nearest trunk was; the JSON (``--json``) the same with the command, config and seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parents[1]


class FirstLog(gym.Wrapper):
    """Ends the episode at the first task reward or after ``limit_s`` of game time, and keeps
    when (for scoring only)."""

    def __init__(self, env: gym.Env, limit_s: float):
        super().__init__(env)
        self.limit_s, self.start, self.found_at, self.now = limit_s, 0.0, None, 0.0
        self.stop_at_log = True
        self._after = 0
        self.nearest: list[float] = []
        """Per step, the distance to the nearest task target (the truth's ``near``)."""

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        self.start, self.found_at, self.now = info["privileged"]["time"], None, 0.0
        self._after = 0
        self.nearest = [_nearest(info["privileged"])]
        return frame, info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        self.now = info["privileged"]["time"] - self.start
        self.nearest.append(_nearest(info["privileged"]))
        if self.found_at is not None:
            self._after += 1
        if reward > 0 and self.found_at is None:
            self.found_at = self.now
        # One step past the log: the HUD shows an item a frame after the truth has it, and
        # the agent's attempt should end on what it can see.
        done = self.stop_at_log and self._after >= 1
        truncated = truncated or done or self.now >= self.limit_s
        return frame, reward, terminated, truncated, info


def _nearest(truth: dict) -> float:
    near = truth.get("near") or {}
    return min((n["distance"] for n in near.values() if n), default=float("inf"))


@dataclass
class WorldResult:
    world: int
    store: str
    seconds: float | None
    """Game seconds to the first log; None when none within the limit."""
    steps: int
    attempts: int
    successes: int
    target_start: float
    """Nodes from the spawn to the nearest task target (inf: none within the truth's
    radius); measured, never shown to the agent."""
    target_closest: float


def play(config, game, env: FirstLog, world: int, store_path: Path, out: Path,
         label: str) -> WorldResult:
    with ExperienceStore(store_path) as store, \
            Agent(config, store, out, env=env, game=game, run_id=f"{label}-{world}") as agent:
        result = agent.run_episode(world, 0)
    return WorldResult(world, label, env.found_at, result.steps, result.attempts,
                       result.successes, env.nearest[0], min(env.nearest))


def summary(results: list[WorldResult]) -> str:
    times = [r.seconds if r.seconds is not None else float("inf") for r in results]
    median = statistics.median(times) if times else float("inf")
    found = sum(r.seconds is not None for r in results)
    text = f"{found}/{len(results)} worlds"
    return f"{text}, median time to the first log " + \
        ("none (most worlds had no log)" if median == float("inf") else f"{median:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "minetest.yaml")
    parser.add_argument("--worlds", type=int, nargs="+", default=list(range(201, 211)))
    parser.add_argument("--train-worlds", type=int, nargs="*", default=[131, 132, 133])
    parser.add_argument("--minutes", type=float, default=3.0, help="game time per world")
    parser.add_argument("--train-minutes", type=float, default=3.0,
                        help="game time per training world (training goes on after a log)")
    parser.add_argument("--passes", nargs="+", choices=("empty", "trained"),
                        default=["empty", "trained"], help="which stores to measure")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", type=Path, help="keep stores and recordings here")
    args = parser.parse_args()
    config = load_config(args.config, {"max_steps": 100000})
    game = config.game_adapter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cairn-harvest-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[WorldResult] = []
    with game.open() as raw:
        env = FirstLog(raw, args.minutes * 60)

        def run(world: int, store: Path, label: str) -> WorldResult:
            r = play(config, game, env, world, store, work / "runs" / f"{label}-{world}", label)
            shown = "-" if r.seconds is None else f"{r.seconds:.1f} s"
            print(f"{label:<8} world {world:<5} first log {shown:>8}  steps {r.steps:<5} "
                  f"attempts {r.attempts} ({r.successes} succeeded)  nearest target "
                  f"{r.target_start:.1f} at the start, {r.target_closest:.1f} at closest",
                  flush=True)
            return r

        if "empty" in args.passes:
            for world in args.worlds:
                results.append(run(world, work / f"empty-{world}.sqlite", "empty"))
        if args.train_worlds and "trained" in args.passes:
            trained = work / "trained.sqlite"
            env.stop_at_log, env.limit_s = False, args.train_minutes * 60
            for world in args.train_worlds:
                run(world, trained, "training")
            env.stop_at_log, env.limit_s = True, args.minutes * 60
            for world in args.worlds:
                copy = work / f"trained-{world}.sqlite"
                shutil.copyfile(trained, copy)
                results.append(run(world, copy, "trained"))
    print()
    for label in ("empty", "trained"):
        chosen = [r for r in results if r.store == label]
        if chosen:
            print(f"{label:<8} {summary(chosen)}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(["python -m bench.minetest_harvest", *sys.argv[1:]]),
            "config": str(args.config), "minutes": args.minutes, "worlds": args.worlds,
            "train_worlds": args.train_worlds, "train_minutes": args.train_minutes,
            "passes": args.passes, "results": [asdict(r) for r in results]},
            indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
