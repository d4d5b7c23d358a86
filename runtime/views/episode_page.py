"""One episode as one HTML page: its attempts as a filterable timeline, a step scrubber over
its frames, and the skills and guardrails each attempt produced, contradicted or was blocked by.

The page is self-contained (frames as inline PNGs, style and script inline). Everything read
from the recording or the store is escaped, and the scrubber's data is JSON that cannot close
its script element, so a hostile recording is shown as text and never runs.
"""

from __future__ import annotations

import json
import math
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cairn.experience.episodes import Episode
from cairn.experience.records import ExperienceTuple, State
from cairn.experience.store import ExperienceStore
from cairn.runtime.views.evidence import Link, knowledge_by_attempt, links_for, store_ids
from cairn.runtime.views.html import esc, page, png_data_uri, write_atomic

#: Most frames the scrubber embeds; a longer episode embeds every k-th frame.
MAX_SCRUB_FRAMES = 2000
#: Most bytes of frame data the scrubber embeds (large frames are thinned out sooner).
SCRUB_BUDGET_BYTES = 24 << 20
#: A thumbnail's longest side, in pixels, after ``thumb_scale``.
THUMB_MAX = 192

_ID_SAFE = frozenset(string.ascii_letters + string.digits + "-")


def anchor_id(kind: str, key: str) -> str:
    """The id of a knowledge entry's section: ``skill-<key>`` or ``guardrail-<key>``, each
    character outside ``[A-Za-z0-9-]`` written as ``_<hex>_`` (so distinct keys never meet)."""
    return f"{kind}-" + "".join(c if c in _ID_SAFE else f"_{ord(c):x}_" for c in key)


def scrub_stride(frames: np.ndarray, max_frames: int = MAX_SCRUB_FRAMES,
                 budget: int = SCRUB_BUDGET_BYTES) -> int:
    """Embed every k-th frame: at most ``max_frames`` of them, and about ``budget`` bytes
    (estimated from the largest of the first, middle and last frame as PNG)."""
    n = len(frames)
    if n == 0:
        return 1
    sample = max(len(png_data_uri(frames[i])) for i in {0, n // 2, n - 1})
    return max(1, math.ceil(n / max_frames), math.ceil(n * sample / budget))


def describe_state(s: State) -> str:
    """A state in words: its non-zero counters, what it faced and saw, its tags."""
    counters = ", ".join(f"{name} {count}" for name, count in s.counters.items() if count)
    parts = [f"counters {counters}" if counters else "no counters above zero",
             f"facing {s.facing_kind or 'nothing known'}"]
    if s.visible:
        parts.append("sees " + ", ".join(map(str, s.visible)))
    if s.tags:
        parts.append("tags " + ", ".join(map(str, s.tags)))
    return "; ".join(parts)


def _user_meta(episode: Episode) -> dict[str, Any]:
    """meta.json's ``metadata`` (episode name, game, action names), {} if it is not a dict."""
    meta = episode.metadata.get("metadata")
    return meta if isinstance(meta, dict) else {}


@dataclass
class _Names:
    """Action numbers to names, from the recording's ``action_names``."""

    names: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, episode: Episode) -> _Names:
        names = _user_meta(episode).get("action_names")
        return cls([str(n) for n in names] if isinstance(names, list) else [])

    def __call__(self, action: int) -> str:
        return self.names[action] if 0 <= action < len(self.names) else f"#{action}"

    def runs(self, actions: list[int]) -> str:
        """``move_left x3, do x2``: consecutive repeats folded."""
        out: list[list[Any]] = []
        for a in actions:
            if out and out[-1][0] == a:
                out[-1][1] += 1
            else:
                out.append([a, 1])
        return ", ".join(self(a) + (f" \u00d7{k}" if k > 1 else "") for a, k in out) or "none"


def _thumb(frames: np.ndarray, step: int, scale: int, cache: dict[int, str]) -> str:
    """The frame at ``step`` shown ``scale`` times its size (at most ``THUMB_MAX`` pixels on
    its longer side); embedded at its own size or smaller, the browser enlarges it."""
    if not 0 <= step < len(frames):
        return f'<span class="missing">frame {step} not recorded</span>'
    frame = frames[step]
    h, w = frame.shape[:2]
    f = min(scale, THUMB_MAX / max(h, w, 1))
    if step not in cache:
        if f < 1:
            frame = cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))),
                               interpolation=cv2.INTER_AREA)
        cache[step] = png_data_uri(frame)
    return (f'<img class="frame thumb" alt="frame {step}" width="{round(w * f)}" '
            f'height="{round(h * f)}" src="{cache[step]}">')


def _link_html(link: Link) -> str:
    verb = {"produced": "produced", "contradicts": "contradicts",
            "blocked": "blocked by"}.get(link.role, link.role)
    return (f'<li class="link {esc(link.role)}">{esc(verb)} <a href="#'
            f'{anchor_id(link.kind, link.key)}">{esc(link.kind)} {esc(link.key)}</a></li>')


def _attempt_html(i: int, t: ExperienceTuple, names: _Names, frames: np.ndarray,
                  links: list[Link] | None, scale: int, cache: dict[int, str]) -> str:
    d = t.diagnosis
    outcome = "success" if d.success else "failure"
    deltas = ", ".join(f"{k} {v:+d}" for k, v in d.counter_deltas.items()) or "none"
    rows = [("actions", names.runs(t.primitives)),
            ("diagnosis", f"{outcome}, cause {d.cause}"),
            ("effects", ", ".join(d.effects) or "none"), ("counter deltas", deltas),
            ("reward", f"{d.reward:g}"), ("detail", d.detail or "-"),
            ("before", describe_state(t.pre)), ("after", describe_state(t.post))]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    if links is None:
        knowledge = ""
    elif links:
        knowledge = f'<ul class="links">{"".join(map(_link_html, links))}</ul>'
    else:
        knowledge = '<p class="links none">no knowledge rests on this attempt</p>'
    return (
        f'<li class="attempt" id="attempt-{i}" data-outcome="{outcome}" '
        f'data-cause="{esc(str(d.cause))}" data-start="{t.step_start}" '
        f'data-end="{t.step_end}">\n<div class="head"><b>#{i}</b> '
        f'<code class="subgoal">{esc(t.subgoal.key)}</code> '
        f'<a href="#" class="jump" data-step="{t.step_start}">steps {t.step_start}\u2013'
        f'{t.step_end}</a> <span class="{outcome}">{esc(str(d.cause))}</span></div>\n'
        f'<div class="body"><div class="thumbs">{_thumb(frames, t.step_start, scale, cache)}'
        f'{_thumb(frames, t.step_end, scale, cache)}</div>\n'
        f'<table>{table}</table></div>{knowledge}</li>')


def _header_html(episode: Episode, name: str) -> str:
    meta = _user_meta(episode)
    successes = sum(t.diagnosis.success for t in episode.attempts)
    end = episode.end_reason or f"not finished (the recording stops at step {episode.num_steps})"
    facts = [("recording", episode.directory), ("seed", episode.seed),
             ("game", meta.get("game", "unknown")), ("steps", episode.num_steps),
             ("total reward", f"{float(episode.rewards.sum()):g}"), ("end", end),
             ("attempts", f"{len(episode.attempts)} ({successes} succeeded, "
                          f"{len(episode.attempts) - successes} failed)")]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    notes = [f"fault: {f}" for f in episode.faults]
    notes += [f"torn: the last record of {f} was cut off and dropped" for f in episode.torn]
    if episode.dropped_attempts:
        notes.append(f"{episode.dropped_attempts} attempt(s) reach past the last readable step "
                     "and are not shown")
    if not len(episode.frames):
        notes.append("no frames were recorded")
    warn = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (f"<h1>Episode <span id=\"episode-name\">{esc(name)}</span></h1>\n"
            f"<table class=\"facts\">{rows}</table>\n"
            + (f'<ul class="warnings">{warn}</ul>\n' if warn else ""))


def _entry_html(kind: str, key: str, entry: Any, linked_from: list[int]) -> str:
    title = f'<h3>{esc(kind)} <code>{esc(key)}</code></h3>'
    back = ", ".join(f'<a href="#attempt-{i}">#{i}</a>' for i in linked_from)
    if entry is None:
        body = "<p class=\"missing\">not in this store</p>"
    else:
        b = entry.body
        if kind == "skill":
            fields = [("subgoal", b.get("subgoal")),
                      ("preconditions", ", ".join(b.get("preconditions", [])) or "none"),
                      ("verification", ", ".join(b.get("verification", [])) or "none"),
                      ("successes", f"{b.get('successes')}/{b.get('attempts')} attempts, "
                                    f"{b.get('rewarded')} rewarded"),
                      ("procedure", json.dumps(b.get("procedure"))),
                      ("provenance", f"{len(b.get('provenance', []))} attempt(s)")]
        else:
            fields = [("root cause", b.get("root_cause")), ("explanation", b.get("explanation")),
                      ("trigger", entry.trigger), ("forbidden", b.get("forbidden")),
                      ("scope", b.get("scope")), ("confidence", b.get("confidence")),
                      ("evidence", f"{len(b.get('evidence', []))} attempt(s), "
                                   f"{len(b.get('contradictions', []))} contradicting")]
        fields = [("status", entry.status), ("version", entry.version), *fields]
        body = "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                                   for k, v in fields) + "</table>"
    return (f'<div class="entry {esc(kind)}" id="{anchor_id(kind, key)}">{title}{body}'
            f'<p>linked from attempt(s) {back}</p></div>')


def _knowledge_html(store: ExperienceStore | None, per_attempt: list[list[Link]] | None,
                    found: int) -> str:
    head = '<section id="knowledge"><h2>Knowledge</h2>\n'
    if store is None or per_attempt is None:
        return head + ('<p class="no-store">Knowledge links need <code>--store</code>: give '
                       'the experience store this episode was played into.</p></section>')
    if not found and per_attempt:
        head += "<p class=\"missing\">none of this episode's attempts are in this store</p>\n"
    linked: dict[tuple[str, str], list[int]] = {}
    for i, links in enumerate(per_attempt):
        for link in links:
            back = linked.setdefault((link.kind, link.key), [])
            if i not in back:
                back.append(i)
    if not linked:
        return head + "<p>no skill or guardrail is linked to this episode's attempts</p></section>"
    parts = [_entry_html(kind, key, store.knowledge.get(kind, key), back)
             for (kind, key), back in sorted(linked.items())]
    return head + "\n".join(parts) + "</section>"


def _scrub_data(episode: Episode, names: _Names) -> tuple[dict[str, Any], int]:
    stride = scrub_stride(episode.frames)
    frames = [png_data_uri(episode.frames[i]) for i in range(0, len(episode.frames), stride)]
    return {"stride": stride, "frames": frames, "actions": [int(a) for a in episode.actions],
            "names": names.names, "rewards": [round(float(r), 4) for r in episode.rewards]}, stride


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment inside it."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_episode_page(episode: Episode, store: ExperienceStore | None = None,
                        thumb_scale: int = 2) -> str:
    """The whole page as a string (see :func:`write_episode_page`)."""
    if isinstance(thumb_scale, bool) or not isinstance(thumb_scale, int) or thumb_scale < 1:
        raise ValueError(f"thumb_scale must be a positive whole number, not {thumb_scale!r}")
    meta = _user_meta(episode)
    name = str(meta.get("episode") or episode.directory.name)
    names = _Names.of(episode)
    per_attempt: list[list[Link]] | None = None
    found = 0
    if store is not None:
        ids = store_ids(store, episode.attempts)
        index = knowledge_by_attempt(store)
        per_attempt = [links_for(t, i, index) for t, i in zip(episode.attempts, ids, strict=True)]
        found = sum(i is not None for i in ids)
    cache: dict[int, str] = {}
    rows = [_attempt_html(i, t, names, episode.frames,
                          per_attempt[i] if per_attempt is not None else None, thumb_scale, cache)
            for i, t in enumerate(episode.attempts)]
    causes = Counter(str(t.diagnosis.cause) for t in episode.attempts)
    cause_options = "".join(f'<option value="{esc(c)}">{esc(c)} ({n})</option>'
                            for c, n in sorted(causes.items()))
    data, stride = _scrub_data(episode, names)
    thinned = (f'<p class="note" id="stride-note">{len(episode.frames)} frames: one in every '
               f'{stride} is embedded; a step shows the nearest one at or before it</p>'
               if stride > 1 else "")
    timeline = "\n".join(rows) if rows else (
        '<li class="empty">no attempts were recorded (the episode may have been stopped '
        'before its first attempt ended)</li>')
    body = f"""{_header_html(episode, name)}
<div class="layout">
<section id="player"><h2>Steps</h2>
<img id="frame" class="frame" alt="frame">
<p id="no-frames" class="missing" hidden>no frame recorded for this step</p>
<input type="range" id="scrubber" min="0" max="{episode.num_steps}" value="0" step="1">
<table><tr><th>step</th><td><span id="step-number">0</span> of {episode.num_steps}
<span id="frame-note" class="note"></span></td></tr>
<tr><th>action</th><td id="step-action"></td></tr>
<tr><th>reward</th><td id="step-reward"></td></tr>
<tr><th>attempt</th><td id="step-attempt"></td></tr></table>{thinned}
</section>
<section id="timeline"><h2>Attempts</h2>
<div class="filters"><label>outcome <select id="outcome-filter"><option value="all">all</option>
<option value="success">success</option><option value="failure">failure</option></select></label>
<label>cause <select id="cause-filter"><option value="all">all</option>{cause_options}</select>
</label> <span id="shown-count">{len(rows)} of {len(rows)} attempts shown</span></div>
<ol id="attempts">
{timeline}
</ol></section>
</div>
{_knowledge_html(store, per_attempt, found)}
<script type="application/json" id="episode-data">{_json_for_script(data)}</script>"""
    return page(f"Episode {name}", body, STYLE, SCRIPT)


def write_episode_page(episode: Episode, path: Path | str, store: ExperienceStore | None = None,
                       thumb_scale: int = 2) -> Path:
    """Write the episode's page to ``path``, whole or not at all; returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a file name for the page (out.html)")
    text = render_episode_page(episode, store, thumb_scale)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, text)
    except OSError as err:
        raise ValueError(f"cannot write {path}: {err.strerror or err}") from None


STYLE = """
.layout { display: grid; grid-template-columns: minmax(300px, 400px) 1fr; gap: 1.5em; }
#player { position: sticky; top: 0; align-self: start; }
#frame { width: 384px; max-width: 100%; display: block; }
#scrubber { width: 384px; max-width: 100%; margin: .5em 0; }
ol#attempts { list-style: none; padding: 0; }
.attempt { border: 1px solid #ddd; border-left: 5px solid #a3241b; margin: 0 0 .6em;
           padding: .4em .6em; }
.attempt[data-outcome="success"] { border-left-color: #176a2b; }
.attempt.current { background: #fff7d6; outline: 2px solid #e0a800; }
.attempt .body { display: flex; gap: 1em; align-items: flex-start; }
.attempt .thumbs { display: flex; gap: 4px; flex: none; }
.attempt th { width: 8em; color: #555; font-weight: normal; }
[hidden] { display: none !important; }
.missing, .warnings { color: #a3241b; }
.note { color: #666; }
.entry { border-top: 1px solid #ddd; padding: .3em 0; }
.entry:target { background: #fff7d6; }
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('episode-data').textContent);
  const rows = Array.from(document.querySelectorAll('.attempt'));
  const outcome = document.getElementById('outcome-filter');
  const cause = document.getElementById('cause-filter');
  const scrubber = document.getElementById('scrubber');
  const img = document.getElementById('frame');
  const text = (id, value) => { document.getElementById(id).textContent = value; };
  function filter() {
    let shown = 0;
    for (const row of rows) {
      const keep = (outcome.value === 'all' || row.dataset.outcome === outcome.value) &&
                   (cause.value === 'all' || row.dataset.cause === cause.value);
      row.hidden = !keep;
      if (keep) shown += 1;
    }
    text('shown-count', shown + ' of ' + rows.length + ' attempts shown');
  }
  function show(step, follow) {
    const index = Math.floor(step / data.stride);
    const has = index < data.frames.length;
    img.hidden = !has;
    document.getElementById('no-frames').hidden = has;
    if (has) img.src = data.frames[index];
    text('step-number', step);
    text('frame-note', has && index * data.stride !== step ?
         '(showing the frame of step ' + index * data.stride + ')' : '');
    const action = data.actions[step];
    text('step-action', action === undefined ? '(none: the recording ends here)' :
         (data.names[action] !== undefined ? data.names[action] : '#' + action));
    text('step-reward', step < data.rewards.length ? data.rewards[step] : '-');
    let current = null;
    for (const row of rows) {
      const inside = +row.dataset.start <= step && step < +row.dataset.end;
      row.classList.toggle('current', inside);
      if (inside && current === null) current = row;
    }
    const cell = document.getElementById('step-attempt');
    cell.textContent = '';
    if (current === null) { cell.textContent = 'none'; return; }
    if (follow && !current.hidden) current.scrollIntoView({block: 'nearest'});
    const a = document.createElement('a');
    a.href = '#' + current.id;
    a.textContent = current.querySelector('b').textContent + ' ' +
                    current.querySelector('.subgoal').textContent;
    cell.appendChild(a);
  }
  outcome.addEventListener('change', filter);
  cause.addEventListener('change', filter);
  scrubber.addEventListener('input', () => show(+scrubber.value, true));
  for (const link of document.querySelectorAll('.jump')) {
    link.addEventListener('click', (event) => {
      event.preventDefault();
      scrubber.value = link.dataset.step;
      show(+scrubber.value);
    });
  }
  filter();
  show(+scrubber.value);
})();
"""
