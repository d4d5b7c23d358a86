"""Runs one subgoal attempt against the env and turns it into an ExperienceTuple."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from cairn.experience.records import ExperienceTuple, State, Subgoal
from cairn.perception.percept import UNKNOWN, Percept
from cairn.runtime.config import RunConfig
from cairn.runtime.controllers import AttemptView, Controllers, Outcome
from cairn.runtime.diagnosis import Diagnoser, MotionMonitor, Trace
from cairn.runtime.world import WorldModel
from cairn.skills.distill import EFFECT_CONTROLLERS

#: A guard sees the action name about to be sent, the world model and the step number; it
#: returns a reason to block the action, or None. Guardrails plug in here.
Guard = Callable[[str, WorldModel, int], str | None]
CHANGE_RADIUS = 2


@dataclass
class EpisodeState:
    """Everything the executor carries from one attempt to the next within an episode."""

    episode: str
    world: WorldModel
    step: int = 0
    done: bool = False
    terminated: bool = False
    last_info: dict[str, Any] = field(default_factory=dict)
    total_reward: float = 0.0
    env_seconds: float = 0.0
    """Time spent inside ``env.step`` (to tell the loop's own cost from the game's)."""


class Executor:
    """Steps the env for a controller until it finishes, fails, times out or the episode ends."""

    def __init__(
        self,
        env: gym.Env,
        parse: Callable[[np.ndarray], Percept],
        config: RunConfig,
        rng: np.random.Generator,
        recorder: Any = None,
        guards: list[Guard] | None = None,
    ):
        self.env = env
        self.parse = parse
        self.config = config
        self.recorder = recorder
        self.guards = guards or []
        names = list(env.unwrapped.action_names)
        self.action_ids = {name: i for i, name in enumerate(names)}
        self.moves = {name: tuple(d) for name, d in config.actions.moves.items()}
        self.passive = set(self.moves) | {config.actions.noop}
        self.controllers = Controllers(config.actions, config.agent, rng)
        self.monitor = MotionMonitor(config.agent.stagnation_window)
        self.diagnoser = Diagnoser(config.agent.health_counter, self.monitor)
        self.max_steps = config.max_steps

    def attempt(
        self, subgoal: Subgoal, ep: EpisodeState, succeeded_elsewhere: bool = False
    ) -> ExperienceTuple:
        world = ep.world
        pre = snapshot(world, ep.step)
        region_before = world.region(world.position, CHANGE_RADIUS)
        center = world.position
        view = AttemptView(world, dict(world.percept.counters))
        trace = Trace()
        primitives: list[int] = []
        budget = self._budget(subgoal)
        controller = self.controllers.start(subgoal, view)
        outcome: Outcome | None = None
        try:
            name = next(controller)
            while True:
                reason = self._blocked(name, world, ep.step)
                if reason is not None:
                    trace.blocked_by = reason
                    break
                self._step(name, ep, view, trace)
                primitives.append(self.action_ids[name])
                if ep.done:
                    break
                if trace.steps >= budget:
                    trace.timed_out = True
                    break
                name = controller.send(None)
        except StopIteration as stop:
            outcome = stop.value
        finally:
            controller.close()
        outcome = outcome or Outcome(reached=False, detail="interrupted")
        post = snapshot(world, ep.step)
        changed = _changed_tiles(world, center, region_before)
        effects = self._effects(world, pre, post, outcome, trace)
        if subgoal.controller in EFFECT_CONTROLLERS and not effects:
            outcome.effect = False  # what looked like an effect mid-attempt was drift
        diagnosis = self.diagnoser.diagnose(
            subgoal, pre, post, trace, outcome, changed, succeeded_elsewhere, effects)
        return ExperienceTuple(
            episode=ep.episode, step_start=pre.step, step_end=post.step, pre=pre,
            subgoal=subgoal, primitives=primitives, diagnosis=diagnosis, post=post)

    def _effects(
        self, world: WorldModel, pre: State, post: State, outcome: Outcome, trace: Trace
    ) -> list[str]:
        caused = world.unexplained_changes(pre.counters, post.counters)
        effects = [f"{name}{change:+d}" for name, change in sorted(caused.items())]
        if outcome.target is not None and outcome.target_before is not None:
            after = world.kind_at(outcome.target)
            if after != outcome.target_before and not world.mobile(outcome.target_before) \
                    and not world.mobile(after):
                effects.append(f"tile:{outcome.target_before}>{after}")
        if trace.reward >= self.config.agent.reward_threshold:
            effects.append("reward")
        return effects

    def _budget(self, subgoal: Subgoal) -> int:
        agent = self.config.agent
        return agent.sleep_steps if subgoal.controller == "sleep" else agent.max_attempt_steps

    def _blocked(self, name: str, world: WorldModel, step: int) -> str | None:
        for guard in self.guards:
            reason = guard(name, world, step)
            if reason is not None:
                return reason
        return None

    def _step(self, name: str, ep: EpisodeState, view: AttemptView, trace: Trace) -> None:
        action = self.action_ids[name]
        started = time.perf_counter()
        frame, reward, terminated, truncated, info = self.env.step(action)
        ep.env_seconds += time.perf_counter() - started
        ep.step += 1
        if self.max_steps is not None and ep.step >= self.max_steps:
            truncated = True
        if self.recorder is not None:
            self.recorder.record_step(action, frame, reward, terminated, truncated)
        percept = self.parse(frame)
        move = self.moves.get(name)
        world = ep.world
        before = world.position
        dest = world.kind_at((before[0] + move[0], before[1] + move[1])) if move else None
        world.observe(percept, move, passive=name in self.passive)
        trace.entered = dest if world.position != before else None
        self.monitor.add(ep.world.position, _surroundings_key(percept))
        trace.positions.append(ep.world.position)
        trace.reward += reward
        view.reward += reward
        ep.total_reward += reward
        ep.last_info = info
        if terminated or truncated:
            ep.done = True
            ep.terminated = terminated
            trace.died = terminated
            trace.truncated = truncated


def snapshot(world: WorldModel, step: int) -> State:
    """The agent's belief at ``step``, as recorded in experience tuples."""
    percept = world.percept
    own = percept.tiles[percept.player]
    visible = sorted(percept.classes[i] for i in np.unique(percept.tiles)
                     if i != UNKNOWN and i != own)
    return State(
        step=step, position=world.position, facing=world.facing,
        counters=dict(percept.counters), facing_kind=world.kind_at(world.facing_position()),
        near=world.near(1), visible=visible, tags=sorted(percept.tags),
    )


def _changed_tiles(
    world: WorldModel, center: tuple[int, int], before: np.ndarray
) -> list[tuple[int, int, str | None, str | None]]:
    """Tiles around where the attempt started whose remembered kind changed."""
    after = world.region(center, CHANGE_RADIUS)
    changed = []
    for r, c in zip(*np.nonzero(before != after), strict=True):
        if before[r, c] == UNKNOWN or after[r, c] == UNKNOWN:
            continue
        changed.append((int(r) - CHANGE_RADIUS, int(c) - CHANGE_RADIUS,
                        world.classes[before[r, c]], world.classes[after[r, c]]))
    return changed


def _surroundings_key(percept: Percept) -> int:
    """The agent's own situation: the tile it faces and its counters. Unchanged means the
    agent achieved nothing, whatever wanders through the rest of the view."""
    r, c = percept.player
    faced = int(percept.tiles[r + percept.facing[0], c + percept.facing[1]])
    return hash((faced, tuple(percept.counters.values())))
