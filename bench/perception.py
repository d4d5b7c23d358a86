"""Crafter frame parser: accuracy against Crafter's privileged state, and parse time.

    python -m bench.perception --seeds 40 --steps 300

Rolls out a uniformly random policy from each seed (until death or ``--steps``), parses every
frame with ``CrafterParser`` and compares it with ``info["privileged"]``, per daylight band:
tile accuracy over all 63 tiles (an UNKNOWN tile counts as wrong), the share of tiles reported
confident, the accuracy of those, exact inventories, and the facing read off the player
sprite (awake frames only: asleep, the sprite shows no facing). Each parse is timed as the
env produces its frame, in wall time and in the thread's CPU time (which leaves out waiting
for a CPU another process holds). A day is 300 steps and it is night (daylight < 0.5) from
about step 150 to 270, so rollouts shorter than ~200 steps see no deep night.

Small matrix products only lose to thread hand-offs, so BLAS runs single-threaded here unless
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS say otherwise.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from cairn.envs.crafter import CrafterEnv  # noqa: E402
from cairn.perception.crafter import ITEMS, CrafterParser, expected_tiles  # noqa: E402
from cairn.perception.percept import UNKNOWN  # noqa: E402

BANDS = (("day", 0.5, np.inf), ("night", 0.15, 0.5), ("deep night", -np.inf, 0.15))


@dataclass
class Tally:
    frames: int = 0
    tiles: int = 0
    right: int = 0
    confident: int = 0
    confident_right: int = 0
    inventory_right: int = 0
    awake: int = 0
    facing_right: int = 0
    tags_right: int = 0
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)

    def add(self, percept, privileged: dict, seconds: tuple[float, float]) -> None:
        truth = expected_tiles(privileged)
        sure = percept.tiles != UNKNOWN
        self.frames += 1
        self.tiles += truth.size
        self.right += int((percept.tiles == truth).sum())
        self.confident += int(sure.sum())
        self.confident_right += int((percept.tiles[sure] == truth[sure]).sum())
        inventory = privileged["inventory"]
        self.inventory_right += all(percept.counters[k] == inventory[k] for k in ITEMS)
        asleep = privileged["sleeping"]
        night = privileged["daylight"] < 0.5
        self.tags_right += ("sleeping" in percept.tags) == asleep and ("night" in percept.tags
                                                                       ) == night
        if not asleep:
            dx, dy = privileged["facing"]
            self.awake += 1
            self.facing_right += percept.facing == (dy, dx)
        self.times.append(seconds[0])
        self.cpu_times.append(seconds[1])


def rollout(env: CrafterEnv, parser: CrafterParser, seed: int, steps: int,
            tallies: dict[str, Tally]) -> None:
    rng = np.random.default_rng(seed)
    frame, info = env.reset(seed=seed)
    for _ in range(steps + 1):
        start, cpu = time.perf_counter(), time.thread_time()
        percept = parser.parse(frame)
        seconds = time.perf_counter() - start, time.thread_time() - cpu
        privileged = info["privileged"]
        band = next(name for name, lo, hi in BANDS if lo <= privileged["daylight"] < hi)
        tallies[band].add(percept, privileged, seconds)
        frame, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            break


def percent(num: int, den: int) -> str:
    return f"{100 * num / den:8.2f}%" if den else f"{'-':>9}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--seeds", type=int, default=40, help="worlds to roll out (default 40)")
    parser.add_argument("--steps", type=int, default=300,
                        help="most steps per rollout; it ends earlier if the player dies "
                             "(default 300)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    parser.add_argument("--threshold", type=float, default=0.99,
                        help="posterior below which a tile is UNKNOWN (default 0.99)")
    args = parser.parse_args()

    env = CrafterEnv(size=args.size)
    crafter_parser = CrafterParser(args.size, threshold=args.threshold)
    tallies = {name: Tally() for name, _, _ in BANDS}
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rollout(env, crafter_parser, seed, args.steps, tallies)
    wall = time.perf_counter() - start

    total = Tally()
    for tally in tallies.values():
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
    print(f"CrafterParser, {args.size}x{args.size} frames, seeds {args.first_seed}.."
          f"{args.first_seed + args.seeds - 1}, up to {args.steps} random steps each "
          f"({wall:.0f} s)\n")
    print(f"{'band':<11}{'frames':>7}{'tile acc':>10}{'confident':>10}{'conf acc':>10}"
          f"{'inventory':>10}{'facing':>10}{'tags':>10}")
    for name, tally in [*tallies.items(), ("all", total)]:
        print(f"{name:<11}{tally.frames:>7}"
              f"{percent(tally.right, tally.tiles)}{percent(tally.confident, tally.tiles)}"
              f"{percent(tally.confident_right, tally.confident)}"
              f"{percent(tally.inventory_right, tally.frames)}"
              f"{percent(tally.facing_right, tally.awake)}"
              f"{percent(tally.tags_right, tally.frames)}")
    print(f"\nparse time per frame over {total.frames} frames, timed as the env makes them "
          f"(BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    for name, times in (("wall", total.times), ("CPU", total.cpu_times)):
        times = np.array(times) * 1e3
        print(f"  {name:<5}median {np.median(times):.3f} ms, p99 {np.percentile(times, 99):.3f} ms")
    print("bands by true daylight: day >= 0.5, night 0.15-0.5, deep night < 0.15; "
          "tags: 'night' and 'sleeping' both right")


if __name__ == "__main__":
    main()
