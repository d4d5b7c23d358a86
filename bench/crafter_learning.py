"""Does the agent get better by itself, and how reliably? Train from an empty store with
several training seeds (one process each), and at fixed env-step checkpoints score the
knowledge so far, frozen, on held-out worlds; beside it, a random agent and the agent with
learning disabled on the same worlds. Prints mean and spread over seeds per checkpoint and
per achievement, writes everything as JSON and draws the curve and the achievement bars
with matplotlib.

    python -m bench.crafter_learning --train-seeds 0 1000 2000 --budget 100000 --jobs 2

A checkpoint is taken after the episode that crosses it, so its step count is a little
above the nominal one; the JSON keeps both. The same config, seeds and budget give the same
numbers in any process (``tests/runtime/test_evaluate.py`` pins it). A run stopped part
way goes on with ``--resume`` from each seed's last resume point (``bench/resume_point.py``)
to the figures it would have given uninterrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.resume_point import ResumeError, ResumePoint, store_files
from cairn.envs.x11 import die_with
from cairn.experience.snapshot import open_snapshot, take_snapshot
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import ConfigError, RunConfig, load_config, settings
from cairn.runtime.evaluate import Progress, Scored, knowledge_size, play, random_agent, train
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parent.parent
STANDARD_CHECKPOINTS = (10_000, 30_000, 100_000, 300_000, 1_000_000)
ANCHORS = {
    "DreamerV3 (1M)": 14.5,
    "Achievement Distillation (1M)": 21.8,
    "SPRING, GPT-4 (no steps)": 27.3,
}
"""Published Crafter scores the bench draws for scale; all at 1M env steps unless said."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "crafter.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (e.g. --set agent.interact_tries=8); repeat "
                             "for several")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1000, 2000],
                        help="first training world seed of each run (and its agent's seed)")
    parser.add_argument("--budget", type=int, default=30000, help="training env steps per seed")
    parser.add_argument("--checkpoints", type=int, nargs="+",
                        help="env steps at which to score the knowledge held out (default: "
                             "10k, 30k, 100k, 300k, 1M up to the budget, and the budget)")
    parser.add_argument("--generation", type=int, default=5, help="episodes per generation")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help="held-out episodes (default 100; with 20, one store's score "
                             "moves by about 2.3 points from one set of worlds to the next)")
    parser.add_argument("--eval-seed", type=int, default=100000,
                        help="first held-out world seed (keep it far from the training seeds)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on episode length")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once")
    parser.add_argument("--out", default="runs/crafter_learning",
                        help="folder for learning.json, the plots and each seed's store")
    parser.add_argument("--resume", action="store_true",
                        help="go on from each seed's resume point in --out (kept every "
                             "--save-every steps and after every checkpoint), playing what "
                             "the uninterrupted run would have; the budget may be raised")
    parser.add_argument("--save-every", type=int, default=50_000,
                        help="env steps between resume points")
    args = parser.parse_args(argv)
    if min(args.budget, args.eval_episodes, args.jobs, args.generation, args.save_every) < 1:
        parser.error("--budget, --eval-episodes, --generation, --jobs and --save-every must "
                     "be positive")
    if len(set(args.train_seeds)) != len(args.train_seeds):
        parser.error("--train-seeds must differ")
    points = args.checkpoints or [c for c in STANDARD_CHECKPOINTS if c < args.budget]
    args.checkpoints = sorted({*(c for c in points if 0 < c <= args.budget), args.budget})
    return args


def scored(agent: Scored) -> dict[str, Any]:
    return {"score": agent.score(), "rates": agent.rates(), "played_steps": agent.steps,
            "reached": [sorted(r) for r in agent.reached]}


def made_with(config: RunConfig, args: argparse.Namespace, seeds: list[int]) -> dict[str, Any]:
    """What a resume point must have been made with to be gone on from."""
    return {"config": dataclasses.asdict(config), "generation": args.generation,
            "held_out_seeds": seeds}


def check_resume_points(config: RunConfig, args: argparse.Namespace, seeds: list[int]) -> None:
    """Every seed's resume point, before any seed starts: one that ``--resume`` cannot go
    on from, or an unfinished one a run without it would start afresh over, stops the
    bench (a seed already training would hold it up for hours)."""
    for seed in args.train_seeds:
        point = ResumePoint(Path(args.out), seed)
        if not args.resume:
            point.refuse_unfinished()
        elif point.exists():
            point.check(made_with(config, args, seeds))


def run_seed(config: RunConfig, train_seed: int, args: argparse.Namespace,
             seeds: list[int]) -> dict[str, Any]:
    """One training run from an empty store (or its resume point), scored held out at
    every checkpoint."""
    out = Path(args.out)
    store_path = out / f"store-seed{train_seed}.sqlite"
    point = ResumePoint(out, train_seed)
    made = made_with(config, args, seeds)
    start, state = Progress(), {"checkpoints": [], "generations": [], "seconds": 0.0}
    if args.resume and point.exists():
        start, state = point.load(store_path, made)
        print(f"[seed {train_seed}] going on from {start.steps} steps "
              f"({start.episodes} episodes)", flush=True)
        if state.get("commit") != args.commit:
            print(f"[seed {train_seed}] warning: the run so far was played by commit "
                  f"{state.get('commit')}, this is {args.commit}", flush=True)
    else:
        point.clear()
        for stale in store_files(store_path):
            stale.unlink(missing_ok=True)
    checkpoints: list[dict[str, Any]] = state["checkpoints"]
    generations: list[dict[str, Any]] = state["generations"]
    started = time.perf_counter() - state["seconds"]
    saving = {"next": start.steps + args.save_every, "now": False}

    def evaluate(steps: int, agent: Agent) -> None:
        training = time.perf_counter() - started - sum(c["eval_seconds"] for c in checkpoints)
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cairn-checkpoint-") as folder, \
                open_snapshot(take_snapshot(agent.store), Path(folder) / "s.sqlite") as snap:
            frozen = play(dataclasses.replace(config, learning="frozen"), snap, seeds, "full")
        checkpoints.append({"steps": steps, **scored(frozen),
                            "knowledge": knowledge_size(agent),
                            "train_seconds": training,
                            "eval_seconds": time.perf_counter() - began})
        saving["now"] = True  # keep a checkpoint's evaluation: it is the slow part
        print(f"[seed {train_seed}] {steps} steps: held-out score {frozen.score():.2f}, "
              f"{knowledge_size(agent)}, {training:.0f} s training", flush=True)

    def report(line: str) -> None:
        if len(generations) % 20 == 1:  # generation_done has counted this one
            print(f"[seed {train_seed}]{line}", flush=True)

    def generation_done(progress: Progress, block: Scored, agent: Agent) -> None:
        generations.append({"steps": progress.steps, "score": block.score(),
                            "episodes": len(block.reached), "knowledge": block.knowledge})
        whole = len(block.reached) == args.generation  # not cut short by the budget
        if whole and (progress.steps >= saving["next"] or saving["now"]):
            point.save(store_path, progress, {
                **made, "commit": args.commit, "budget": args.budget,
                "checkpoints": checkpoints,
                "generations": generations,
                "seconds": time.perf_counter() - started})
            saving.update(next=progress.steps + args.save_every, now=False)

    with ExperienceStore(store_path) as store:
        train(config, store, args.budget, args.generation, train_seed, report,
              args.checkpoints, evaluate, start, generation_done)
    point.mark_finished()
    return {"train_seed": train_seed, "generations": generations, "checkpoints": checkpoints,
            "store": str(store_path)}


def baselines(config: RunConfig, seeds: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cairn-off-") as folder, \
            ExperienceStore(Path(folder) / "off.sqlite") as store:
        off = play(dataclasses.replace(config, learning="off"), store, seeds, "learning off")
    return {"random": scored(random_agent(config, seeds)), "learning off": scored(off)}


def spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}


def summarize(runs: list[dict[str, Any]], nominal: list[int]) -> list[dict[str, Any]]:
    """Per nominal checkpoint: the held-out score's mean and spread over seeds, the mean
    success rate of each achievement and the knowledge size."""
    rows = []
    for i, steps in enumerate(nominal):
        points = [run["checkpoints"][i] for run in runs]
        names = points[0]["rates"]
        rows.append({
            "steps": steps,
            "score": spread([p["score"] for p in points]),
            "rates": {n: spread([p["rates"][n] for p in points]) for n in names},
            "knowledge": {k: spread([p["knowledge"].get(k, 0) for p in points])
                          for k in sorted({k for p in points for k in p["knowledge"]})},
        })
    return rows


def lowest_window(run: dict[str, Any], after: int, window: int = 10) -> float | None:
    """The lowest mean score of ``window`` training generations in a row, among windows
    that start after ``after`` env steps: does learning ever fall back?"""
    gens = run["generations"]
    scores = [g["score"] for g in gens]
    starts = [i for i, g in enumerate(gens) if g["steps"] > after and i + window <= len(gens)]
    return min((float(np.mean(scores[i:i + window])) for i in starts), default=None)


def version() -> dict[str, str]:
    from importlib.metadata import version as package

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"cairn": package("cairn"), "crafter": package("crafter"), "commit": commit}


def print_tables(result: dict[str, Any]) -> None:
    base = result["baselines"]
    print(f"\nheld-out Crafter score over {len(result['train_seeds'])} training seeds "
          f"({len(result['held_out_seeds'])} worlds): random {base['random']['score']:.2f}, "
          f"learning off {base['learning off']['score']:.2f}")
    print(f"{'env steps':>10} {'mean':>7} {'std':>6} {'min':>6} {'max':>6}  per seed")
    for row in result["summary"]:
        i = result["checkpoints"].index(row["steps"])
        each = " ".join(f"{run['checkpoints'][i]['score']:.2f}" for run in result["runs"])
        s = row["score"]
        print(f"{row['steps']:>10} {s['mean']:>7.2f} {s['std']:>6.2f} {s['min']:>6.2f} "
              f"{s['max']:>6.2f}  {each}")
    first = result["checkpoints"][0]
    lows = [lowest_window(run, first) for run in result["runs"]]
    if all(low is not None for low in lows):
        print(f"lowest mean of 10 training generations in a row after {first} steps, per seed: "
              + " ".join(f"{low:.2f}" for low in lows))
    last = result["summary"][-1]
    print(f"\n{'achievement (%)':<22}{'random':>8}{'off':>8}{'full':>8}{'± std':>7}")
    for name, rate in last["rates"].items():
        print(f"{name:<22}{base['random']['rates'][name]:>8.0f}"
              f"{base['learning off']['rates'][name]:>8.0f}{rate['mean']:>8.0f}"
              f"{rate['std']:>7.0f}")
    print("\nknowledge at the last checkpoint (mean over seeds): "
          + ", ".join(f"{k} {v['mean']:.0f}" for k, v in last["knowledge"].items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        config = load_config(args.config, {**settings(args.set), "max_steps": args.max_steps})
    except ConfigError as err:
        print(f"cairn: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    seeds = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        check_resume_points(config, args, seeds)
    except ResumeError as err:
        print(f"cairn: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    started, code = time.perf_counter(), version()  # the code as it was when the run began
    args.commit = code["commit"]
    print(f"training seeds {args.train_seeds}, {args.budget} steps each, checkpoints "
          f"{args.checkpoints}; held-out worlds {seeds[0]}..{seeds[-1]}; {args.jobs} jobs",
          flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"),
                             initializer=die_with, initargs=(os.getpid(), signal.SIGTERM)) as pool:
        base_job = pool.submit(baselines, config, seeds)
        jobs = [pool.submit(run_seed, config, s, args, seeds) for s in args.train_seeds]
        runs = [job.result() for job in jobs]
        base = base_job.result()
    result = {
        "command": shlex.join([sys.executable, "-m", "bench.crafter_learning",
                               *(argv if argv is not None else sys.argv[1:])]),
        "config": dataclasses.asdict(config), "version": code,
        "train_seeds": args.train_seeds, "held_out_seeds": seeds, "budget": args.budget,
        "checkpoints": args.checkpoints, "generation": args.generation,
        "baselines": base, "runs": runs, "summary": summarize(runs, args.checkpoints),
        "seconds": time.perf_counter() - started,
    }
    (out / "learning.json").write_text(json.dumps(result, indent=1, default=str))
    print_tables(result)
    from bench.learning_plots import draw

    written = draw(result, ANCHORS, out)
    print(f"\nwritten: {out / 'learning.json'}, " + ", ".join(map(str, written))
          + f"; {result['seconds']:.0f} s in all")
    return result


if __name__ == "__main__":
    main()
