"""Planners choose the next subgoal; all of them share the ``Planner`` interface.

The interface takes the task's signal (reward), the current belief, the retrieved skills
and the active guardrails, and gets every attempt's diagnosis back at once so it can
replan locally. The default is ``runtime.symbolic.SymbolicPlanner``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cairn.experience.records import ExperienceTuple, State, Subgoal

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
