"""The knowledge browser: one page per skill and guardrail (every status), with what it is
now, every version it went through, and the recorded frames before and after the attempts
it rests on; and an index of them all.

Each page is self-contained (frames inline as PNG data URIs). Every recording is read once
for all the pages, and only the frames they show are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cairn.experience.episodes import load_episode
from cairn.experience.knowledge import Entry
from cairn.experience.recording import RecordingError
from cairn.experience.records import ExperienceTuple
from cairn.experience.store import ExperienceStore
from cairn.guardrails.model import Guardrail
from cairn.guardrails.store import KIND as GUARDRAIL
from cairn.runtime.views.html import esc, page, png_data_uri, write_atomic
from cairn.skills.library import KIND as SKILL

KINDS = (SKILL, GUARDRAIL)
EVIDENCE_SHOWN = 12
"""The newest attempts of an entry's evidence (and contradictions) shown with frames."""
FRAME_PX = 256
"""Small frames are scaled up (whole times) to about this size, large ones down to at most
``MAX_FRAME_PX`` wide."""
MAX_FRAME_PX = 640
COUNT_FIELDS = frozenset({"successes", "attempts", "rewarded", "provenance", "evidence",
                          "contradictions", "confidence"})
"""Body fields a version updates in place; the rest change only with a new version."""

STYLE = """
.evidence { border-top: 1px solid #ddd; padding: 6px 0; }
.evidence figure { display: inline-block; margin: 4px 12px 0 0; }
.evidence figcaption { font-size: 12px; color: #555; }
.missing { color: #a3241b; }
dl.body dt { font-weight: bold; float: left; clear: left; width: 11em; }
dl.body dd { margin-left: 12em; }
"""


def entry_filename(kind: str, key: str) -> str:
    """``<kind>-<key>.html``, the key made safe for a file name (with a short hash of the
    key when that changed it, so two keys never share a page)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
    if safe != key:
        safe += "-" + hashlib.blake2b(key.encode(), digest_size=3).hexdigest()
    return f"{kind}-{safe}.html"


def evidence_ids(entry: Entry) -> dict[str, list[int]]:
    """Section -> the attempt ids it lists: a skill's provenance, a guardrail's evidence and
    contradictions."""
    body = entry.body
    if entry.kind == SKILL:
        return {"evidence": list(body.get("provenance", []))}
    return {"evidence": list(body.get("evidence", [])),
            "contradictions": list(body.get("contradictions", []))}


class Frames:
    """The frames before and after each attempt shown, read from its episode's recording."""

    def __init__(self, recordings: dict[str, Path], runs: Path | None) -> None:
        self.recordings = recordings
        self.runs = runs
        self.frames: dict[tuple[str, int], np.ndarray] = {}
        self.problems: dict[str, str] = {}

    def collect(self, attempts: Iterable[ExperienceTuple]) -> None:
        steps: dict[str, set[int]] = {}
        for t in attempts:
            steps.setdefault(t.episode, set()).update((t.step_start, t.step_end))
        for episode, wanted in steps.items():
            folder = self.recordings.get(episode)
            if folder is None:
                self.problems[episode] = (
                    f"the recording of episode {episode} was not found under {self.runs}"
                    if self.runs is not None else
                    "no recordings folder was given (pass --runs), so no frames are shown")
                continue
            try:
                frames = load_episode(folder, salvage=True).frames
            except RecordingError as err:
                self.problems[episode] = f"the recording cannot be read: {err}"
                continue
            for step in wanted:
                if 0 <= step < len(frames):
                    self.frames[episode, step] = frames[step].copy()

    def figure(self, t: ExperienceTuple, step: int, role: str) -> str:
        frame = self.frames.get((t.episode, step))
        if frame is None:
            problem = self.problems.get(t.episode, f"frame {step} is not in the recording")
            return f'<p class="missing">{esc(role)} (step {step}): {esc(problem)}</p>'
        return (f'<figure><img class="frame {role}" alt="{role}, step {step}" '
                f'src="{_frame_uri(frame)}"><figcaption>{role} (step {step})</figcaption>'
                "</figure>")


def _frame_uri(frame: np.ndarray) -> str:
    h, w = frame.shape[:2]
    if w > MAX_FRAME_PX:
        size = (MAX_FRAME_PX, max(1, round(h * MAX_FRAME_PX / w)))
        return png_data_uri(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    return png_data_uri(frame, max(1, FRAME_PX // max(h, w)))


def write_knowledge(store: ExperienceStore, folder: Path, recordings: dict[str, Path],
                    runs: Path | None) -> Path:
    """Write ``folder/index.html`` and one page per skill and guardrail; returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [e for kind in KINDS for e in store.knowledge.current(kind)]
    shown = {(e.kind, e.key): {section: ids[-EVIDENCE_SHOWN:]
                               for section, ids in evidence_ids(e).items()} for e in entries}
    wanted = {i for sections in shown.values() for ids in sections.values() for i in ids}
    attempts = {i: t for i in sorted(wanted) if (t := store.get(i)) is not None}
    frames = Frames(recordings, runs)
    frames.collect(attempts.values())
    for entry in entries:
        history = store.knowledge.history(entry.kind, entry.key)
        body = _entry_body(entry, history, shown[entry.kind, entry.key], attempts, frames)
        write_atomic(folder / entry_filename(entry.kind, entry.key),
                     page(f"{entry.kind} {entry.key}", body, STYLE))
    return write_atomic(folder / "index.html",
                        page("Cairn knowledge", _index_body(entries), STYLE))


# -- one entry -------------------------------------------------------------------------------

def _entry_body(entry: Entry, history: list[Entry], shown: dict[str, list[int]],
                attempts: dict[int, ExperienceTuple], frames: Frames) -> str:
    parts = ['<p><a href="index.html">all skills and guardrails</a> · '
             '<a href="../index.html">report</a></p>',
             f"<h1>{esc(entry.kind)} <code>{esc(entry.key)}</code></h1>",
             f'<p>status <b id="status">{esc(entry.status)}</b>, version {entry.version}</p>',
             _fields_html(entry), "<h2>Version history</h2>", _history_html(history)]
    totals = evidence_ids(entry)
    for section, ids in shown.items():
        title = "Evidence" if section == "evidence" else "Contradicting attempts"
        blocks = "".join(_attempt_html(i, attempts.get(i), frames, section) for i in ids)
        total = len(totals[section])
        note = f" (the newest {len(ids)} of {total})" if total > len(ids) else \
            f" ({total})" if total else ""
        parts.append(f'<section id="{section}"><h2>{title}{note}</h2>'
                     f"{blocks or '<p>none</p>'}</section>")
    return "\n".join(parts)


def _describe_trigger(body: dict[str, Any]) -> str:
    try:
        return Guardrail.from_dict(body).trigger.describe()
    except (KeyError, TypeError, ValueError):
        return json.dumps(body.get("trigger"))


def _readable(entry: Entry) -> list[tuple[str, str]]:
    b = entry.body

    def listed(name: str) -> str:
        return ", ".join(map(str, b.get(name, []))) or "none"

    if entry.kind == SKILL:
        fields = [("subgoal", b.get("subgoal", entry.key)),
                  ("successes", f"{b.get('successes', 0)} of {b.get('attempts', 0)} attempts "
                                f"made while its preconditions held"),
                  ("rewarded", str(b.get("rewarded", 0))),
                  ("preconditions", listed("preconditions")),
                  ("verification", listed("verification")),
                  ("procedure", json.dumps(b.get("procedure", []))),
                  ("provenance", f"{len(b.get('provenance', []))} successful attempts")]
    else:
        fields = [("root cause", b.get("root_cause", "")),
                  ("explanation", b.get("explanation", "")),
                  ("forbidden", b.get("forbidden", "")), ("scope", b.get("scope", "")),
                  ("trigger", _describe_trigger(b)),
                  ("confidence", str(b.get("confidence", ""))),
                  ("evidence", f"{len(b.get('evidence', []))} attempts"),
                  ("contradictions", f"{len(b.get('contradictions', []))} attempts")]
    known = {"subgoal", "successes", "attempts", "rewarded", "preconditions", "verification",
             "procedure", "provenance", "root_cause", "explanation", "forbidden", "scope",
             "trigger", "confidence", "evidence", "contradictions", "status", "id"}
    return fields + [(k, json.dumps(v)) for k, v in sorted(b.items()) if k not in known]


def _fields_html(entry: Entry) -> str:
    items = "".join(f"<dt>{esc(label)}</dt><dd>{esc(str(value))}</dd>"
                    for label, value in _readable(entry))
    return f'<dl class="body" id="body">{items}</dl><div style="clear: both"></div>'


def _changes(prev: Entry | None, cur: Entry) -> str:
    """What a version changed from the one before it (counts aside)."""
    if prev is None:
        return "first version"
    out = [f"status {prev.status} → {cur.status}"] if prev.status != cur.status else []
    for key in sorted((set(prev.body) | set(cur.body)) - COUNT_FIELDS - {"status", "id"}):
        old, new = prev.body.get(key), cur.body.get(key)
        if old == new:
            continue
        if key == "trigger":
            out.append(f"trigger: {_describe_trigger(prev.body)} → {_describe_trigger(cur.body)}")
        elif isinstance(old, list) and isinstance(new, list) and all(
                isinstance(v, str) for v in old + new):
            change = [f"+{v}" for v in new if v not in old] + [f"−{v}" for v in old if v not in new]
            out.append(f"{key}: {', '.join(change) or 'reordered'}")
        else:
            text = f"{key}: {json.dumps(old)} → {json.dumps(new)}"
            out.append(text if len(text) <= 160 else text[:157] + "...")
    return "; ".join(out) or "counts only"


def _counts(entry: Entry) -> str:
    b = entry.body
    if entry.kind == SKILL:
        return f"{b.get('successes', 0)}/{b.get('attempts', 0)}"
    return (f"{len(b.get('evidence', []))} / {len(b.get('contradictions', []))} "
            f"(confidence {b.get('confidence', '')})")


def _history_html(history: list[Entry]) -> str:
    counts = "successes / attempts" if history and history[0].kind == SKILL else \
        "evidence / contradictions"
    rows = "".join(
        f'<tr class="version"><td>{e.version}</td><td>{esc(e.status)}</td>'
        f"<td>{esc(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.created_at)))}</td>"
        f"<td>{esc(_changes(prev, e))}</td><td>{esc(_counts(e))}</td></tr>"
        for prev, e in zip([None, *history], history, strict=False))
    return ("<p>Counts are those a version ended with: they are updated in place while it "
            "is the current one (the newest: as they are now).</p>"
            f'<table id="history"><tr><th>version</th><th>status</th><th>created</th>'
            f"<th>what changed</th><th>{counts}</th></tr>{rows}</table>")


def _attempt_html(attempt_id: int, t: ExperienceTuple | None, frames: Frames,
                  section: str) -> str:
    role = "" if section == "evidence" else " contradiction"
    if t is None:
        return (f'<div class="evidence{role}" data-attempt="{attempt_id}"><p>attempt '
                f"#{attempt_id} is not in this store</p></div>")
    d = t.diagnosis
    outcome = "success" if d.success else "failure"
    detail = f"; {esc(d.detail)}" if d.detail else ""
    return (f'<div class="evidence{role}" data-attempt="{attempt_id}" '
            f'data-episode="{esc(t.episode)}" data-step-start="{t.step_start}" '
            f'data-step-end="{t.step_end}"><p><b>#{attempt_id}</b> episode '
            f"<code>{esc(t.episode)}</code>, steps {t.step_start}–{t.step_end}, subgoal "
            f'<code>{esc(t.subgoal.key)}</code> → <span class="{outcome}">{esc(str(d.cause))}'
            f"</span>; effects: {esc(', '.join(d.effects) or 'none')}{detail}</p>"
            f"{frames.figure(t, t.step_start, 'before')}{frames.figure(t, t.step_end, 'after')}"
            "</div>")


# -- the index -------------------------------------------------------------------------------

def _index_body(entries: list[Entry]) -> str:
    skills = [e for e in entries if e.kind == SKILL]
    guards = [e for e in entries if e.kind == GUARDRAIL]

    def link(e: Entry) -> str:
        return (f'<a class="entry" href="{esc(entry_filename(e.kind, e.key))}">'
                f"{esc(e.key)}</a>")

    skill_rows = "".join(
        f"<tr><td>{link(e)}</td><td>{esc(e.status)}</td><td>{e.version}</td>"
        f"<td>{esc(_counts(e))}</td><td>{esc(', '.join(e.body.get('verification', [])))}</td>"
        f"<td>{esc(', '.join(e.body.get('preconditions', [])))}</td></tr>" for e in skills)
    guard_rows = "".join(
        f"<tr><td>{link(e)}</td><td>{esc(e.status)}</td><td>{e.version}</td>"
        f"<td>{esc(_counts(e))}</td><td>{esc(e.body.get('forbidden', ''))}</td>"
        f"<td>{esc(_describe_trigger(e.body))}</td></tr>" for e in guards)
    return (
        '<p><a href="../index.html">report</a></p><h1>Skills and guardrails</h1>'
        f"<h2>Skills ({len(skills)})</h2>"
        + (f'<table id="skills"><tr><th>subgoal</th><th>status</th><th>version</th>'
           f"<th>successes / attempts</th><th>verification</th><th>preconditions</th></tr>"
           f"{skill_rows}</table>" if skills else "<p>none yet</p>")
        + f"<h2>Guardrails ({len(guards)})</h2>"
        + (f'<table id="guardrails"><tr><th>id</th><th>status</th><th>version</th>'
           f"<th>evidence / contradictions</th><th>forbidden</th><th>trigger</th></tr>"
           f"{guard_rows}</table>" if guards else "<p>none yet</p>"))
