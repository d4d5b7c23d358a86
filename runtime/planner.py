"""Planners choose the next subgoal; all of them share the ``Planner`` interface.

The interface takes the task's signal (reward), the current belief, the retrieved skills
and the active guardrails, and gets every attempt's diagnosis back at once so it can
replan locally. ``ExploringPlanner`` is the model-free default until skills exist: it
tries what it has tried least in the current condition and avoids what just failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from runtime.records import ExperienceTuple, State, Subgoal

#: (subgoal key, condition signature or None for all conditions) -> (attempts, successes)
StatsLookup = Callable[[str, int | None], tuple[int, int]]


@dataclass
class PlanContext:
    """What a planner may look at when choosing: beliefs and knowledge, never env state."""

    state: State
    condition: int
    by_name: Sequence[str]
    """Actions the agent can try by name (those without a generic role)."""
    can_sleep: bool
    stats: StatsLookup
    skills: Sequence[Any] = field(default_factory=list)
    guardrails: Sequence[Any] = field(default_factory=list)


class Planner(Protocol):
    def next_subgoal(self, ctx: PlanContext) -> Subgoal:
        """The subgoal to attempt now."""

    def on_attempt(self, attempt: ExperienceTuple, ctx: PlanContext) -> None:
        """Called with every diagnosed attempt, before the next ``next_subgoal``."""


def candidate_subgoals(ctx: PlanContext) -> list[Subgoal]:
    """Every subgoal the generic controllers could attempt from this state."""
    options = [Subgoal("interact", kind) for kind in ctx.state.visible]
    options += [Subgoal("use", name) for name in ctx.by_name]
    options.append(Subgoal("explore"))
    if ctx.can_sleep:
        options.append(Subgoal("sleep"))
    return options


class ExploringPlanner:
    """Upper-confidence choice over candidate subgoals in the current condition.

    A failure puts that (subgoal, condition) on a short cooldown, so the very next choice
    is a different subgoal: the local replanning a failed diagnosis asks for.
    """

    def __init__(self, rng: np.random.Generator, cooldown: int = 4):
        self.rng = rng
        self.cooldown = cooldown
        self._cooling: dict[tuple[str, int], int] = {}

    def next_subgoal(self, ctx: PlanContext) -> Subgoal:
        options = candidate_subgoals(ctx)
        scores = np.array([self._score(s, ctx) for s in options])
        scores += self.rng.random(len(scores)) * 1e-3
        return options[int(np.argmax(scores))]

    def _score(self, subgoal: Subgoal, ctx: PlanContext) -> float:
        if self._cooling.get((subgoal.key, ctx.condition), 0) > 0:
            return -1.0
        tried, worked = ctx.stats(subgoal.key, ctx.condition)
        if tried == 0:
            return 2.0 + self.rng.random()
        total, total_worked = ctx.stats(subgoal.key, None)
        prior = (total_worked + 1) / (total + 2)
        return (worked + prior) / (tried + 1) + math.sqrt(2 * math.log(total + 2) / tried)

    def on_attempt(self, attempt: ExperienceTuple, ctx: PlanContext) -> None:
        self._cooling = {k: v - 1 for k, v in self._cooling.items() if v > 1}
        if not attempt.diagnosis.success:
            self._cooling[(attempt.subgoal.key, attempt.condition)] = self.cooldown
