"""Does the agent get better by itself? Train from an empty store, then compare on
held-out world seeds, in one run: a random agent, the agent with learning disabled, and
the full agent with its knowledge frozen. Prints Crafter scores, per-achievement success
rates and the score per training generation; writes the curve as a PNG.

    python -m bench.crafter_learning --budget 20000 --eval-episodes 20
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.evaluate import play, plot_curve, random_agent, train

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "crafter.yaml"))
    parser.add_argument("--budget", type=int, default=20000, help="training env steps")
    parser.add_argument("--generation", type=int, default=5, help="episodes per generation")
    parser.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="first training world seed (and the agent's random seed)")
    parser.add_argument("--eval-seed", type=int, default=100000,
                        help="first held-out world seed (keep it far from the training seeds)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on episode length")
    parser.add_argument("--store", help="store file for the trained knowledge (kept)")
    parser.add_argument("--png", default="runs/crafter_learning.png", help="curve output")
    args = parser.parse_args()

    config = load_config(args.config, {"max_steps": args.max_steps})
    seeds = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    tmp = Path(tempfile.mkdtemp(prefix="cairn-learning-"))
    store_path = Path(args.store) if args.store else tmp / "trained.sqlite"
    started = time.perf_counter()

    print(f"training from an empty store for {args.budget} steps ({store_path})")
    with ExperienceStore(store_path) as store:
        generations = train(config, store, args.budget, args.generation, args.train_seed)
    print("evaluating on held-out seeds", seeds[0], "to", seeds[-1])
    rand = random_agent(config, seeds)
    with ExperienceStore(tmp / "off.sqlite") as store:
        off = play(dataclasses.replace(config, learning="off"), store, seeds, "learning off")
    with ExperienceStore(store_path) as store:
        full = play(dataclasses.replace(config, learning="frozen"), store, seeds,
                    "full (frozen)")

    agents = [rand, off, full]
    print(f"\n{'achievement':<22}" + "".join(f"{a.name:>16}" for a in agents))
    rates = [a.rates() for a in agents]
    for name in rates[0]:
        print(f"{name:<22}" + "".join(f"{r[name]:>15.0f}%" for r in rates))
    print(f"{'score':<22}" + "".join(f"{a.score():>16.2f}" for a in agents))
    print(f"{'mean episode length':<22}"
          + "".join(f"{a.steps / max(len(a.reached), 1):>16.0f}" for a in agents))
    curve = [g.score() for g in generations]
    print("\nscore per training generation:", " ".join(f"{v:.2f}" for v in curve))
    print(f"lowest after the first: {min(curve[1:] or curve):.2f}, best: {max(curve):.2f}")
    plot_curve(curve, {a.name: a.score() for a in agents}, Path(args.png))
    print(f"curve written to {args.png}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
