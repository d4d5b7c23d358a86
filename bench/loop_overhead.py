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

from envs.crafter import CrafterEnv
from runtime.config import load_config
from runtime.loop import Agent
from runtime.store import ExperienceStore

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


def loop_rate(steps: int, seed: int, workdir: Path, record: bool) -> tuple[float, int]:
    config = load_config(ROOT / "configs" / "crafter.yaml")
    done, elapsed, attempts, episode = 0, 0.0, 0, 0
    workdir.mkdir(parents=True, exist_ok=True)
    with ExperienceStore(workdir / "bench.sqlite") as store:
        agent = Agent(config, store, workdir / "runs" if record else None)
        while done < steps:
            agent.config.max_steps = steps - done
            result = agent.run_episode(seed + episode, episode)
            done += result.steps
            elapsed += result.seconds - result.reset_seconds
            attempts += result.attempts
            episode += 1
    return done / elapsed, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per measurement")
    parser.add_argument("--seed", type=int, default=0, help="first world seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_rate(args.steps, args.seed)
        full, attempts = loop_rate(args.steps, args.seed, Path(tmp), record=True)
        bare, _ = loop_rate(args.steps, args.seed, Path(tmp) / "norec", record=False)
    print(f"{'measure':<42} {'steps/s':>9} {'ms/step':>8} {'cost vs raw':>12}")
    for name, rate in [("raw Crafter env.step", raw),
                       ("full loop (+recording, +store)", full),
                       ("loop without recording", bare)]:
        print(f"{name:<42} {rate:>9.0f} {1000 / rate:>8.3f} {raw / rate:>11.2f}x")
    print(f"{attempts} attempts stored; target: full loop at most 1.5x the raw step")


if __name__ == "__main__":
    main()
