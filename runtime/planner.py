"""Planners choose the next subgoal; all of them share the ``Planner`` interface.

The interface takes the task's signal (reward), the current belief, the retrieved skills
and the active guardrails, and gets every attempt's diagnosis back at once so it can
replan locally. The default is ``runtime.symbolic.SymbolicPlanner``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cairn.experience.records import ExperienceTuple, State, Subgoal
from cairn.guardrails.store import GuardrailSet
from cairn.skills.library import SkillLibrary

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
    skills: SkillLibrary | None = None
    """The run's skills: ``active()``, ``get(subgoal)``, ``raising(counter)``, ..."""
    guardrails: GuardrailSet | None = None
    """The run's guardrails: ``blocking_subgoal(key, facts)`` says what is forbidden now."""
    similar: Callable[[int], list[tuple[ExperienceTuple, float]]] | None = None
    """``similar(k)``: the stored attempts that started in the situations most like this one
    (by their first frames' CLIP embeddings), most alike first; None without a CLIP index."""
    reach: Callable[[Subgoal], float] | None = None
    """``reach(subgoal)``: the kit's guess of the steps before the subgoal's controller can
    act (0: at once), so that an experiment that costs little is tried before one that costs
    much; None where the kit does not guess (all alike)."""


class Planner(Protocol):
    """The contract every planner keeps; the loop calls nothing else."""

    last_reason: str
    """Why the last choice was made (``plan``, ...; ``explore...`` when it was made to learn
    rather than to reach the goal); after ``next_subgoal`` returned None, why there is
    nothing left to do (``goal``, ``stuck``)."""

    def reset(self) -> None:
        """A new episode begins (what was tried this episode is forgotten)."""

    def next_subgoal(self, ctx: PlanContext) -> Subgoal | None:
        """The subgoal to attempt now, or None when there is nothing left to do."""

    def on_attempt(self, attempt: ExperienceTuple, ctx: PlanContext) -> None:
        """Called with every diagnosed attempt, before the next ``next_subgoal``."""

    def memory(self) -> dict[str, Any]:
        """What it learned across episodes that skills and guardrails do not hold, as JSON
        (the store keeps it; ``recall`` takes it back in a run going on from the store)."""

    def recall(self, memory: dict[str, Any]) -> None: ...


def candidate_subgoals(ctx: PlanContext) -> list[Subgoal]:
    """Every subgoal the generic controllers could attempt from this state."""
    options = [Subgoal("interact", kind) for kind in ctx.state.visible]
    options += [Subgoal("use", name) for name in ctx.by_name]
    options.append(Subgoal("explore"))
    if ctx.can_sleep:
        options.append(Subgoal("sleep"))
    return options
