"""The report's figures, drawn with matplotlib and returned as PNG bytes.

matplotlib is the optional extra ``report``: it is imported only when a figure is drawn, and
figures are drawn on their own Agg canvas (no pyplot, no global backend switch), so nothing
the agent imports ever loads it or changes its state.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'cairn[report]'"
TOP_SUBGOALS = 20
TOP_CAUSES = 8
CAUSE_SUBGOALS = 6
"""Subgoals given their own colour in the failure-cause bars; the rest are "other"."""
MAX_EPISODE_MARKS = 60


def require() -> None:
    """Raise ImportError, naming the extra to install, if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as err:
        raise ImportError(f"the report draws its figures with matplotlib, which is not "
                          f"installed ({err}); run: {INSTALL_HINT}") from None


def _figure(width: float, height: float) -> Any:
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    sums = np.cumsum(np.concatenate(([0.0], v)))
    ends = np.arange(1, len(v) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def generation_size(episodes: int) -> int:
    """Episodes per generation: a fifth of them, between 2 and 10."""
    return max(2, min(10, episodes // 5))


def learning_curves(scores: Sequence[float], steps: Sequence[int], window: int) -> bytes:
    """Score per episode in play order, and the same against cumulative env steps."""
    fig = _figure(11, 3.8)
    by_episode, by_steps = fig.subplots(1, 2, sharey=True)
    mean = rolling_mean(scores, window)
    episodes = np.arange(1, len(scores) + 1)
    cumulative = np.cumsum(steps)
    for ax, x, label in ((by_episode, episodes, "episode (in the order stored)"),
                         (by_steps, cumulative, "env steps (cumulative, at episode end)")):
        ax.plot(x, scores, "o-", color="#9bb7d4", markersize=3, linewidth=0.8,
                label="score of the episode")
        ax.plot(x, mean, color="#1f4e79", linewidth=2,
                label=f"mean of the last {window} (one generation)")
        ax.set_xlabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    by_episode.set_ylabel("score (total reward)")
    by_episode.legend(loc="best", fontsize=8)
    by_episode.set_title("Score per episode")
    by_steps.set_title("Score against experience")
    return _png(fig)


@dataclass(frozen=True)
class SubgoalBar:
    subgoal: str
    attempts: int
    successes: int


def subgoal_success(bars: Sequence[SubgoalBar]) -> bytes:
    """Success rate per subgoal (the most attempted first), each bar labelled ok/n."""
    bars = list(bars)[:TOP_SUBGOALS]
    fig = _figure(9, 1.2 + 0.32 * len(bars))
    ax = fig.subplots()
    y = np.arange(len(bars))[::-1]
    rates = [b.successes / b.attempts if b.attempts else 0.0 for b in bars]
    ax.barh(y, [1.0] * len(bars), color="#eeeeee")
    ax.barh(y, rates, color="#3a7d44")
    for yi, bar in zip(y, bars, strict=True):
        ax.text(1.01, yi, f"{bar.successes}/{bar.attempts}", va="center", fontsize=8)
    ax.set_yticks(y, [b.subgoal for b in bars], fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("success rate (successes / attempts)")
    ax.set_title(f"Success rate of the {len(bars)} most attempted subgoals")
    return _png(fig)


@dataclass(frozen=True)
class KnowledgeEvent:
    """One version of a skill or guardrail being written."""

    kind: str
    key: str
    version: int
    status: str
    created_at: float


def status_counts(events: Sequence[KnowledgeEvent], kind: str) -> dict[str, list[int]]:
    """Status -> how many entries of ``kind`` had it after each event (all kinds' events)."""
    current: dict[str, str] = {}
    tally: dict[str, int] = {}
    series: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        if event.kind == kind:
            old = current.get(event.key)
            if old is not None:
                tally[old] -= 1
            current[event.key] = event.status
            tally[event.status] = tally.get(event.status, 0) + 1
            series.setdefault(event.status, [0] * i)
        for status, counts in series.items():
            counts.append(tally[status])
    return series


def _time_labels(times: Sequence[float], positions: Sequence[int]) -> list[str]:
    span = max(times) - min(times) if times else 0
    fmt = "%H:%M:%S" if span < 86_400 else "%m-%d %H:%M"
    return [f"{p + 1}\n{time.strftime(fmt, time.localtime(times[p]))}" for p in positions]


def knowledge_over_time(events: Sequence[KnowledgeEvent], kinds: Sequence[str],
                        episode_starts: Sequence[float] = ()) -> bytes:
    """Entries of each kind by status, after each knowledge version in the order written.

    ``episode_starts`` (wall-clock times from recordings) are marked where they fall
    between versions, when there are few enough to read.
    """
    fig = _figure(11, 3.6)
    axes = fig.subplots(1, len(kinds), sharex=True, squeeze=False)[0]
    x = np.arange(1, len(events) + 1)
    times = [e.created_at for e in events]
    ticks = sorted({int(round(p)) for p in np.linspace(0, len(events) - 1, 6)})
    marks = np.searchsorted(times, sorted(episode_starts)) + 0.5 \
        if 0 < len(episode_starts) <= MAX_EPISODE_MARKS else []
    for ax, kind in zip(axes, kinds, strict=True):
        for status, counts in sorted(status_counts(events, kind).items()):
            ax.step(x, counts, where="post", label=status, linewidth=1.6)
        for mark in marks:
            ax.axvline(mark, color="#999999", linestyle=":", linewidth=0.8)
        ax.set_title(f"{kind}s by status")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_xticks([t + 1 for t in ticks], _time_labels(times, ticks), fontsize=7)
        ax.set_xlabel("knowledge versions written, in order (number and local time)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("entries")
    return _png(fig)


def failure_causes(by_cause: dict[str, dict[str, int]]) -> bytes:
    """The most frequent failure causes, each bar split by the subgoals it hit.

    ``by_cause``: cause -> subgoal -> failed attempts.
    """
    totals = sorted(by_cause.items(), key=lambda kv: -sum(kv[1].values()))[:TOP_CAUSES]
    per_subgoal: dict[str, int] = {}
    for _, subgoals in totals:
        for subgoal, n in subgoals.items():
            per_subgoal[subgoal] = per_subgoal.get(subgoal, 0) + n
    named = sorted(per_subgoal, key=lambda s: -per_subgoal[s])[:CAUSE_SUBGOALS]
    fig = _figure(10, 1.4 + 0.4 * len(totals))
    ax = fig.subplots()
    y = np.arange(len(totals))[::-1]
    left = np.zeros(len(totals))
    colors = [f"C{i}" for i in range(len(named))] + ["#bbbbbb"]
    for subgoal, color in zip([*named, None], colors, strict=True):
        widths = np.array([
            subgoals.get(subgoal, 0) if subgoal is not None
            else sum(n for s, n in subgoals.items() if s not in named)
            for _, subgoals in totals], dtype=float)
        if widths.any():
            ax.barh(y, widths, left=left, color=color, label=subgoal or "other subgoals")
        left += widths
    for yi, total in zip(y, left, strict=True):
        ax.text(total, yi, f" {int(total)}", va="center", fontsize=8)
    ax.set_yticks(y, [cause for cause, _ in totals], fontsize=9)
    ax.set_xlim(0, max(left.max(), 1) * 1.12)
    ax.set_xlabel("failed attempts")
    ax.set_title("Most frequent failure causes, by the subgoal that failed")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
