"""``cairn skills …`` and ``cairn guardrails …``: read, explain and switch stored knowledge."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_STORE = "runs/experience.sqlite"


class InspectError(Exception):
    """Bad input to a command that reads recordings or stores (shown as one line)."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    # --store is accepted before or after the action (`guardrails list --store x` too).
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default=argparse.SUPPRESS,
                       help=f"experience store file (default {DEFAULT_STORE})")
    skills = sub.add_parser(
        "skills", help="list or show the skills in a store",
        description="Skills are distilled from successful attempts: a subgoal, its learned "
                    "preconditions and verification, and the attempts it came from.")
    skills.add_argument("--store", default=DEFAULT_STORE, help="experience store file")
    s_sub = skills.add_subparsers(dest="action", required=True, metavar="ACTION")
    s_sub.add_parser("list", help="one line per skill", parents=[store])
    show = s_sub.add_parser("show", help="one skill in full, with its version history",
                            parents=[store])
    show.add_argument("id", help="the skill's id: its subgoal, as `skills list` shows it")
    skills.set_defaults(func=cmd_skills)

    guards = sub.add_parser(
        "guardrails", help="list, show, disable, enable or export guardrails",
        description="Guardrails are distilled from failures: a root cause, a trigger "
                    "condition, the operation they forbid, and the evidence behind them.")
    guards.add_argument("--store", default=DEFAULT_STORE, help="experience store file")
    g_sub = guards.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = g_sub.add_parser(
        "list", help="one line per guardrail, active first", parents=[store],
        description="One line per guardrail: active ones first, then candidates (seen once, "
                    "not yet enforced) and disabled ones, each group by what it forbids. "
                    "Retired guardrails (contradicted by later attempts) are counted but not "
                    "listed unless asked for.")
    listing.add_argument("--status", choices=(*LIST_ORDER, "all"), action="append",
                         help="list only this status (repeatable; 'all' lists every one, "
                              "retired included)")
    listing.add_argument("--cause", action="append", metavar="ROOT_CAUSE",
                         help="list only this root cause (repeatable): died, damage_taken, "
                              "missing_requirement, no_effect, ...")
    listing.add_argument("--forbids", metavar="TEXT",
                         help="list only guardrails whose forbidden operation contains TEXT "
                              "(a subgoal such as interact:water, or enter, primitive)")
    show = g_sub.add_parser("show", help="one guardrail with its evidence", parents=[store])
    show.add_argument("id", help="guardrail id (g-xxxxxxxx), as 'list' prints it")
    show.add_argument("--runs", default="runs",
                      help="where recordings are, to point at the evidence's frames")
    for name, text in (("disable", "stop enforcing a guardrail"),
                       ("enable", "enforce a guardrail again")):
        action = g_sub.add_parser(name, help=text, parents=[store])
        action.add_argument("id", help="guardrail id")
    export = g_sub.add_parser("export", help="every guardrail as JSON", parents=[store])
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    guards.set_defaults(func=cmd_guardrails)


def _open(path: str, writable: bool = False):
    """The store to inspect: read-only unless the command changes it, so listing a store
    someone may not write (or one being written by a run) works."""
    from cairn.experience.store import ExperienceStore, StoreError

    if not Path(path).is_file():
        raise InspectError(f"no experience store at {path} (run 'cairn run' first or pass "
                           "--store)")
    try:
        return ExperienceStore(path, writable=writable)
    except StoreError as err:
        raise InspectError(str(err)) from None


def cmd_skills(args: argparse.Namespace) -> int:
    from cairn.skills.library import KIND

    with _open(args.store) as store:
        entries = store.knowledge.current(KIND)
        if args.action == "list":
            print(f"{'id':<28} {'status':<8} {'ver':>3} {'rate':>9}  {'verification':<22} "
                  "preconditions")
            for e in entries:
                b = e.body
                rate = f"{b['successes']}/{b['attempts']}"
                print(f"{e.key:<28} {e.status:<8} {e.version:>3} {rate:>9}  "
                      f"{', '.join(b['verification']) or '-':<22} "
                      f"{', '.join(b['preconditions']) or '-'}")
            if not entries:
                print("no skills yet")
            return 0
        history = store.knowledge.history(KIND, args.id)
        if not history:
            raise InspectError(f"no skill '{args.id}' in {args.store} (see 'cairn skills list')")
        _print_fields(history[-1].body, history[-1].version)
        print("history: " + "; ".join(f"v{e.version} {e.status} "
                                      f"{'+'.join(e.body['preconditions']) or 'no preconditions'}"
                                      for e in history))
    return 0


LIST_ORDER = ("active", "candidate", "disabled", "retired")


def _list_guardrails(entries: list, statuses: list[str] | None,
                     causes: list[str] | None = None, forbids: str | None = None) -> None:
    """The guardrails of the chosen statuses (default: all but retired), root causes and
    forbidden operations, then a count of each status so that what is hidden is never a
    surprise."""
    wanted = set(LIST_ORDER) if statuses and "all" in statuses else \
        set(statuses or LIST_ORDER[:-1])
    shown = sorted((e for e in entries if e.status in wanted
                    and (not causes or e.body["root_cause"] in causes)
                    and (not forbids or forbids in e.body["forbidden"])),
                   key=lambda e: (LIST_ORDER.index(e.status) if e.status in LIST_ORDER
                                  else len(LIST_ORDER), e.body["forbidden"], e.trigger, e.key))
    if not entries:
        print("no guardrails yet")
        return
    print(f"{'id':<11} {'status':<9} {'root cause':<19} {'conf':>5} {'evid':>4}  "
          f"{'forbidden':<32} trigger")
    for e in shown:
        b = e.body
        print(f"{e.key:<11} {e.status:<9} {b['root_cause']:<19} {b['confidence']:>5.2f} "
              f"{len(b['evidence']):>4}  {b['forbidden']:<32} {e.trigger}")
    counts = {s: sum(e.status == s for e in entries) for s in LIST_ORDER}
    hidden = len(entries) - len(shown)
    how = "--status all lists them" if not causes and not forbids else \
        "left out by --status, --cause or --forbids"
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + (f"; {hidden} not listed ({how})" if hidden else ""))


def cmd_guardrails(args: argparse.Namespace) -> int:
    from cairn.guardrails.store import KIND

    with _open(args.store, writable=args.action in ("disable", "enable")) as store:
        k = store.knowledge
        if args.action == "list":
            _list_guardrails(k.current(KIND), args.status, args.cause, args.forbids)
        elif args.action == "show":
            entry = k.get(KIND, args.id)
            if entry is None:
                raise InspectError(f"no guardrail '{args.id}' in {args.store} "
                                   "(see 'cairn guardrails list')")
            _print_fields(entry.body, entry.version, skip={"evidence", "contradictions"})
            print(f"trigger (readable): {entry.trigger}")
            _print_evidence(store, entry.body["evidence"], Path(args.runs), "evidence")
            _print_evidence(store, entry.body["contradictions"], Path(args.runs),
                            "contradicting")
        elif args.action in ("disable", "enable"):
            try:
                entry = k.set_status(KIND, args.id, "disabled" if args.action == "disable"
                                     else "active")
            except KeyError:
                raise InspectError(f"no guardrail '{args.id}' in {args.store}") from None
            print(f"{entry.key}: {entry.status} (version {entry.version})")
        else:
            data = json.dumps([dict(e.body, version=e.version) for e in k.current(KIND)],
                              indent=2)
            if args.output:
                _write_atomic(Path(args.output), data + "\n")
                print(f"wrote {args.output}")
            else:
                print(data)
    return 0


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a failed export leaves an older file as it was)."""
    if path.is_dir():
        raise InspectError(f"{path} is a folder: give a file name for the export")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise InspectError(f"cannot write {path}: {err.strerror or err}; "
                           "pass another --output") from None


def _print_fields(body: dict[str, Any], version: int, skip: set[str] = frozenset()) -> None:
    print(f"version: {version}")
    for key, value in body.items():
        if key in skip:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value)
        print(f"{key}: {value}")


def _print_evidence(store, ids: list[int], runs: Path, label: str) -> None:
    print(f"{label}: {len(ids)} attempt(s)")
    from cairn.experience.episodes import find_recordings

    recordings = find_recordings(runs)
    for attempt_id in ids[-10:]:
        t = store.get(attempt_id)
        if t is None:
            print(f"  #{attempt_id}: not in this store")
            continue
        where = recordings.get(t.episode)
        frames = f"{where}/frames.bin frames {t.step_start}-{t.step_end}" if where else \
            "recording not found under " + str(runs)
        print(f"  #{attempt_id} episode {t.episode} steps {t.step_start}-{t.step_end} "
              f"{t.subgoal.key} -> {t.diagnosis.cause}; {frames}")
    if len(ids) > 10:
        print(f"  ... and {len(ids) - 10} earlier")
