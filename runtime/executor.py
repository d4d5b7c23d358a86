"""Runs one subgoal attempt against the env and turns it into an ExperienceTuple.

The executor is the same for every game: it asks the kit (the game's controller family) for
the subgoal's controller, checks every primitive against the guardrails, steps the env,
records the step, lets the kit perceive the new frame, and at the end has the kit diagnose
the attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from cairn.experience.records import ExperienceTuple, Subgoal
from cairn.runtime.controllers import Outcome
from cairn.runtime.diagnosis import Trace

if TYPE_CHECKING:
    from cairn.runtime.kits import Kit


@dataclass
class EpisodeState:
    """Everything the loop carries from one attempt to the next within an episode."""

    episode: str
    step: int = 0
    done: bool = False
    terminated: bool = False
    end: str = ""
    """Why the episode ended, when the loop or the kit decided it (else from the env)."""
    last_info: dict[str, Any] = field(default_factory=dict)
    total_reward: float = 0.0
    env_seconds: float = 0.0
    """Time spent inside ``env.step`` (to tell the loop's own cost from the game's)."""
    frame: Any = None
    """The last frame the kit perceived: the next attempt's first frame."""


class Executor:
    """Steps the env for a controller until it finishes, fails, times out or the episode ends."""

    def __init__(self, env: gym.Env, kit: Kit, max_steps: int | None = None,
                 recorder: Any = None):
        self.env = env
        self.kit = kit
        self.max_steps = max_steps
        self.recorder = recorder

    def attempt(self, subgoal: Subgoal, ep: EpisodeState,
                may_lack_requirement: bool = False) -> ExperienceTuple:
        """``may_lack_requirement``: a failure now may be put down to a missing requirement
        (the kit's ``may_lack_requirement``)."""
        kit = self.kit
        pre = kit.start_attempt(subgoal, ep)
        trace = Trace()
        primitives: list[int] = []
        budget = kit.budget(subgoal)
        controller = kit.controller(subgoal)
        outcome: Outcome | None = None
        try:
            action = next(controller)
            while True:
                reason = kit.guard(action, ep)
                if reason is not None:
                    trace.blocked_by = reason
                    break
                primitives.append(self._step(action, ep, trace))
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
        outcome = outcome or Outcome(reached=False, detail="interrupted")
        post, diagnosis = kit.finish_attempt(subgoal, pre, ep, trace, outcome, may_lack_requirement)
        return ExperienceTuple(
            episode=ep.episode, step_start=pre.step, step_end=post.step, pre=pre,
            subgoal=subgoal, primitives=primitives, diagnosis=diagnosis, post=post)

    def _step(self, action: Any, ep: EpisodeState, trace: Trace) -> int:
        """One env step for ``action``; returns the action's index as recorded."""
        env_action, index = self.kit.encode(action)
        started = time.perf_counter()
        frame, reward, terminated, truncated, info = self.env.step(env_action)
        frame = self.kit.settled(frame, truncated)
        ep.frame = frame
        ep.env_seconds += time.perf_counter() - started
        ep.step += 1
        if self.max_steps is not None and ep.step >= self.max_steps:
            truncated = True
        if self.recorder is not None:
            self.recorder.record_step(index, frame, reward, terminated, truncated)
        trace.reward += reward
        ep.total_reward += reward
        ep.last_info = info
        if terminated or truncated:
            ep.done = True
            ep.terminated = terminated
            trace.died = terminated
            trace.truncated = truncated
        self.kit.observe(frame, action, ep, trace, info)
        return index
