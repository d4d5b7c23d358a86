"""What a Crafter world costs to make, with its noise compiled and without.

Crafter draws every new world from OpenSimplex noise, one call per cell; the `opensimplex`
package runs that noise through numba when numba is installed (a dependency of Cairn) and
as plain Python otherwise. Episodes here last a few hundred steps, so world generation is
a large share of a training run. Both ways run side by side on the same seeds, each in a
process of its own (``NUMBA_DISABLE_JIT=1`` for plain Python); the worlds must come out
identical, or the speed-up would change what the agent learns.

    python -m bench.crafter_reset --worlds 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import crafter


def make_worlds(seeds: list[int]) -> dict[str, object]:
    """Reset a Crafter env on each seed: seconds per world (the first, which may compile
    or load the compiled noise, apart) and a digest of each world's tiles and creatures."""
    env = crafter.Env(seed=seeds[0])
    times, digests = [], []
    for seed in seeds:
        env._seed = seed  # the seed Crafter's reset draws the world from
        began = time.perf_counter()
        env.reset()
        times.append(time.perf_counter() - began)
        world = env._world
        creatures = sorted((type(o).__name__, *map(int, o.pos)) for o in world.objects)
        digests.append(hashlib.blake2b(world._mat_map.tobytes() + repr(creatures).encode(),
                                       digest_size=8).hexdigest())
    rest = times[1:] or times
    return {"first": times[0], "per_world": sum(rest) / len(rest), "digests": digests}


def measure(seeds: list[int], jit: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    if not jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    code = ("import json, sys; from bench.crafter_reset import make_worlds; "
            f"print(json.dumps(make_worlds({seeds!r})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=10, help="worlds made each way")
    parser.add_argument("--seed", type=int, default=0, help="first world seed")
    args = parser.parse_args(argv)
    if args.worlds < 2:
        parser.error("--worlds must be at least 2 (the first is timed apart)")
    seeds = list(range(args.seed, args.seed + args.worlds))
    plain = measure(seeds, jit=False)
    compiled = measure(seeds, jit=True)
    print(f"{args.worlds} Crafter worlds (seeds {seeds[0]}..{seeds[-1]}), seconds per world "
          "after the first:")
    print(f"  plain Python noise   {plain['per_world']:.3f}  (first {plain['first']:.2f})")
    print(f"  compiled noise       {compiled['per_world']:.3f}  (first {compiled['first']:.2f})")
    print(f"  ratio                {plain['per_world'] / compiled['per_world']:.1f}x")
    same = plain["digests"] == compiled["digests"]
    print(f"  worlds identical:    {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
