"""Turn one attempt into a Diagnosis: what changed, why it ended, and how close it came.

Causes come from a closed vocabulary decided by rules, in a fixed order of precedence,
so the same attempt always gets the same diagnosis.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cairn.experience.records import Cause, Diagnosis, State, Subgoal, split_counter_effect
from cairn.runtime.controllers import Outcome
from cairn.runtime.planner import PlanContext

DEADLOCK_REPEATS = 3
DEADLOCK_WINDOW = 6


@dataclass
class Trace:
    """What the executor saw while an attempt ran, one entry per env step."""

    positions: list[tuple[int, int]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    reward: float = 0.0
    died: bool = False
    truncated: bool = False
    timed_out: bool = False
    blocked_by: str | None = None
    entered: str | None = None

    @property
    def steps(self) -> int:
        return len(self.positions)


class MotionMonitor:
    """Stagnation and loop detection over the episode's recent positions and frames.

    Stagnation: neither the position nor the view changed for ``window`` steps.
    Loop: over ``3 * window`` steps the agent kept moving but stayed within a few cells.
    """

    def __init__(self, window: int = 12):
        self.window = window
        self.positions: deque[tuple[int, int]] = deque(maxlen=3 * window)
        self.frames: deque[int] = deque(maxlen=window)

    def add(self, position: tuple[int, int], frame_key: int) -> None:
        self.positions.append(position)
        self.frames.append(frame_key)

    def reset(self) -> None:
        self.positions.clear()
        self.frames.clear()

    def stagnant(self) -> bool:
        if len(self.frames) < self.window:
            return False
        recent = list(self.positions)[-self.window:]
        return len(set(recent)) == 1 and len(set(self.frames)) <= 2

    def looping(self) -> bool:
        if len(self.positions) < self.positions.maxlen:
            return False
        moves = sum(a != b for a, b in zip(self.positions, list(self.positions)[1:], strict=False))
        return moves >= self.window and len(set(self.positions)) <= 4


class Diagnoser:
    """Builds diagnoses; remembers recent failures to recognise deadlock."""

    def __init__(self, health_counter: str | None, monitor: MotionMonitor):
        self.health_counter = health_counter
        self.monitor = monitor
        self.recent_failures: deque[tuple[str, Cause]] = deque(maxlen=DEADLOCK_WINDOW)

    def diagnose(
        self,
        subgoal: Subgoal,
        pre: State,
        post: State,
        trace: Trace,
        outcome: Outcome,
        changed_tiles: list[tuple[int, int, str | None, str | None]],
        may_lack_requirement: bool = False,
        effects: list[str] | None = None,
    ) -> Diagnosis:
        """``outcome`` is the controller's Outcome; ``may_lack_requirement`` says whether a
        failure may be put down to a missing requirement (see ``may_lack_requirement``);
        ``effects`` are what the agent caused (see ``Diagnosis.effects``)."""
        effects = effects or []
        deltas = {
            k: post.counters.get(k, 0) - pre.counters.get(k, 0)
            for k in set(pre.counters) | set(post.counters)
            if post.counters.get(k, 0) != pre.counters.get(k, 0)
        }
        health_delta = deltas.get(self.health_counter, 0) if self.health_counter else 0
        stagnation = self.monitor.stagnant()
        loop = self.monitor.looping()
        success = bool(outcome.effect) and not trace.died and trace.blocked_by is None
        cause = self._cause(success, trace, outcome, health_delta, stagnation, loop,
                            may_lack_requirement)
        detail = trace.blocked_by if trace.blocked_by is not None else outcome.detail
        if not success:
            cause, detail = self._deadlock(subgoal, cause, detail)
        return Diagnosis(
            success=success, cause=cause, counter_deltas=deltas, reward=trace.reward,
            changed_tiles=changed_tiles,
            progress=_progress(outcome, any(split_counter_effect(e)[0] for e in effects),
                               success),
            distance=outcome.distance_end, health_delta=health_delta, steps=trace.steps,
            stagnation=stagnation, loop=loop, detail=detail, effects=effects,
            entered=trace.entered,
        )

    @staticmethod
    def _cause(success, trace, outcome, health_delta, stagnation, loop, may_lack_requirement):
        if trace.died:
            return Cause.DIED
        if trace.blocked_by is not None:
            return Cause.GUARDRAIL_BLOCKED
        if success:
            return Cause.SUCCESS
        if not outcome.target_visible:
            return Cause.TARGET_NOT_VISIBLE
        if not outcome.path_found:
            return Cause.PATH_BLOCKED
        if health_delta < 0:
            return Cause.DAMAGE_TAKEN
        if stagnation:
            return Cause.STAGNATION
        if loop:
            return Cause.LOOP
        if trace.timed_out or not outcome.reached:
            return Cause.TIMEOUT
        return Cause.MISSING_REQUIREMENT if may_lack_requirement else Cause.NO_EFFECT

    def _deadlock(self, subgoal: Subgoal, cause: Cause, detail: str) -> tuple[Cause, str]:
        """The same failure three times across two or more subgoals is a deadlock."""
        self.recent_failures.append((subgoal.key, cause))
        same = [key for key, c in self.recent_failures if c == cause]
        if len(same) >= DEADLOCK_REPEATS and len(set(same)) >= 2 and cause != Cause.DIED:
            self.recent_failures.clear()
            return Cause.DEADLOCK, f"{cause} repeated across {', '.join(sorted(set(same)))}"
        return cause, detail


def may_lack_requirement(subgoal: Subgoal, ctx: PlanContext) -> bool:
    """Can failing at ``subgoal`` now be put down to a missing requirement? Only where it
    worked under another condition (``ctx.stats``), and its skill (if it has one) names a
    precondition that does not hold: with everything it is known to need at hand, a failure
    shows no requirement, only that it did nothing this time (gathering that works one time
    in ten, say)."""
    if ctx.stats(subgoal.key, None)[1] <= ctx.stats(subgoal.key, ctx.condition)[1]:
        return False
    skill = ctx.skills.get(subgoal.key) if ctx.skills is not None else None
    return skill is None or not skill.applicable(ctx.state.facts())


def _progress(outcome: Outcome, caused_change: bool, success: bool) -> float:
    """0.4 for closing the distance to a target (if the subgoal has one), 0.4 for a counter
    change the agent caused, 0.2 for the subgoal's own effect."""
    moved = 0.0
    if outcome.distance_start:
        end = outcome.distance_end if outcome.distance_end is not None else outcome.distance_start
        moved = max(0.0, min(1.0, 1 - (end - 1) / outcome.distance_start))
    return round(0.4 * moved + 0.4 * caused_change + 0.2 * success, 3)
