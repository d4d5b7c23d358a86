"""The full perception-act loop against the raw Crafter step, measured side by side.

The loop includes pixel parsing, the world model, controllers, diagnosis, recording to
disk and the SQLite store. World generation (reset) is left out of both rates.

    python -m bench.loop_overhead --steps 3000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cairn.envs.crafter import CrafterEnv
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parent.parent


def raw_rate(steps: int, seed: int) -> float:
    """Random actions on the bare env, resetting on episode end; seconds of stepping only."""
    env = CrafterEnv(size=64)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    elapsed, done = 0.0, 0
    while done < steps:
        action = int(rng.integers(env.action_space.n))
        started = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += time.perf_counter() - started
        done += 1
        if terminated or truncated:
            env.reset(seed=seed + done)
    return done / elapsed


def loop_rate(steps: int, seed: int, workdir: Path, record: bool
              ) -> tuple[float, int, float]:
    """Steps/s of the full loop, attempts made, and the loop's time over its own time
    inside ``env.step`` (the same trajectory, so the game's varying cost cancels out)."""
    config = load_config(ROOT / "configs" / "crafter.yaml")
    done, elapsed, env_time, attempts, episode = 0, 0.0, 0.0, 0, 0
    workdir.mkdir(parents=True, exist_ok=True)
    with ExperienceStore(workdir / "bench.sqlite") as store:
        agent = Agent(config, store, workdir / "runs" if record else None)
        while done < steps:
            agent.config.max_steps = steps - done
            result = agent.run_episode(seed + episode, episode)
            done += result.steps
            elapsed += result.seconds - result.reset_seconds
            env_time += result.env_seconds
            attempts += result.attempts
            episode += 1
    return done / elapsed, attempts, elapsed / env_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per measurement")
    parser.add_argument("--seed", type=int, default=0, help="first world seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_rate(args.steps, args.seed)
        full, attempts, full_own = loop_rate(args.steps, args.seed, Path(tmp), record=True)
        bare, _, bare_own = loop_rate(args.steps, args.seed, Path(tmp) / "norec", record=False)
    print(f"{'measure':<36} {'steps/s':>8} {'ms/step':>8} {'vs raw env':>11} "
          f"{'vs its own env time':>20}")
    for name, rate, own in [("raw Crafter env.step (random)", raw, 1.0),
                            ("full loop (+recording, +store)", full, full_own),
                            ("loop without recording", bare, bare_own)]:
        print(f"{name:<36} {rate:>8.0f} {1000 / rate:>8.3f} {raw / rate:>10.2f}x "
              f"{own:>19.2f}x")
    print(f"{attempts} attempts stored. Target: the loop at most 1.5x the raw step. The last "
          "column divides the loop's time by the time its own env.step calls took, on the "
          "same trajectory; the agent's trajectory and the random one cost the game "
          "differently, so the 'vs raw env' column varies from run to run.")


if __name__ == "__main__":
    main()
