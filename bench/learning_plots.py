"""The learning bench's figures (matplotlib, the optional extra ``report``): the held-out
score against env steps with its band over training seeds, and per-achievement success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cairn.runtime.views.plots import require, rolling_mean


def _figure(width: float, height: float) -> Any:
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def draw(result: dict[str, Any], anchors: dict[str, float], out: Path) -> list[Path]:
    """Write ``curve.png``, ``achievements.png`` and ``knowledge.png`` under ``out``;
    return their paths."""
    paths = [out / "curve.png", out / "achievements.png", out / "knowledge.png"]
    curve(result, anchors).savefig(paths[0])
    achievements(result).savefig(paths[1])
    knowledge(result).savefig(paths[2])
    return paths


def curve(result: dict[str, Any], anchors: dict[str, float]) -> Any:
    fig = _figure(10, 4.8)
    ax = fig.add_subplot()
    for i, run in enumerate(result["runs"]):
        steps = [g["steps"] for g in run["generations"]]
        scores = rolling_mean([g["score"] for g in run["generations"]], 10)
        ax.plot(steps, scores, color="tab:blue", alpha=0.25, lw=1,
                label="training generations (rolling mean of 10), per seed" if i == 0 else None)
    steps = np.array([row["steps"] for row in result["summary"]], float)
    score = [row["score"] for row in result["summary"]]
    mean = np.array([s["mean"] for s in score])
    ax.fill_between(steps, [s["min"] for s in score], [s["max"] for s in score],
                    color="tab:orange", alpha=0.25, label="held out: min to max over seeds")
    ax.plot(steps, mean, "o-", color="tab:orange", lw=2,
            label=f"held out, frozen: mean of {len(result['runs'])} seeds")
    for name, agent in result["baselines"].items():
        ax.axhline(agent["score"], color="grey", lw=1, ls=":")
        ax.annotate(f"{name} {agent['score']:.1f}", (steps[0], agent["score"]),
                    textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey")
    for name, value in anchors.items():
        ax.axhline(value, color="tab:red", lw=0.8, ls="--", alpha=0.6)
        ax.annotate(f"{name} {value}", (steps[0], value), textcoords="offset points",
                    xytext=(0, 3), fontsize=8, color="tab:red")
    if len(steps) > 1 and steps[0] > 0 and steps[-1] / steps[0] >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("training env steps")
    ax.set_ylabel("Crafter score (%)")
    ax.set_ylim(0, max(max(anchors.values(), default=0), float(mean.max()) + 5) * 1.08)
    ax.set_title("Score on held-out worlds as the agent learns")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def achievements(result: dict[str, Any]) -> Any:
    last = result["summary"][-1]
    names = list(last["rates"])
    base = result["baselines"]
    fig = _figure(8, 6)
    ax = fig.add_subplot()
    y = np.arange(len(names))
    full = [last["rates"][n] for n in names]
    ax.barh(y - 0.27, [base["random"]["rates"][n] for n in names], 0.27, label="random",
            color="lightgrey")
    ax.barh(y, [base["learning off"]["rates"][n] for n in names], 0.27,
            label="learning off", color="darkgrey")
    ax.barh(y + 0.27, [r["mean"] for r in full], 0.27,
            xerr=[[r["mean"] - r["min"] for r in full], [r["max"] - r["mean"] for r in full]],
            label=f"full, {last['steps']} steps (mean, min to max)", color="tab:orange")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("success rate on held-out worlds (%)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


KNOWLEDGE_LINES = {"guardrails active": "tab:red", "guardrails candidate": "tab:orange",
                   "guardrails retired": "tab:grey", "skills active": "tab:green"}


def knowledge(result: dict[str, Any]) -> Any:
    """How many skills and guardrails each training run held, by status, as it learned."""
    fig = _figure(8, 4.2)
    ax = fig.add_subplot()
    for i, run in enumerate(result["runs"]):
        steps = [g["steps"] for g in run["generations"]]
        for key, colour in KNOWLEDGE_LINES.items():
            ax.plot(steps, [g["knowledge"].get(key, 0) for g in run["generations"]],
                    color=colour, lw=1, alpha=0.8, label=key if i == 0 else None)
    ax.set_xlabel("training env steps")
    ax.set_ylabel("entries in the store")
    ax.set_title(f"Knowledge held, by status (one line per training seed, "
                 f"{len(result['runs'])} seeds)")
    ax.legend(loc="upper left", fontsize=8)
    return fig
