"""Env steps/s of a run with 1 and with N Ray workers, and in one process without Ray.

    python -m bench.scaling --workers 2 --episodes 8 --max-steps 400

Every measurement starts from an empty store and plays the same episodes (seeds) of the same
config, recording on unless ``--no-record``. Rates are env steps over the wall-clock time of
the episodes, world generation and the owner's synchronisation included, Ray's start-up left
out (printed on its own). The ratios are what matter; on a machine with N cores, N workers
should come near N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import RunConfig, load_config
from cairn.runtime.loop import Agent
from cairn.runtime.workers import ParallelRun, run_parallel

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO_2 = 1.7


def in_process(config: RunConfig, folder: Path, record: bool) -> tuple[int, float]:
    """Steps and wall-clock seconds of the one-process loop (``--workers 1``)."""
    runs = folder / "runs" if record else None
    with ExperienceStore(folder / "store.sqlite") as store, \
            Agent(config, store, runs) as agent:
        began = time.perf_counter()
        steps = sum(agent.run_episode(config.seed + i, i).steps for i in range(config.episodes))
        return steps, time.perf_counter() - began


def with_workers(config: RunConfig, folder: Path, record: bool) -> ParallelRun:
    runs = folder / "runs" if record else None
    with ExperienceStore(folder / "store.sqlite") as store:
        return run_parallel(config, store, runs, f"bench{config.workers}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "crafter.yaml")
    parser.add_argument("--workers", type=int, default=2, help="N, the workers compared with 1")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per measurement")
    parser.add_argument("--max-steps", type=int, default=400, help="env steps per episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="play without recordings")
    args = parser.parse_args(argv)
    record = not args.no_record

    base = {"episodes": args.episodes, "max_steps": args.max_steps, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="cairn-scaling-") as tmp:
        folder = Path(tmp)
        config = load_config(args.config, {**base, "workers": 1})
        steps, seconds = in_process(config, folder / "here", record)
        here = steps / seconds
        runs = {}
        for n in (1, args.workers):
            config = load_config(args.config, {**base, "workers": n})
            runs[n] = with_workers(config, folder / f"ray{n}", record)

    one = runs[1].steps_per_second
    print(f"{args.episodes} episodes of at most {args.max_steps} steps, {args.config.name}, "
          f"recording {'on' if record else 'off'}, from an empty store each time, "
          f"{os.cpu_count()} CPUs")
    print(f"{'measure':<32} {'steps':>7} {'seconds':>8} {'steps/s':>8} {'vs 1 worker':>12}")
    print(f"{'one process, no Ray':<32} {steps:>7} {seconds:>8.1f} {here:>8.0f} "
          f"{here / one:>11.2f}x")
    for n, run in runs.items():
        print(f"{f'Ray, {n} worker(s)':<32} {run.steps:>7} {run.play_seconds:>8.1f} "
              f"{run.steps_per_second:>8.0f} {run.steps_per_second / one:>11.2f}x")
    for n, run in runs.items():
        sync = run.sync_seconds
        busy = sum(r.seconds for r in run.results) / (n * run.play_seconds)
        print(f"{n} worker(s): Ray and workers started in {run.startup_seconds:.2f} s; "
              f"owner per episode (store, distil, snapshot) mean {statistics.mean(sync) * 1e3:.0f}"
              f" ms, max {max(sync) * 1e3:.0f} ms, {sum(sync) / run.play_seconds:.1%} of the run;"
              f" workers busy {busy:.0%} of it (the rest: waiting for their next snapshot)")
    ratio = runs[args.workers].steps_per_second / one
    if args.workers == 2:
        print(f"2 workers / 1 worker = {ratio:.2f}x (target >= {TARGET_RATIO_2}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
