"""First-person perception on real Minetest games, measured against the world mod's truth.

    python -m bench.minetest_perception --seeds 1 2 3 4 5        # about 1 min a seed
    python -m bench.minetest_perception make-assets              # remake perception/assets

Plays :func:`scripted_episode` (dig the ground, turn to a trunk and dig it, dig into its
crown, look at the sky, walk) on each seed and parses every frame with the default
perceiver (``MinetestGame.perceiver``), timed as the env makes it. Then, against
``info["privileged"]``:

- crosshair: what the crosshair points at is "nothing" when the percept has no ``pointing``
  tag, else its learned crosshair kind. Kinds are mapped many-to-one onto the true node
  names by majority over the frames of the first seed (``--fit-seed``; a kind that seed never
  showed takes the name of the nearest kind it did), and agreement with the true pointed
  node ("nothing" when none is within reach) is measured on the OTHER seeds;
- HUD: each hotbar slot's count read exactly (0 for an empty slot) against the truth's
  inventory, health against the truth's hp, every counter of a frame at once; and whether
  each item kind (an icon) always meets one true item and each item one kind;
- the number of learned kinds (in the book, and seen), and the time to parse a frame.

The truth only measures and steers the script; the perceiver sees the frame alone.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from cairn.envs.game import make_game  # noqa: E402
from cairn.perception.make_minetest_assets import make_assets, scripted_episode  # noqa: E402
from cairn.runtime.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTHING = "nothing"


@dataclass
class Frame:
    """One parsed frame with its truth."""

    seed: int
    kind: str | None
    """The crosshair's learned kind, or None when nothing is pointed at."""
    pointed: str
    """The true pointed node's name, or NOTHING."""
    node: tuple[int, int, int] | None
    """The true pointed node's position."""
    slots: list[tuple[str | None, int]]
    held: dict[int, tuple[str, int]]
    """True stacks by slot index (0-7): (name, count)."""
    health: int
    hp: int
    seconds: float
    cpu: float


@dataclass
class Run:
    frames: list[Frame] = field(default_factory=list)
    kinds_in_book: int = 0
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    """Each look kind's centre (to map kinds the fit seed never showed)."""


def game(settings: dict[str, Any] | None = None, size=(640, 360)):
    config = load_config(ROOT / "configs" / "minetest.yaml")
    kwargs = dict(config.env.kwargs)
    kwargs["size"] = list(size)
    kwargs["settings"] = {**kwargs.get("settings", {}), **(settings or {})}
    return make_game("minetest", kwargs)


def play(seed: int, steps: int, settings: dict[str, Any], run: Run) -> None:
    g = game(settings)
    env = g.make_env()
    try:
        perceiver = g.perceiver(env)
        run.kinds_in_book = len(perceiver.classes)
        run.centroids = dict(zip(perceiver.classes, perceiver.looks.centroids, strict=True))
        for frame, info in scripted_episode(env, seed, steps):
            start, cpu = time.perf_counter(), time.thread_time()
            percept = perceiver.parse(frame)
            seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
            truth = info["privileged"]
            kind = (percept.classes[percept.crosshair] if "pointing" in percept.tags else None)
            target = truth["pointed"]
            run.frames.append(Frame(
                seed, kind, target["name"] if target else NOTHING,
                tuple(target["under"]) if target else None, list(percept.slots),
                {s["slot"] - 1: (s["name"], s["count"]) for s in truth["inventory"]},
                percept.counters.get("health", -1), truth["hp"], seconds, cpu))
    finally:
        env.close()


def fit_map(pairs: list[tuple[Any, str]], centroids: dict[str, np.ndarray] | None = None
            ) -> dict[Any, str]:
    """Each predicted kind -> the true name it most often meets; with ``centroids``, a kind
    never met takes the name of the nearest kind that was."""
    votes: dict[Any, Counter] = {}
    for kind, name in pairs:
        votes.setdefault(kind, Counter())[name] += 1
    mapping = {kind: c.most_common(1)[0][0] for kind, c in votes.items()}
    met = [k for k in mapping if k in (centroids or {})]
    for kind, centre in (centroids or {}).items():
        if kind not in mapping and met:
            nearest = min(met, key=lambda k: float(((centroids[k] - centre) ** 2).sum()))
            mapping[kind] = mapping[nearest]
    return mapping


def crosshair(frames: list[Frame], mapping: dict[Any, str]) -> tuple[int, int, Counter]:
    right, wrong = 0, Counter()
    for f in frames:
        said = NOTHING if f.kind is None else mapping.get(f.kind, "?")
        if said == f.pointed:
            right += 1
        else:
            wrong[(f.pointed, said)] += 1
    return right, len(frames), wrong


def steadiness(frames: list[Frame]) -> tuple[int, int]:
    """Over runs of 3+ frames pointing at one true node (seen pointing), how many frames
    show the run's most common kind, of how many."""
    same = total = 0
    run: list[str] = []
    for f, after in zip(frames, [*frames[1:], None], strict=True):
        if f.kind is not None:
            run.append(f.kind)
        if after is None or after.node != f.node or after.seed != f.seed or f.node is None:
            if len(run) >= 3:
                same += Counter(run).most_common(1)[0][1]
                total += len(run)
            run = []
    return same, total


def item_pairs(frames: list[Frame]) -> list[tuple[str, str]]:
    return [(kind, f.held[k][0]) for f in frames for k, (kind, _) in enumerate(f.slots)
            if kind is not None and k in f.held]


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:6.2f}%" if den else "     -"


def report(run: Run, fit_seed: int, args) -> None:
    fit = [f for f in run.frames if f.seed == fit_seed]
    held = [f for f in run.frames if f.seed != fit_seed]
    mapping = fit_map([(f.kind, f.pointed) for f in fit if f.kind is not None], run.centroids)
    seeds = sorted({f.seed for f in run.frames})
    print(f"Minetest perception, seeds {seeds}, up to {args.steps} scripted steps each, "
          f"world_start_time {args.start_time}; crosshair kinds mapped on seed {fit_seed}, "
          f"measured on the others\n")
    print(f"{'seed':<6}{'frames':>7}{'crosshair':>11}{'pointing':>10}{'slot counts':>13}"
          f"{'health':>9}{'all HUD':>9}")
    for seed in seeds:
        fs = [f for f in run.frames if f.seed == seed]
        right, total, _ = crosshair(fs, mapping)
        pointing = sum((f.kind is not None) == (f.pointed != NOTHING) for f in fs)
        slots = [(count == f.held.get(k, ("", 0))[1]) for f in fs
                 for k, (_, count) in enumerate(f.slots)]
        health = sum(f.health == f.hp for f in fs)
        whole = sum(f.health == f.hp and all(c == f.held.get(k, ("", 0))[1]
                                             for k, (_, c) in enumerate(f.slots)) for f in fs)
        mark = " (fit)" if seed == fit_seed else ""
        print(f"{str(seed) + mark:<6}{len(fs):>7}{pct(right, total):>11}"
              f"{pct(pointing, len(fs)):>10}{pct(sum(slots), len(slots)):>13}"
              f"{pct(health, len(fs)):>9}{pct(whole, len(fs)):>9}")
    right, total, wrong = crosshair(held, mapping)
    print(f"\ncrosshair kind agreement on held-out seeds: {pct(right, total)} "
          f"({right}/{total} frames)")
    others = []
    for seed in seeds:
        m = fit_map([(f.kind, f.pointed) for f in run.frames if f.seed == seed and f.kind],
                    run.centroids)
        r, t, _ = crosshair([f for f in run.frames if f.seed != seed], m)
        others.append(f"{seed}: {pct(r, t).strip()}")
    print(f"  the same with each seed as the fit seed: {', '.join(others)}")
    same, total = steadiness(run.frames)
    print(f"  one kind per node: {pct(same, total).strip()} of the frames pointing at one node "
          f"for 3+ frames show its most common kind ({total} frames)")
    for (truth, said), n in wrong.most_common(8):
        print(f"  {n:4d} x truth {truth!r} read as {said!r}")
    pairs = item_pairs(run.frames)
    items = fit_map(pairs)  # item kinds are icons, not clusters: mapped over every seed
    agree = sum(items[kind] == name for kind, name in pairs)
    names = {name for _, name in pairs}
    split = sum(len({k for k, n in pairs if n == name}) > 1 for name in names)
    slots = [(c == f.held.get(k, ("", 0))[1]) for f in held for k, (_, c) in enumerate(f.slots)]
    health = sum(f.health == f.hp for f in held)
    print(f"HUD on held-out seeds: slot counts exact {pct(sum(slots), len(slots))} "
          f"({len(slots)} slots), health exact {pct(health, len(held))}")
    print(f"item kinds (all seeds): {pct(agree, len(pairs))} of {len(pairs)} held stacks "
          f"read as their kind's item; {split} of {len(names)} true items split over kinds")
    used = {f.kind for f in run.frames if f.kind is not None}
    print(f"learned kinds: {run.kinds_in_book} look kinds in the book, {len(used)} seen at the "
          f"crosshair; {len({k for f in run.frames for k, _ in f.slots if k})} item kinds seen")
    for name, values in (("wall", [f.seconds for f in run.frames]),
                         ("CPU", [f.cpu for f in run.frames])):
        ms = np.array(values) * 1e3
        print(f"parse time ({name}): median {np.median(ms):.1f} ms, p99 "
              f"{np.percentile(ms, 99):.1f} ms over {len(ms)} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("command", nargs="?", default="measure",
                        choices=("measure", "make-assets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--fit-seed", type=int, help="seed whose frames map kinds to names "
                        "(default: the first)")
    parser.add_argument("--steps", type=int, default=140)
    parser.add_argument("--start-time", type=int, default=6125,
                        help="world_start_time, 0-23999 (6125: morning, the game's default)")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--out", type=Path, help="make-assets: where to write (default "
                        "perception/assets)")
    parser.add_argument("--cache", type=Path, help="make-assets: keep the calibration and "
                        "exploration frames here and reuse them")
    parser.add_argument("--look-seeds", type=int, nargs="+", default=[111, 112, 113, 114, 115],
                        help="make-assets: worlds whose frames make the look book")
    parser.add_argument("--kinds", type=int, default=32, help="make-assets: look kinds")
    args = parser.parse_args()
    if args.command == "make-assets":
        def make_env(mods, settings):
            g = game(settings, args.size)
            g.env_kwargs["world_mods"] = mods
            return g.make_env()

        extra = {"out": args.out} if args.out else {}
        extra.update(cache=args.cache, look_seeds=tuple(args.look_seeds), kinds=args.kinds)
        print(make_assets(make_env, tuple(args.size), **extra))
        return
    run = Run()
    for seed in args.seeds:
        play(seed, args.steps, {"world_start_time": args.start_time}, run)
    report(run, args.fit_seed if args.fit_seed is not None else args.seeds[0], args)


if __name__ == "__main__":
    main()
