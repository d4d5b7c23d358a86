"""What learning with workers gives up: the same training episodes played in one process
(distilling after every attempt), by 1 Ray worker (distilling after every episode) and by N
Ray workers (each episode also misses what its N-1 peers are still playing); then each
trained store plays the same held-out worlds with its knowledge frozen.

    python -m bench.worker_learning --episodes 60 --workers 2 --eval-episodes 20

Prints the score per generation of training episodes against the env steps played so far,
and the held-out score of each store.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import RunConfig, load_config
from cairn.runtime.evaluate import play
from cairn.runtime.loop import Agent, EpisodeResult
from cairn.runtime.workers import run_parallel

ROOT = Path(__file__).resolve().parent.parent


def train_here(config: RunConfig, store: ExperienceStore) -> list[EpisodeResult]:
    with Agent(config, store, None) as agent:
        return [agent.run_episode(config.seed + i, i) for i in range(config.episodes)]


def curve(config: RunConfig, results: list[EpisodeResult], generation: int
          ) -> list[tuple[int, float]]:
    """(env steps played so far, score of the generation) per block of episodes."""
    game, points, steps = config.game_adapter(), [], 0
    for first in range(0, len(results), generation):
        block = results[first:first + generation]
        steps += sum(r.steps for r in block)
        points.append((steps, game.score([r.reached for r in block]).value))
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "crafter.yaml")
    parser.add_argument("--episodes", type=int, default=60, help="training episodes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generation", type=int, default=10, help="episodes per point")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--eval-seed", type=int, default=100000)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on episode length")
    args = parser.parse_args(argv)

    config = load_config(args.config, {"episodes": args.episodes, "seed": args.train_seed,
                                       "max_steps": args.max_steps})
    held_out = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    variants = {"one process": 0, "1 Ray worker": 1, f"{args.workers} Ray workers": args.workers}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cairn-worker-learning-") as tmp:
        for name, workers in variants.items():
            began = time.perf_counter()
            path = Path(tmp) / f"{workers}.sqlite"
            with ExperienceStore(path) as store:
                if workers == 0:
                    results = train_here(config, store)
                else:
                    run = run_parallel(dataclasses.replace(config, workers=workers), store,
                                       None, f"learn{workers}")
                    results = run.results
            trained = time.perf_counter() - began
            with ExperienceStore(path) as store:
                frozen = play(dataclasses.replace(config, learning="frozen"), store, held_out,
                              name)
            rows.append((name, curve(config, results, args.generation), frozen.score(),
                         trained))
            print(f"{name}: trained in {trained:.0f} s, held-out score {frozen.score():.2f}",
                  flush=True)

    print(f"\n{args.episodes} training episodes from seed {args.train_seed}, "
          f"{args.eval_episodes} held-out worlds from seed {args.eval_seed}")
    print("score per generation of training episodes, at (env steps so far):")
    for name, points, _, _ in rows:
        print(f"  {name:<16} " + "  ".join(f"{score:5.2f} ({steps})" for steps, score in points))
    print(f"{'':<18}{'held-out score':>15} {'training s':>11}")
    for name, _, score, seconds in rows:
        print(f"  {name:<16}{score:>15.2f} {seconds:>11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
