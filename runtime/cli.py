"""``cairn``: run the agent, replay recorded episodes."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cairn.envs.x11 import Terminated
from cairn.runtime.config import ConfigError, RunConfig, load_config, settings
from cairn.runtime.inspect_cli import InspectError, add_commands
from cairn.runtime.replay_cli import add_replay_commands
from cairn.runtime.report_cli import add_report_commands
from cairn.runtime.run_table import holdings, holdings_line, print_table, score_trend


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UserError, ConfigError, InspectError) as err:
        print(f"cairn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0  # output piped into e.g. `head`, which stopped reading
    except KeyboardInterrupt as err:
        print("cairn: interrupted; recordings and the store keep every completed step",
              file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        stop = _kill_switch(err)
        if stop is None:
            raise
        # An env's kill switch: the user stopped the run on purpose.
        print(f"cairn: {stop}; recordings and the store keep every completed step",
              file=sys.stderr)
        return 3


def _kill_switch(err: BaseException | None) -> BaseException | None:
    """The kill-switch exception behind ``err``: itself, or what Python wrapped it in (a
    signal that lands while a dataclass is being defined comes as a RuntimeError's cause)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if getattr(err, "end_reason", None) == "killed":
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cairn",
        description="Cairn: a game agent that sees the screen, acts through the game's "
                    "inputs and learns from every attempt.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run the agent on the environment a config names",
        description="Run the agent for some episodes, recording each one and adding every "
                    "attempt to the experience store. Prints the world seeds it plays, a "
                    "progress line and a final table (per episode: steps, attempts, how it "
                    "ended, what it reached; then the game's own score, how it moved from "
                    "the first third of the episodes to the last, and what the store holds).")
    run.add_argument("config", help="YAML run config (see configs/)")
    run.add_argument("--episodes", type=int, help="episodes to run (default: the config's)")
    run.add_argument("--seed", type=int,
                     help="world seed of the first episode; episode i uses seed+i (default: "
                          "the one after the last this store has played under the config's "
                          "name, else the config's)")
    run.add_argument("--store", help="experience store file (SQLite); created if missing, "
                                     "read and extended if it exists")
    run.add_argument("--out", help="directory for this run's recordings (a subfolder per run)")
    run.add_argument("--max-steps", type=int,
                     help="stop each episode after this many env steps")
    run.add_argument("--learning", choices=["learn", "frozen", "off"],
                     help="learn: distil skills and guardrails as it plays (default); "
                          "frozen: play stored knowledge, adding none and making no "
                          "attempt only to learn (planner.experiments); off: no knowledge")
    run.add_argument("--workers", type=int,
                     help="episodes played at once, each by its own Ray worker process; "
                          "knowledge is distilled between batches of that many episodes "
                          "(default: the config's, 1: one process, no Ray)")
    run.add_argument("--address",
                     help="run the workers on an existing Ray cluster: 'auto' or the head "
                          "node's HOST:PORT (see docs/workers.md)")
    run.add_argument("--no-record", action="store_true", help="do not record episodes")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="change one config value, by dotted key, the value read as YAML "
                          "(e.g. --set env.kwargs.task=dirt); repeat for several")
    run.set_defaults(func=cmd_run)

    add_replay_commands(sub)
    add_report_commands(sub)
    add_commands(sub)
    return parser


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be a positive number, got {value}")


def _make_folder(path: Path, what: str, option: str) -> None:
    """Create ``path`` now, before anything is played, or say in one line why it cannot be."""
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot create {what} {path}: {blocker} is a file, not a folder; "
                        f"pass another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or err.__class__.__name__
        raise UserError(f"cannot create {what} {path}: {reason}; pass another {option}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from cairn.experience.store import ExperienceStore, StoreError
    from cairn.runtime.loop import new_run_id

    _positive("episodes", args.episodes)
    _positive("max-steps", args.max_steps)
    _positive("workers", args.workers)
    overrides = {k: v for k, v in {
        "episodes": args.episodes, "seed": args.seed, "store": args.store, "out": args.out,
        "max_steps": args.max_steps, "learning": args.learning, "workers": args.workers,
        "ray_address": args.address}.items() if v is not None}
    overrides.update(settings(args.set))  # a ConfigError: one line, status 2
    config = load_config(args.config, overrides)
    parallel = config.workers > 1 or bool(config.ray_address)
    if parallel:
        _check_ray()
    run_id = new_run_id()
    run_dir = None
    if not args.no_record:
        run_dir = Path(config.out) / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
        _make_folder(run_dir, "the recordings folder", "--out")
    _make_folder(Path(config.store).parent, "the store's folder", "--store")
    try:
        store = ExperienceStore(config.store)
    except StoreError as err:
        raise UserError(str(err)) from None
    with store:
        config, first_line = plan_seeds(config, store.seeds.last(config.name),
                                        chosen="seed" in overrides)
        before = holdings(store)
        with RunProgress(config, first_line, enabled=not args.quiet) as progress:
            run, results = _play(config, store, run_dir, run_id, progress, parallel, args.config)
        after = holdings(store)
    score = config.game_adapter().score
    trend = score_trend([r.reached for r in results], score)
    notes = [trend.line()] if trend is not None else []
    print_table(results, score([r.reached for r in results]), run_dir,
                [*notes, holdings_line(before, after)])
    print_planner(results)
    if run is None:
        return 0
    print_workers(run)
    if run.stopped:
        print(f"cairn: {run.stopped}; the store holds every attempt the workers sent back, "
              "and the recordings every completed step", file=sys.stderr)
        return {"interrupted": 130, "terminated": 143, "killed": 3}[run.stopped]
    return 0


def _play(config: RunConfig, store, run_dir: Path | None, run_id: str, progress: RunProgress,
          parallel: bool, config_path: str) -> tuple:
    """Play the run here or on workers: (the parallel run or None, the episodes' results)."""
    from cairn.envs.game import GameError
    from cairn.experience.store import StoreError

    try:
        if parallel:
            run = _run_parallel(config, store, run_dir, run_id, progress)
            return run, run.results
        return None, _run_here(config, store, run_dir, run_id, progress)
    except (GameError, ValueError) as err:
        raise UserError(f"{config_path}: {err}") from None
    except StoreError as err:  # e.g. a store indexed by another CLIP encoder
        raise UserError(str(err)) from None


def plan_seeds(config: RunConfig, last: int | None, chosen: bool) -> tuple[RunConfig, str]:
    """The config with the run's first world seed, and the line that starts the run.

    Unless the seed was chosen (``--seed``), a store that has played this run name's
    episodes goes on after the last seed it played (``last``; the config's seed if that is
    later), so a second run meets new worlds; the same store and config give the same seeds.
    """
    if chosen:
        why = "the seed given on the command line"
    elif last is None:
        why = f"the config's seed: this store has played no '{config.name}' episodes"
    elif last < config.seed:
        why = f"the config's seed: this store has played '{config.name}' up to seed {last}"
    else:
        config = dataclasses.replace(config, seed=last + 1)
        why = f"this store has played '{config.name}' up to seed {last}; --seed N plays others"
    n, first = config.episodes, config.seed
    seeds = f"world seed {first}" if n == 1 else f"world seeds {first}-{first + n - 1}"
    return config, f"{config.name}: {n} episode{'s' * (n != 1)} on {seeds} ({why})"


def _run_here(config: RunConfig, store, run_dir: Path | None, run_id: str,
              progress: RunProgress) -> list:
    from cairn.runtime.loop import Agent

    results: list = []
    with Agent(config, store, run_dir, run_id=run_id) as agent:
        progress.start()
        for i in range(config.episodes):
            before = sum(r.steps for r in results)

            def on_step(ep, before: int = before) -> None:
                progress.update(len(results), before + ep.step)

            results.append(agent.run_episode(config.seed + i, i, on_step))
            store.seeds.add(config.name, results[-1].seed)
            progress.update(len(results), before + results[-1].steps)
    return results


def _run_parallel(config: RunConfig, store, run_dir: Path | None, run_id: str,
                  progress: RunProgress):
    from cairn.runtime.workers import WorkerError, run_parallel

    try:
        run = run_parallel(config, store, run_dir, run_id, progress.update)
    except WorkerError as err:
        raise UserError(str(err)) from None
    if run.results:
        store.seeds.add(config.name, max(r.seed for r in run.results))
    return run


def _check_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError("--workers above 1 and --address need Ray: "
                        "pip install 'cairn[workers]' (or pip install ray)")


class RunProgress:
    """The run's first line (on standard output) and one progress bar (episodes done, steps,
    steps/s, on standard error), shown once play starts (an error before it is the only
    thing printed); ``enabled=False`` leaves out the bar."""

    def __init__(self, config: RunConfig, first_line: str, enabled: bool = True):
        self.config, self.first_line, self.enabled = config, first_line, enabled
        self.bar = None
        self.started = time.perf_counter()

    def start(self) -> None:
        """Print the first line, once."""
        if self.first_line:
            print(self.first_line, flush=True)
            self.first_line = ""

    def update(self, episodes: int, steps: int) -> None:
        self.start()
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            tty = sys.stderr.isatty()
            self.bar = tqdm(total=self.config.episodes, unit="episode", desc=self.config.name,
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.5 if tty else 10)
        rate = steps / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{steps} steps, {rate:.0f} steps/s", refresh=False)
        self.bar.update(episodes - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_planner(results) -> None:
    """A model planner's calls, tokens, cost and fallbacks over the run (nothing for the
    symbolic planner)."""
    used = [r.planner_usage for r in results if r.planner_usage]
    if not used:
        return
    total: dict[str, float] = {}
    for usage in used:
        for key, value in usage.items():
            total[key] = total.get(key, 0) + value
    cost = f"cost {total['cost']:.4f}" if all("cost" in u for u in used) else "cost unknown"
    fallbacks = ", ".join(f"{k.split(':', 1)[1]} {int(v)}" for k, v in sorted(total.items())
                          if k.startswith("fallback:")) or "none"
    print(f"planner: {int(total['calls'])} calls, {int(total['tokens'])} tokens "
          f"({int(total['prompt_tokens'])} prompt, {int(total['completion_tokens'])} "
          f"completion), {cost}; model's choice followed {int(total['followed'])}x; "
          f"fallbacks: {fallbacks}")


def print_workers(run) -> None:
    """Per worker: episodes, steps and steps/s while playing; then the run's totals."""
    for i, w in enumerate(run.workers):
        replaced = f", replaced {w.replaced}x" if w.replaced else ""
        print(f"worker {i}: {w.episodes} episode(s), {w.steps} steps, "
              f"{w.steps_per_second:.0f} steps/s{replaced}")
    sync = sum(run.sync_seconds)
    print(f"all {len(run.workers)} workers: {run.steps} steps in {run.play_seconds:.1f} s, "
          f"{run.steps_per_second:.0f} steps/s; Ray and workers started in "
          f"{run.startup_seconds:.1f} s; {len(run.sync_seconds)} episode(s) stored and "
          f"distilled in {sync:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
