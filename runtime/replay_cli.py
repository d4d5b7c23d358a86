"""``cairn replay``: look at a recorded episode, check it re-runs, and learn from it."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from cairn.runtime.inspect_cli import InspectError


def add_replay_commands(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay", help="play back a recorded episode",
        description="Print the timeline of a recorded episode (attempts and their diagnoses), "
                    "optionally write it as a GIF, and optionally re-run it to check that "
                    "it reproduces frame by frame.")
    replay.add_argument("episode", help="an episode directory written by 'cairn run' (with "
                                        "--distill also a run folder: all its episodes)")
    replay.add_argument("--gif", metavar="FILE",
                        help="write the frames to FILE: a .gif (or a .mp4 or .avi video) in a "
                             "folder that exists; a file already there is replaced only once "
                             "the new one is complete")
    replay.add_argument("--video", metavar="FILE",
                        help="write the frames enlarged, above a panel naming the running "
                             "attempt, the last diagnosis and any guardrail that blocked it: "
                             "an .mp4, .avi or .gif")
    replay.add_argument("--fps", type=int, default=15,
                        help="frames per second of --gif and --video, a positive whole number "
                             "(default: 15)")
    replay.add_argument("--html", metavar="FILE",
                        help="write one self-contained page: the timeline of attempts with "
                             "their frames, filters by outcome and cause, a step scrubber, and "
                             "links to the skills and guardrails each attempt produced or was "
                             "blocked by (read from --store)")
    replay.add_argument("--store", metavar="FILE",
                        help="the experience store the episode's knowledge is in (default: the "
                             "store its run wrote, if it is still there)")
    replay.add_argument("--distill", action="store_true",
                        help="rebuild the attempts, diagnoses and knowledge of the recording "
                             "(or of every episode of a run folder, in order) into --store, "
                             "which must not hold them yet: learning from recordings made "
                             "earlier, by another agent or by a person (see docs/offline.md)")
    replay.add_argument("--learning", choices=["learn", "frozen", "off"], default="learn",
                        help="with --distill: learn (default), frozen (diagnose with the "
                             "store's knowledge, add none) or off")
    replay.add_argument("--segment", action="store_true",
                        help="with --distill: cut the actions into attempts by their roles, "
                             "as for a person's play, instead of using the recorded attempts")
    replay.add_argument("--verify", action="store_true",
                        help="play the recorded actions again on a fresh env from the recorded "
                             "seed and report the first frame that differs (exit status 1)")
    replay.set_defaults(func=cmd_replay)

    imp = sub.add_parser(
        "import", help="turn episodes recorded by a game's own tools into Cairn recordings",
        description="Write a Cairn recording folder for each file (such as the files a "
                    "game's own keyboard interface saves; docs/offline.md names them), so that "
                    "'cairn replay FOLDER --distill --store S' learns from them "
                    "(see docs/offline.md).")
    imp.add_argument("files", nargs="+", help="recorded episodes, in the game's own format")
    imp.add_argument("--config", required=True,
                     help="the run config of the game they were played in (its action roles)")
    imp.add_argument("--out", required=True, help="the folder to write the recordings into")
    imp.add_argument("--seed", type=int, help="the world seed they were played from, if known")
    imp.set_defaults(func=cmd_import)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise InspectError(f"--{name} must be a positive number, got {value}")


def cmd_replay(args: argparse.Namespace) -> int:
    from cairn.experience.episodes import check_video_args, export_video, load_episode
    from cairn.experience.recording import RecordingError

    if args.distill:
        return _distill(args)
    if args.segment or args.learning != "learn":
        raise InspectError("--segment and --learning go with --distill")
    # Everything the user typed is checked before the episode is read or anything printed.
    _positive("fps", args.fps)
    for option in ("gif", "video"):
        if getattr(args, option) is not None:
            _check_output(option, getattr(args, option), lambda p: check_video_args(p, args.fps))
    if args.html is not None:
        _check_output("html", args.html, _html_name)
    if args.store is not None and not Path(args.store).is_file():  # read, not written
        raise InspectError(f"--store {args.store}: no experience store there")
    try:
        episode = load_episode(Path(args.episode), salvage=True)
    except RecordingError as err:
        raise InspectError(str(err)) from None
    if not len(episode.frames):
        if episode.faults:
            raise InspectError(f"{args.episode}: nothing readable to replay: {episode.faults[0]}")
        raise InspectError(f"{args.episode}: nothing to replay: the run was killed before it "
                           "recorded the episode's first frame; replay another episode")
    steps = len(episode.actions)
    if episode.finished:
        status = "finished"
    elif episode.metadata["finished"]:
        status = "finished, but damaged (the last readable step marked truncated)"
    else:
        status = "unfinished (marked truncated)"
    print(f"{args.episode}: {steps} steps, {len(episode.attempts)} attempts, {status}")
    for fault in episode.faults:
        print(f"  damaged: {fault}")
    if episode.dropped_attempts:
        print(f"  not shown: {episode.dropped_attempts} attempt(s) reaching past step {steps}, "
              "the last readable one")
    for t in episode.attempts:
        d = t.diagnosis
        deltas = " ".join(f"{k}{v:+d}" for k, v in sorted(d.counter_deltas.items()))
        print(f"  steps {t.step_start:>5}-{t.step_end:<5} {t.subgoal.key:<28} "
              f"{d.cause:<20} progress {d.progress:.2f}  {deltas}")
    if args.gif is not None:
        with _writing("gif", args.gif):
            export_video(episode, args.gif, fps=args.fps)
    if args.video is not None:
        from cairn.runtime.views.overlay import export_annotated

        with _writing("video", args.video):
            export_annotated(episode, args.video, fps=args.fps)
    if args.html is not None:
        _write_html(episode, args)
    return _verify(args.episode, episode) if args.verify else 0


def _distill(args: argparse.Namespace) -> int:
    from cairn.experience.store import ExperienceStore, StoreError
    from cairn.runtime.redistill import DistillError, distill_episodes, episodes_at

    others = [f"--{name}" for name in ("gif", "video", "html") if getattr(args, name)]
    if args.verify:
        others.append("--verify")
    if others:
        raise InspectError(f"--distill does not go with {', '.join(others)}: run them apart")
    if args.store is None:
        raise InspectError("--distill needs --store: the store to rebuild the knowledge into "
                           "(a new file, or one that does not hold these episodes yet)")
    try:
        episodes = episodes_at(args.episode)
        with ExperienceStore(args.store) as store:
            report = distill_episodes(episodes, store, learning=args.learning,
                                      use_recorded_attempts=not args.segment,
                                      on_episode=lambda line: print(f"  {line}"))
    except (DistillError, StoreError) as err:
        raise InspectError(str(err)) from None
    print(f"distilled into {args.store}: {report.summary()}")
    return 0


def _html_name(path: Path) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError("give a file name ending in .html")


def _write_html(episode, args: argparse.Namespace) -> None:
    from cairn.experience.store import ExperienceStore, StoreError
    from cairn.runtime.views.episode_page import write_episode_page

    store_path = args.store or ((episode.metadata.get("metadata") or {}).get("config")
                                or {}).get("store")
    store = None
    if store_path and Path(store_path).is_file():
        try:
            store = ExperienceStore(store_path, writable=False)
        except StoreError as err:
            raise InspectError(f"--store {store_path}: {err}") from None
    try:
        with _writing("html", args.html):
            write_episode_page(episode, args.html, store)
    except ValueError as err:
        raise InspectError(f"--html {args.html}: {err}") from None
    finally:
        if store is not None:
            store.close()
    if store is None:
        print("  (no store found: the page has no knowledge links; pass --store)")


def _check_output(option: str, value: str, check_type: Callable[[Path], None]) -> None:
    """Refuse, in one line, an output file that could not be written, before any work."""
    import os

    out = Path(value)
    try:
        check_type(out)
    except ValueError as err:
        raise InspectError(f"--{option} {value}: {err}") from None
    folder = out.parent
    if not folder.exists():
        raise InspectError(f"--{option} {value}: folder {folder} does not exist; create it "
                        "first or write somewhere else")
    if not folder.is_dir():
        raise InspectError(f"--{option} {value}: {folder} is a file, not a folder; "
                        "write somewhere else")
    if out.is_dir():
        raise InspectError(f"--{option} {value}: that is a folder; give a file name, "
                        f"e.g. {out / ('episode' + (out.suffix or '.gif'))}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InspectError(f"--{option} {value}: no permission to write in {folder}; "
                        "choose a folder you can write to")


@contextlib.contextmanager
def _writing(option: str, value: str) -> Iterator[None]:
    """Turn a failed write into one line naming the option, and say when it is written."""
    try:
        yield
    except OSError as err:
        raise InspectError(f"--{option} {value}: cannot write it ({err.strerror or err}); "
                        "choose a folder you can write to") from None
    print(f"wrote {value}")


def _verify(name: str, episode) -> int:
    from cairn.runtime.replay import VerifyError, verify

    try:
        result = verify(episode)
    except VerifyError as err:
        raise InspectError(f"{name}: cannot verify: {err}") from None
    seed = episode.metadata.get("seed")
    if result.diverged_at is None:
        print(f"verified: {result.steps} steps re-run from seed {seed}, every frame identical")
        return 0
    print(f"diverges at frame {result.diverged_at} (0 is the reset frame), re-run from seed "
          f"{seed}: {result.detail}")
    return 1



def cmd_import(args: argparse.Namespace) -> int:
    from cairn.runtime.config import load_config
    from cairn.runtime.redistill import DistillError, import_episode

    config = load_config(args.config)
    for name in args.files:
        try:
            folder = import_episode(name, config, args.out, args.seed)
        except DistillError as err:
            raise InspectError(str(err)) from None
        except OSError as err:
            raise InspectError(f"{name}: cannot import it ({err.strerror or err})") from None
        print(f"imported {name} -> {folder}")
    print(f"learn from them: cairn replay {args.out} --distill --store STORE")
    return 0
