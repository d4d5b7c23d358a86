"""``cairn report``: a run or a store as pictures; ``cairn export``: recordings as datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from cairn.runtime.inspect_cli import InspectError


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="draw a run or a store: learning curves, success rates, knowledge",
        description="Write a folder with one HTML page (index.html) and its figures, drawn "
                    "with matplotlib: score per episode and per env step, per-subgoal success "
                    "rates, skills and guardrails over time, the most frequent failure causes; "
                    "and a knowledge browser (knowledge/index.html) with every skill and "
                    "guardrail, its version history and the frames of the attempts behind it. "
                    "Needs the report extra: pip install 'cairn[report]'.")
    report.add_argument("target", help="a run folder (its recordings name their store) or an "
                                       "experience store file")
    report.add_argument("--html", metavar="DIR", required=True,
                        help="the folder to write index.html and the figures into (created if "
                             "missing)")
    report.add_argument("--runs", metavar="DIR",
                        help="where the recordings are, to show the frames of evidence "
                             "(default: the run folder given as target; none for a store)")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser(
        "export", help="write recordings as a Minari dataset for offline-RL tools",
        description="Write recorded episodes (frames as observations, the recorded actions, "
                    "rewards, terminations and truncations) as a Minari dataset, the Gymnasium "
                    "ecosystem's format for recorded episodes, loadable with "
                    "minari.load_dataset. Needs the minari extra: pip install 'cairn[minari]'.")
    export.add_argument("recordings", nargs="+",
                        help="episode folders, or run folders (every episode in them, in order)")
    export.add_argument("--minari", metavar="DATASET_ID", required=True,
                        help="the dataset's id, e.g. cairn/run-v0")
    export.add_argument("--minari-root", metavar="DIR",
                        help="where datasets are kept (default: Minari's own, "
                             "$MINARI_DATASETS_PATH or ~/.minari/datasets)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace a dataset that already has this id")
    export.set_defaults(func=cmd_export)


def cmd_report(args: argparse.Namespace) -> int:
    from cairn.runtime.views.report import resolve_target, write_report

    try:
        store, runs = resolve_target(Path(args.target), Path(args.runs) if args.runs else None)
        index = write_report(store, Path(args.html), runs)
    except (ValueError, ImportError) as err:
        raise InspectError(str(err)) from None
    except OSError as err:
        raise InspectError(f"--html {args.html}: cannot write the report "
                           f"({err.strerror or err}); choose a folder you can write to") from None
    print(f"wrote {index} (from {store}{f', recordings under {runs}' if runs else ''})")
    print(f"knowledge browser: {index.parent / 'knowledge' / 'index.html'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cairn.experience.episodes import list_episodes
    from cairn.experience.minari_export import check_dataset_id, export_minari
    from cairn.experience.recording import RecordingError

    try:
        check_dataset_id(args.minari)
    except ValueError as err:
        raise InspectError(f"--minari {args.minari}: {err}") from None
    episodes = []
    for given in map(Path, args.recordings):
        found = list_episodes(given)
        if not found:
            raise InspectError(f"{given}: no recorded episodes there (give an episode folder "
                               "or a run folder written by 'cairn run')")
        episodes += found
    try:
        folder = export_minari(episodes, args.minari, args.minari_root,
                               overwrite=args.overwrite)
    except (ValueError, ImportError, RecordingError) as err:
        raise InspectError(str(err)) from None
    except OSError as err:
        raise InspectError(f"cannot write the dataset ({err.strerror or err}); pass another "
                           "--minari-root") from None
    print(f"wrote {len(episodes)} episode(s) as Minari dataset {args.minari} in {folder}")
    return 0
