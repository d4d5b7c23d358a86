"""Rebuilding one recording's attempts through the map family's kit, as the live loop made
them: ``RecordedEnv`` serves the recording as an env, ``Replay`` drives the executor's loop
over it, attempt by attempt.

A recorded attempt (``Replay.lockstep``) is rebuilt with its real controller, which reads the
world model rebuilt from the recorded frames and must ask for the recorded actions; the
guardrails being rebuilt check every step. ``explore`` draws its direction at random, so it
is given the recorded actions (its Outcome depends only on the world it walked through). A
controller that departs from the recording is judged after the fact (``segment.Watcher``)
and the departure reported. A recording without attempts is cut into them by the roles of
its actions (``Replay.segment``, ``segment.Segment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from cairn.experience.episodes import Episode
from cairn.experience.records import ExperienceTuple, Subgoal
from cairn.experience.store import ExperienceStore
from cairn.runtime.controllers import Outcome
from cairn.runtime.diagnosis import Trace
from cairn.runtime.executor import EpisodeState, Executor
from cairn.runtime.learning import Learner
from cairn.runtime.segment import Roles, Segment, Watcher

RANDOM_CONTROLLERS = frozenset({"explore"})
"""Controllers that draw their choices from the run's random generator: given the recorded
actions instead (their Outcome depends only on the world they walked through)."""


class Divergence(ValueError):
    """An action stepped on a ``RecordedEnv`` that the recording did not take there."""


class RecordedEnv(gym.Env[np.ndarray, int]):
    """A recording served as an env: ``reset()`` gives its first frame, ``step(a)`` the next
    recorded frame, reward and flags, for the recorded action ``a`` only (any other action,
    or a step past the end, raises ``Divergence``)."""

    def __init__(self, episode: Episode, action_names: Sequence[str]):
        self.episode = episode
        self.action_names = tuple(action_names)
        self.observation_space = gym.spaces.Box(0, 255, episode.frames.shape[1:], np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self.t: int | None = None

    @property
    def remaining(self) -> int:
        return len(self.episode.actions) - (self.t or 0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self.episode.frames[0], {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t is None:
            raise RuntimeError("call reset() before step()")
        ep, t = self.episode, self.t
        if t >= len(ep.actions):
            raise Divergence(f"{ep.directory}: step {t} asked for, past the recording's end "
                             f"({len(ep.actions)} steps)")
        if int(action) != int(ep.actions[t]):
            raise Divergence(f"{ep.directory}: step {t}: {self._name(action)} asked for, "
                             f"{self._name(ep.actions[t])} recorded")
        self.t = t + 1
        return (ep.frames[t + 1], float(ep.rewards[t]), bool(ep.terminated[t]),
                bool(ep.truncated[t]), {})

    def _name(self, action: Any) -> str:
        index = int(action)
        return self.action_names[index] if 0 <= index < len(self.action_names) else str(index)


@dataclass
class EpisodeLine:
    """What distilling one recording did."""

    episode: str
    directory: Path
    steps: int
    attempts: int
    source: str
    """``recorded attempts`` (replayed in lockstep) or ``segmented`` (cut by action roles)."""
    compared: int = 0
    """Rebuilt attempts that have a recorded diagnosis to compare with."""
    same_diagnosis: int = 0
    mismatches: int = 0
    """Attempts whose controller departed from the recording (judged after the fact)."""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.episode}: {self.steps} steps, {self.attempts} attempts ({self.source})"
        if self.compared:
            text += f", {self.same_diagnosis}/{self.compared} diagnosed as recorded"
        if self.mismatches:
            text += f", {self.mismatches} judged after the fact"
        return "; ".join([text, *self.notes])


def _tiling_fault(episode: Episode) -> str | None:
    """Why the recorded attempts do not cover the steps one after another, if they do not."""
    at = 0
    for t in episode.attempts:
        if t.step_start != at:
            return f"an attempt starts at step {t.step_start}, the one before ended at {at}"
        if t.step_end - t.step_start != len(t.primitives) or \
                list(t.primitives) != episode.actions[t.step_start:t.step_end].tolist():
            return f"the attempt at steps {t.step_start}-{t.step_end} took other actions"
        at = t.step_end
    return None


class Replay(Executor):
    """Plays one recording through the kit: recorded attempts in lockstep, or segments."""

    def __init__(self, env: RecordedEnv, kit: Any, learner: Learner, store: ExperienceStore,
                 roles: Roles):
        super().__init__(env, kit)
        self.env, self.learner, self.store, self.roles = env, learner, store, roles
        self.names = [env.action_names[int(a)] for a in env.episode.actions]

    def run(self, name: str, use_recorded: bool) -> EpisodeLine:
        episode = self.env.episode
        frame, info = self.env.reset()
        ep = EpisodeState(episode=name, last_info=info)
        self.kit.begin(frame, ep)
        recorded = episode.attempts if use_recorded else []
        line = EpisodeLine(name, episode.directory, len(episode.actions), 0,
                           "recorded attempts" if recorded else "segmented")
        fault = _tiling_fault(episode) if recorded else None
        if fault is not None:
            line.notes.append(f"segmented instead: {fault}")
            line.source, line.mismatches, recorded = "segmented", len(recorded), []
        for t in recorded:
            if ep.done:
                break
            attempt, mismatch = self.lockstep(t, ep)
            self._keep(attempt)
            line.attempts += 1
            line.compared += 1
            line.same_diagnosis += attempt.diagnosis.to_dict() == t.diagnosis.to_dict()
            line.mismatches += mismatch is not None
            if mismatch is not None and len(line.notes) < 3:
                line.notes.append(f"steps {t.step_start}-{t.step_end} {t.subgoal.key}: "
                                  f"{mismatch}")
        if recorded and self.env.remaining and not ep.done:
            line.notes.append(f"{self.env.remaining} steps after the last recorded attempt "
                              "segmented")
        while self.env.remaining and not ep.done:
            self._keep(self.segment(ep))
            line.attempts += 1
        self.learner.end_episode()
        return line

    def _keep(self, attempt: ExperienceTuple) -> None:
        self.store.add(attempt)
        self.learner.observe(attempt, self.kit)

    def lockstep(self, recorded: ExperienceTuple, ep: EpisodeState
                 ) -> tuple[ExperienceTuple, str | None]:
        """Rebuild one recorded attempt with its real controller; returns it and, if the
        controller departed from the recording, how."""
        kit, subgoal = self.kit, recorded.subgoal
        ctx = kit.context(ep)
        may_lack_requirement = kit.may_lack_requirement(subgoal, ctx)
        pre = kit.start_attempt(subgoal, ep)
        watcher = Watcher(kit.world, self.roles)
        expected = [self.env.action_names[i] for i in recorded.primitives]
        trace, primitives = Trace(), []
        budget = kit.budget(subgoal)
        try:
            controller = kit.controller(subgoal)
        except ValueError as err:
            outcome, mismatch = None, str(err)
        else:
            outcome, mismatch = self._drive(
                controller, ep, trace, primitives, watcher, budget, expected,
                subgoal.controller in RANDOM_CONTROLLERS, recorded.diagnosis.detail)
        if mismatch is None and len(primitives) < len(expected):
            mismatch = f"its controller ended after {len(primitives)} of the {len(expected)} " \
                       "recorded steps"
        if mismatch is not None:
            trace.blocked_by, trace.timed_out = None, False
            for action in expected[len(primitives):]:
                primitives.append(self._watched(action, ep, trace, watcher))
            trace.timed_out = trace.steps >= budget and not ep.done
            outcome = watcher.outcome(subgoal)
        attempt = self._finish(subgoal, pre, ep, trace, outcome, may_lack_requirement, primitives)
        chosen_by = getattr(recorded.diagnosis, "planner", "")
        if chosen_by:  # who chose the subgoal is part of the record, not of its diagnosis
            attempt.diagnosis.planner = chosen_by
        return attempt, mismatch

    def segment(self, ep: EpisodeState) -> ExperienceTuple:
        """The next attempt cut out of the recorded actions by their roles. A person took
        every step, so no guardrail blocks one."""
        kit = self.kit
        ctx = kit.context(ep)
        pre = kit.start_attempt(Subgoal("explore"), ep)
        watcher = Watcher(kit.world, self.roles)
        cut = Segment(self.names, ep.step, kit.world, self.roles, watcher)
        trace, primitives = Trace(), []
        outcome, _ = self._drive(cut.run(), ep, trace, primitives, watcher, cut.budget)
        subgoal = cut.subgoal
        may_lack_requirement = kit.may_lack_requirement(subgoal, ctx)
        return self._finish(subgoal, pre, ep, trace, outcome, may_lack_requirement, primitives)

    def _drive(self, controller, ep: EpisodeState, trace: Trace, primitives: list[int],
               watcher: Watcher, budget: int, expected: list[str] | None = None,
               free: bool = False, hint: str = "") -> tuple[Outcome | None, str | None]:
        """The executor's loop (``Executor.attempt``) over the recording. With ``expected``
        (a recorded attempt's actions) every step is checked against the guardrails and
        must be the recorded one, unless the controller is ``free`` (it is then given the
        recorded actions); returns the controller's Outcome (None if the loop stopped it)
        and how it departed from the recording, if it did."""
        outcome = mismatch = None
        try:
            action = next(controller)
            while True:
                if expected is not None:
                    i = len(primitives)
                    wanted = expected[i] if i < len(expected) else None
                    if free and wanted is not None:
                        action = wanted
                    if free and wanted is None:
                        reason = self._blocked_choice(ep, hint)
                    else:
                        reason = self.kit.guard(action, ep)
                    if reason is not None:
                        if wanted is None:
                            trace.blocked_by = reason
                        else:
                            mismatch = f"guardrail {reason} blocks a step the recording took"
                        break
                    if wanted is None:
                        mismatch = "its controller wants more steps than were recorded"
                        break
                    if action != wanted:
                        mismatch = f"its controller chose {action} at step {ep.step}, " \
                                   f"the recording {wanted}"
                        break
                primitives.append(self._watched(action, ep, trace, watcher))
                if ep.done:
                    break
                if trace.steps >= budget:
                    trace.timed_out = True
                    break
                action = controller.send(None)
        except StopIteration as stop:
            outcome = stop.value
        finally:
            controller.close()
        return outcome, mismatch

    def _blocked_choice(self, ep: EpisodeState, hint: str) -> str | None:
        """The guardrail that stopped a free controller the recording ran out on, or None.

        The loop only ever stops ``explore`` short of its steps by a guardrail, on a move
        it drew at random towards a tile it does not avoid; which one is not recorded, so
        any such move that a guardrail blocks now accounts for it (``hint``, the recorded
        diagnosis's detail, names the guardrail when it was not rewritten as a deadlock)."""
        world = self.kit.world
        row, col = world.position
        blocking = []
        for name, (dr, dc) in self.roles.actions.moves.items():
            if world.kind_at((row + dr, col + dc)) not in world.avoid:
                reason = self.kit.guard(name, ep)
                if reason is not None:
                    blocking.append(reason)
        if hint in blocking:
            return hint
        return blocking[0] if blocking else None

    def _watched(self, action: str, ep: EpisodeState, trace: Trace, watcher: Watcher) -> int:
        watcher.before(action)
        index = self._step(action, ep, trace)
        watcher.after(action, trace.reward)
        return index

    def _finish(self, subgoal: Subgoal, pre: Any, ep: EpisodeState, trace: Trace,
                outcome: Outcome | None, may_lack_requirement: bool, primitives: list[int]
                ) -> ExperienceTuple:
        outcome = outcome or Outcome(reached=False, detail="interrupted")
        post, diagnosis = self.kit.finish_attempt(subgoal, pre, ep, trace, outcome,
                                                  may_lack_requirement)
        return ExperienceTuple(
            episode=ep.episode, step_start=pre.step, step_end=post.step, pre=pre,
            subgoal=subgoal, primitives=primitives, diagnosis=diagnosis, post=post)
