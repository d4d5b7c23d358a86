"""``cairn report``: how learning went, for a run or a whole store, as an HTML page of
figures (matplotlib, the optional extra ``report``) with a browser of every skill and
guardrail and the recorded frames of the attempts behind them.

``write_report(store, out_dir, runs)`` writes ``out_dir/index.html``, one PNG per figure
next to it (also inlined in the page, so the page alone is enough) and
``out_dir/knowledge/``. ``resolve_target`` turns what a person names (a run folder, or a
store file and where its recordings are) into the store and the recordings folder.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cairn.experience.episodes import find_recordings, list_episodes
from cairn.experience.knowledge import Entry
from cairn.experience.recording import META
from cairn.experience.records import Cause
from cairn.experience.store import ExperienceStore, StoreError, SubgoalStats
from cairn.runtime.views import plots
from cairn.runtime.views.html import esc, page, write_atomic
from cairn.runtime.views.knowledge_pages import KINDS, write_knowledge
from cairn.runtime.views.plots import KnowledgeEvent, SubgoalBar

CAUSE_TABLE_ROWS = 5
"""Failure causes, and subgoals per cause, listed in the table under the cause figure."""
GENERATION_ROWS = 20

STYLE = """
img.plot { max-width: 100%; border: 1px solid #ddd; }
.empty { color: #666; font-style: italic; }
td.num, th.num { text-align: right; }
"""


@dataclass
class EpisodeScore:
    name: str
    first_attempt: int
    attempts: int
    steps: int
    score: float
    recorded: bool
    """Score and steps come from the recording's meta.json (else from the store)."""


@dataclass
class ReportData:
    attempts: int
    episodes: list[EpisodeScore]
    subgoals: dict[str, SubgoalStats]
    events: list[KnowledgeEvent]
    current: dict[str, list[Entry]]
    recordings: dict[str, Path]
    episode_starts: list[float]


def resolve_target(target: Path, runs: Path | None = None) -> tuple[Path, Path | None]:
    """(store file, recordings folder or None) for ``cairn report TARGET [--runs DIR]``.

    TARGET is a run folder (its recordings name the store they were played into, which is
    used, with the folder as the recordings) or a store file. Anything else is a ValueError
    with one line saying what is wrong and what to pass instead.
    """
    target, runs = Path(target), None if runs is None else Path(runs)
    if runs is not None and not runs.is_dir():
        raise ValueError(f"{runs}: no such folder of recordings; pass the folder 'cairn run' "
                         "recorded into (its --out)")
    if target.is_dir():
        episodes = list_episodes(target)
        if not episodes:
            raise ValueError(f"{target}: no recordings in this folder (no episode folder with "
                             f"{META} and frames.bin); pass a run folder or a store file")
        store = _recorded_store(target, episodes)
        _check_store(store)
        return store, runs if runs is not None else target
    if target.is_file():
        _check_store(target)
        return target, runs
    raise ValueError(f"{target}: no such file or folder; pass a run folder or a store file")


def _some(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _check_store(path: Path) -> None:
    try:
        ExperienceStore(path, writable=False).close()
    except StoreError as err:
        raise ValueError(str(err)) from None


def _recorded_store(run_dir: Path, episodes: list[Path]) -> Path:
    """The store the recordings' config named: as given if absolute, else from the folder
    the run was started in (the current one, or the one the run folder's ``out`` hangs
    from)."""
    named: dict[str, dict] = {}
    for episode in episodes:
        try:
            config = json.loads((episode / META).read_text())["metadata"]["config"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(config, dict) and isinstance(config.get("store"), str):
            named.setdefault(config["store"], config)
    if not named:
        raise ValueError(f"{run_dir}: its recordings do not name a store (metadata.config.store "
                         f"in {META}); pass the store file, with --runs {run_dir}")
    if len(named) > 1:
        raise ValueError(f"{run_dir}: its recordings were played into {len(named)} stores "
                         f"({_some(sorted(named))}); pass one store file, with --runs "
                         f"{run_dir}")
    (config,) = named.values()
    store = Path(config["store"])
    candidates = [store] if store.is_absolute() else [Path.cwd() / store]
    out = config.get("out")
    if not store.is_absolute() and isinstance(out, str) and not Path(out).is_absolute():
        # the run folder is <base>/<out>/<name>, and the store path was relative to <base>
        parts = Path(out).parts
        run_parent = run_dir.resolve().parent
        if parts and run_parent.parts[-len(parts):] == parts:
            candidates.append(Path(*run_parent.parts[:-len(parts)]) / store)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f"{run_dir}: the run's store {store} is gone (looked for "
                     f"{', '.join(map(str, dict.fromkeys(candidates)))}); pass the store file, "
                     f"with --runs {run_dir}")


# -- reading -------------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """Payloads hold plain data only; one naming a class is refused, never run."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"store payload refers to {module}.{name}")


def _read_tables(store: ExperienceStore, scored: set[str]
                 ) -> tuple[list[tuple[str, int, int, int]], dict[str, float],
                            list[KnowledgeEvent]]:
    """The one place the report reads the store's tables itself (the schema is in
    ``experience/store_schema.py``), because the store has no call for these columns and
    loading every attempt would not scale: per episode (name, first attempt id, attempts,
    last step) in the order stored; the summed reward of each episode not in ``scored``
    (the only payloads read); and every knowledge version without its body, in the order
    written."""
    conn = store._conn
    episodes = conn.execute(
        "SELECT e.name, min(a.id), count(*), max(a.step_end) FROM attempts AS a "
        "JOIN episodes AS e ON e.id = a.episode GROUP BY a.episode ORDER BY min(a.id)"
    ).fetchall()
    rewards = {}
    for name in (row[0] for row in episodes if row[0] not in scored):
        total = 0.0
        for (payload,) in conn.execute(
                "SELECT a.payload FROM attempts AS a JOIN episodes AS e ON e.id = a.episode "
                "WHERE e.name = ?", (name,)):
            total += _PlainUnpickler(io.BytesIO(payload)).load()["diagnosis"]["reward"]
        rewards[name] = total
    events = [KnowledgeEvent(*row) for row in conn.execute(
        "SELECT kind, key, version, status, created_at FROM knowledge ORDER BY created_at, id")]
    return episodes, rewards, events


def _recorded_meta(recordings: dict[str, Path]) -> dict[str, dict]:
    metas = {}
    for name, folder in recordings.items():
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            metas[name] = meta
    return metas


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _started_at(meta: dict) -> float | None:
    try:
        return datetime.fromisoformat(meta["started_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def read_report(store: ExperienceStore, runs: Path | None) -> ReportData:
    recordings = find_recordings(runs) if runs is not None else {}
    metas = _recorded_meta(recordings)
    scored = {name for name, meta in metas.items() if _number(meta.get("total_reward")) is not None}
    rows, rewards, events = _read_tables(store, scored)
    episodes = []
    for name, first, attempts, last_step in rows:
        meta = metas.get(name, {})
        recorded = name in scored
        score = _number(meta.get("total_reward")) if recorded else rewards.get(name, 0.0)
        steps = meta.get("steps") if recorded and isinstance(meta.get("steps"), int) else last_step
        episodes.append(EpisodeScore(name, first, attempts, steps, score, recorded))
    starts = [s for s in map(_started_at, metas.values()) if s is not None]
    return ReportData(store.count(), episodes, store.subgoal_stats(), events,
                      {kind: store.knowledge.current(kind) for kind in KINDS}, recordings,
                      starts)


def failures_by_cause(subgoals: dict[str, SubgoalStats]) -> dict[str, dict[str, int]]:
    """cause -> subgoal -> failed attempts, from the store's per-subgoal statistics."""
    out: dict[str, dict[str, int]] = {}
    for key, stats in subgoals.items():
        for cause, n in stats.causes.items():
            if cause != Cause.SUCCESS and n:
                out.setdefault(cause, {})[key] = n
    return out


# -- writing -------------------------------------------------------------------------------

def write_report(store_path: Path, out_dir: Path, runs: Path | None = None) -> Path:
    """Write the report of the store at ``store_path`` (frames from recordings under
    ``runs``) into ``out_dir``; returns ``out_dir/index.html``."""
    plots.require()
    store_path, out_dir = Path(store_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; pass a folder for the report")
    try:
        store = ExperienceStore(store_path, writable=False)
    except StoreError as err:
        raise ValueError(str(err)) from None
    with store:
        data = read_report(store, runs)
        out_dir.mkdir(parents=True, exist_ok=True)
        figures = _draw(data, out_dir)
        write_knowledge(store, out_dir / "knowledge", data.recordings, runs)
    body = _index_body(store_path, runs, data, figures)
    return write_atomic(out_dir / "index.html", page(f"Cairn report: {store_path.name}", body,
                                                      STYLE))


def _draw(data: ReportData, out_dir: Path) -> dict[str, Path]:
    """Figure name -> its PNG file; a figure with nothing to show is not drawn."""
    drawn = {}
    if data.episodes:
        window = plots.generation_size(len(data.episodes))
        drawn["learning"] = plots.learning_curves(
            [e.score for e in data.episodes], [e.steps for e in data.episodes], window)
    if data.subgoals:
        top = sorted(data.subgoals.values(), key=lambda s: (-s.attempts, s.subgoal))
        drawn["subgoals"] = plots.subgoal_success(
            [SubgoalBar(s.subgoal, s.attempts, s.successes) for s in top])
    if data.events:
        drawn["knowledge"] = plots.knowledge_over_time(data.events, KINDS, data.episode_starts)
    failures = failures_by_cause(data.subgoals)
    if failures:
        drawn["failures"] = plots.failure_causes(failures)
    return {name: write_atomic(out_dir / f"{name}.png", png) for name, png in drawn.items()}


def _figure_html(figures: dict[str, Path], name: str, alt: str) -> str:
    path = figures[name]
    uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<p><img class="plot" id="plot-{name}" alt="{esc(alt)}" src="{uri}"><br>'
            f'<a href="{esc(path.name)}">{esc(path.name)}</a></p>')


def _by_status(entries: list[Entry], kind: str) -> str:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    return ", ".join(f'{esc(status)} <span data-key="{kind}-{esc(status)}">{n}</span>'
                     for status, n in sorted(counts.items())) or "none"


def _summary(data: ReportData) -> str:
    rows = [("attempts", "attempts", data.attempts, ""),
            ("episodes", "episodes", len(data.episodes), ""),
            ("subgoals", "subgoals attempted", len(data.subgoals), "")]
    rows += [(kind, f"{kind}s", len(data.current[kind]), _by_status(data.current[kind], kind))
             for kind in KINDS]
    cells = "".join(f'<tr><th>{esc(label)}</th><td class="num" data-key="{key}">{n}</td>'
                    f"<td>{detail}</td></tr>" for key, label, n, detail in rows)
    return f'<table id="summary">{cells}</table>'


def _learning_html(data: ReportData, figures: dict[str, Path]) -> str:
    n = len(data.episodes)
    window = plots.generation_size(n)
    recorded = sum(e.recorded for e in data.episodes)
    source = (f"Score: the episode's total reward, from its recording for {recorded} of {n} "
              f"episode(s) and summed over its stored attempts for the rest. Episodes are in "
              f"the order they were stored. A generation is {window} consecutive episodes.")
    gens = [data.episodes[i:i + window] for i in range(0, n, window)]
    rows = [f'<tr><td class="num">{g + 1}</td><td class="num">{g * window + 1}–'
            f'{g * window + len(eps)}</td><td class="num">'
            f'{sum(e.score for e in eps) / len(eps):.2f}</td><td class="num">'
            f'{sum(e.steps for e in eps) / len(eps):.0f}</td></tr>'
            for g, eps in enumerate(gens)][-GENERATION_ROWS:]
    table = (f"<p>The last {len(rows)} generation(s):</p><table id=\"generations\"><tr><th>"
             "generation</th><th>episodes</th><th>mean score</th><th>mean steps</th></tr>"
             f"{''.join(rows)}</table>")
    return f"<p>{esc(source)}</p>" + _figure_html(figures, "learning", "learning curves") + table


def _failures_html(data: ReportData, figures: dict[str, Path]) -> str:
    causes = sorted(failures_by_cause(data.subgoals).items(),
                    key=lambda kv: -sum(kv[1].values()))[:CAUSE_TABLE_ROWS]
    rows = "".join(
        f"<tr><td>{esc(cause)}</td><td class=\"num\">{sum(hit.values())}</td><td>"
        + ", ".join(f"{esc(s)} ({n})" for s, n in sorted(hit.items(), key=lambda kv: -kv[1])
                    [:CAUSE_TABLE_ROWS]) + "</td></tr>"
        for cause, hit in causes)
    return (_figure_html(figures, "failures", "failure causes") +
            "<table id=\"causes\"><tr><th>cause</th><th>failures</th><th>subgoals it hit "
            f"most (failures)</th></tr>{rows}</table>")


def _index_body(store_path: Path, runs: Path | None, data: ReportData,
                figures: dict[str, Path]) -> str:
    where = (f"recordings under <code>{esc(str(runs))}</code>: {len(data.recordings)} found"
             if runs is not None else "no recordings folder given (frames are not shown; "
             "pass --runs)")
    parts = [f"<h1>Cairn report: {esc(store_path.name)}</h1>",
             f"<p>Store <code>{esc(str(store_path))}</code>; {where}. Written "
             f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>",
             _summary(data),
             '<p><a id="knowledge-link" href="knowledge/index.html">Browse every skill and '
             "guardrail</a>, with its versions and the frames of its evidence.</p>"]
    if not data.attempts:
        parts.append('<p class="empty" id="nothing">Nothing yet: the store holds no attempts. '
                     "Play some episodes into it with cairn run.</p>")
    else:
        parts += ["<h2>Learning curves</h2>", _learning_html(data, figures),
                  "<h2>Success rate per subgoal</h2>",
                  _figure_html(figures, "subgoals", "success rate per subgoal")]
        if "failures" in figures:
            parts += ["<h2>Most frequent failure causes</h2>", _failures_html(data, figures)]
    if "knowledge" in figures:
        parts += ["<h2>Skills and guardrails over time</h2>",
                  "<p>The x axis counts knowledge versions in the order they were written "
                  "(a new version: an entry appears or changes what it is or its status), "
                  "labelled with the local time of a few; attempts carry no time of their "
                  "own. Dotted lines: episode starts, from the recordings.</p>",
                  _figure_html(figures, "knowledge", "skills and guardrails over time")]
    return "\n".join(parts)
