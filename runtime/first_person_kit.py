"""The first-person family: games seen through the agent's own eyes.

There is no map to remember: the belief is the current view, a coarse grid of kinds with the
crosshair at its centre (``Percept.player``), the counters the HUD shows, and whether the
crosshair points at something within reach (the ``pointing`` tag). The controllers turn the
view towards the nearest cell of a kind and walk up to it (``approach``), then act on what
the crosshair points at until something changes (``interact``); they try an action by name,
or wander. A walk that leaves the view as it was is blocked and ends the attempt; the kit
tells the planner how many turns and steps each kind is away (``PlanContext.reach``), so
the cheap experiments come first. Attempts are diagnosed from
counter changes, the change of the pointed kind and the view's motion, and the default
planner chains the skills learned from them (``SymbolicPlanner``), as on maps.

The roles come from the config: ``interact`` acts on the pointed thing, ``moves`` walk
(``[1, 0]`` is forward), ``turns`` move the view (``[0, -1]`` turns left, ``[-1, 0]`` looks
up). Nothing here knows a game.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from cairn.envs.game import Game
from cairn.experience.records import (
    Diagnosis,
    State,
    Subgoal,
    change_effect,
    condition_signature,
    counter_effect,
)
from cairn.perception.percept import UNKNOWN, Percept
from cairn.runtime.controllers import Outcome
from cairn.runtime.diagnosis import Diagnoser, MotionMonitor, Trace, may_lack_requirement
from cairn.runtime.learning import SubgoalRules
from cairn.runtime.map_kit import by_name_actions
from cairn.runtime.planner import PlanContext, Planner
from cairn.runtime.symbolic import SymbolicPlanner, WorldFacts

if TYPE_CHECKING:
    from cairn.runtime.config import RunConfig
    from cairn.runtime.executor import EpisodeState
    from cairn.runtime.learning import Learner

POINTING = "pointing"
"""The percept tag that says the crosshair points at something within reach."""
HERE = (0, 0)
"""The agent's position in its records: a first-person view has no map to place it on."""


@dataclass
class _Aim:
    """Bringing a target under the crosshair: which way the last turn on each axis (rows,
    columns) went, whether that axis is aimed as well as the turn's step allows or cannot
    turn further, where the target was before the last action, and how many walks changed
    nothing."""

    last: list[int] = field(default_factory=lambda: [0, 0])
    settled: list[bool] = field(default_factory=lambda: [False, False])
    stuck: list[bool] = field(default_factory=lambda: [False, False])
    cell: tuple[int, int] | None = None
    axis: int | None = None
    view: int | None = None
    blocked: int = 0


REAIM = 2
"""Cells a target may drift off an aimed axis (as the agent walks) before it is aimed again."""
BLOCKED_WALKS = 2
"""Walks that leave the view as it was (a walk that moves starts the count again): the way
is blocked, and the attempt ends."""


class FirstPersonKit:
    def __init__(self, game: Game, env: gym.Env, config: RunConfig, learner: Learner,
                 rng: np.random.Generator):
        self.parse = game.perceiver(env).parse
        self.config, self.learner, self.rng = config, learner, rng
        self.action_names = list(env.unwrapped.action_names)
        self.action_ids = {name: i for i, name in enumerate(self.action_names)}
        actions = config.actions
        self.moves = {tuple(d): name for name, d in actions.moves.items()}
        self.turns = {tuple(d): name for name, d in actions.turns.items()}
        self.forward = self.moves.get((1, 0))
        roles = [actions.noop, actions.interact, *actions.moves, *actions.turns]
        unknown = [a for a in roles if a and a not in self.action_ids]
        if unknown or self.forward is None:
            raise ValueError(f"the first-person roles need a forward move ([1, 0]) and actions "
                             f"in the env's set {self.action_names}; unknown: {unknown}")
        self.by_name = by_name_actions(self.action_names, config)
        self.by_name = [a for a in self.by_name if a not in actions.turns]
        self.rules = SubgoalRules()
        self.max_attempts: int | None = None
        self.percept: Percept | None = None
        self._seen: set[str] = set()
        self._highest: dict[str, int] = {}
        self._new_episode()

    def planner(self) -> Planner:
        return SymbolicPlanner(self.learner.skills, self.learner.guardrails, self.rng,
                               self._world_facts, experiments=self.config.experiments)

    def _new_episode(self) -> None:
        self.monitor = MotionMonitor(self.config.agent.stagnation_window)
        self.diagnoser = Diagnoser(self.config.agent.health_counter, self.monitor)

    # -- the loop's side ----------------------------------------------------------------

    def begin(self, frame: np.ndarray, ep: EpisodeState) -> None:
        self._perceive(frame)
        self._new_episode()

    def memory(self) -> dict[str, Any]:
        return {"seen": sorted(self._seen), "highest": list(self._highest.items())}

    def recall(self, memory: dict[str, Any]) -> None:
        self._seen.update(memory.get("seen", []))
        self._highest.update((k, v) for k, v in memory.get("highest", []))

    def context(self, ep: EpisodeState) -> PlanContext:
        state = self.state(ep.step)
        return PlanContext(
            state=state, condition=condition_signature(state.predicates()),
            by_name=self.by_name, can_sleep=False, stats=self._stats,
            skills=self.learner.skills, guardrails=self.learner.guardrails, reach=self._reach)

    def _reach(self, subgoal: Subgoal) -> float:
        """Turns and steps before acting, as the view shows it: a kind at the crosshair and
        in reach 0, else the grid distance to its nearest cell; an action by name 0."""
        if subgoal.controller == "use":
            return 0.0
        if subgoal.controller not in ("interact", "approach") or not subgoal.target:
            return float(self.config.agent.explore_steps)
        if self.pointed() == subgoal.target:
            return 0.0
        cell = self._nearest(subgoal.target)
        return float("inf") if cell is None else 1.0 + abs(cell[0]) + abs(cell[1])

    def may_lack_requirement(self, subgoal: Subgoal, ctx: PlanContext) -> bool:
        return may_lack_requirement(subgoal, ctx)

    def _stats(self, subgoal: str, condition: int | None) -> tuple[int, int]:
        return self.learner.store.counts(subgoal, condition)

    def _world_facts(self) -> WorldFacts:
        return WorldFacts(set(self._seen), set(), dict(self._highest), [])

    # -- the executor's side ------------------------------------------------------------

    def start_attempt(self, subgoal: Subgoal, ep: EpisodeState) -> State:
        self._counters_start = dict(self.percept.counters)
        self._pointed_start = self.pointed()
        self._reward = 0.0
        self._building: Outcome | None = None
        return self.state(ep.step)

    def budget(self, subgoal: Subgoal) -> int:
        return self.config.agent.max_attempt_steps

    def controller(self, subgoal: Subgoal) -> Generator[str, None, Outcome]:
        if subgoal.controller in ("interact", "approach") and subgoal.target:
            return self._interact(subgoal.target, act=subgoal.controller == "interact")
        if subgoal.controller == "use" and subgoal.target:
            return self._use(subgoal.target)
        if subgoal.controller == "explore":
            return self._explore()
        raise ValueError(f"no first-person controller for subgoal '{subgoal.key}'")

    def guard(self, action: str, ep: EpisodeState) -> str | None:
        guardrails = self.learner.guardrails
        if not guardrails.primitive_rules():
            return None
        entering = self.pointed() if action == self.forward else None
        guard = guardrails.blocking_primitive(action, entering,
                                              lambda: self.state(ep.step).facts())
        return None if guard is None else guard.id

    def encode(self, action: str) -> tuple[int, int]:
        index = self.action_ids[action]
        return index, index

    def settled(self, frame: np.ndarray, truncated: bool) -> np.ndarray:
        return frame

    def observe(self, frame: np.ndarray, action: str, ep: EpisodeState, trace: Trace,
                info: dict[str, Any]) -> None:
        before = self.pointed()
        self._perceive(frame)
        trace.entered = before if action == self.forward and self.pointed() != before else None
        self.monitor.add(HERE, self._view)
        trace.positions.append(HERE)

    def finish_attempt(self, subgoal: Subgoal, pre: State, ep: EpisodeState, trace: Trace,
                       outcome: Outcome, may_lack_requirement: bool) -> tuple[State, Diagnosis]:
        if self._building is not None and outcome is not self._building:
            outcome = self._building  # cut off before it returned: judge what it did
            if outcome.target_before is not None:
                outcome.effect = self._acted()
        post = self.state(ep.step)
        effects = self._effects(pre, post, outcome, trace)
        if subgoal.controller in ("interact", "use") and not effects:
            outcome.effect = False
        diagnosis = self.diagnoser.diagnose(subgoal, pre, post, trace, outcome, [],
                                            may_lack_requirement, effects)
        diagnosis.target = (0, 0) if outcome.target_before is not None else None
        return post, diagnosis

    def learning_facts(self) -> dict[str, Any]:
        return {"entries": {}, "drift": {}}

    # -- belief ---------------------------------------------------------------------------

    def _perceive(self, frame: np.ndarray) -> None:
        self.percept = percept = self.parse(frame)
        self._seen |= {percept.classes[i] for i in np.unique(percept.tiles) if i != UNKNOWN}
        for name, count in percept.counters.items():
            self._highest[name] = max(self._highest.get(name, 0), count)
        # What the view shows, as one number: the same number, nothing seen changed.
        self._view = hash((percept.tiles.tobytes(), tuple(sorted(percept.counters.items())),
                           self.pointed()))

    def pointed(self) -> str | None:
        """The kind under the crosshair, if it is within reach."""
        percept = self.percept
        if POINTING not in percept.tags:
            return None
        return percept.name_at(*percept.player)

    def state(self, step: int) -> State:
        percept = self.percept
        visible = sorted(percept.classes[i] for i in np.unique(percept.tiles) if i != UNKNOWN)
        pointed = self.pointed()
        return State(step=step, position=HERE, facing=(0, 0), counters=dict(percept.counters),
                     facing_kind=pointed, near=[[pointed]], visible=visible,
                     tags=sorted(percept.tags))

    def _effects(self, pre: State, post: State, outcome: Outcome, trace: Trace) -> list[str]:
        health = self.config.agent.health_counter
        effects = [counter_effect(name, post.counters.get(name, 0) - pre.counters.get(name, 0))
                   for name in sorted(set(pre.counters) | set(post.counters))
                   if name != health and post.counters.get(name, 0) != pre.counters.get(name, 0)]
        if outcome.target_before is not None and post.facing_kind is None:
            effects.append(change_effect(0, 0, outcome.target_before, None))
        if trace.reward >= self.config.agent.reward_threshold:
            effects.append("reward")
        return effects

    # -- controllers ----------------------------------------------------------------------

    def _changed(self) -> bool:
        """Did acting do something: a counter other than health changed, or the pointed
        kind turned into another."""
        return self._counters_moved() or self.pointed() != self._pointed_start

    def _interact(self, kind: str, act: bool = True) -> Generator[str, None, Outcome]:
        """Bring a ``kind`` cell under the crosshair and within reach, then (``act``) act on
        it until something changes (or a few tries did nothing)."""
        outcome = self._building = Outcome()
        if self._nearest(kind) is None:
            outcome.target_visible = outcome.reached = False
            return outcome
        first, aim = True, _Aim()
        for _ in range(self.config.agent.max_attempt_steps):
            if self.pointed() == kind:
                break
            cell = self._nearest(kind)
            if cell is None:
                outcome.reached, outcome.detail = False, "lost sight of it"
                return outcome
            distance = abs(cell[0]) + abs(cell[1])
            if first:
                outcome.distance_start, first = float(distance), False
            outcome.distance_end = float(distance)
            view = self._view
            if aim.view is not None:
                aim.blocked = aim.blocked + 1 if view == aim.view else 0
            if aim.blocked >= BLOCKED_WALKS:
                outcome.reached, outcome.detail = False, "the way ahead is blocked"
                return outcome
            action = self._towards(cell, aim)
            aim.view = view if action == self.forward else None
            yield action
        else:
            outcome.reached, outcome.path_found = False, False
            outcome.detail = "could not bring it under the crosshair"
            return outcome
        outcome.target, outcome.target_before, outcome.distance_end = HERE, kind, 0.0
        if not act:
            outcome.effect = True
            return outcome
        self._counters_start = dict(self.percept.counters)
        self._pointed_start = kind
        for _ in range(self.config.agent.interact_tries):
            yield self.config.actions.interact
            if self._acted():
                outcome.effect = True
                break
        return outcome

    def _acted(self) -> bool:
        """Did acting on the pointed thing do something: a counter other than health
        changed, or nothing is in reach any more (the thing is gone). A change of the
        pointed kind alone is not enough: a thing's look changes as it is worked on (cracks,
        shading), and it would end the work early."""
        return self._counters_moved() or self.pointed() is None

    def _counters_moved(self) -> bool:
        """A counter other than health differs from the attempt's start."""
        health = self.config.agent.health_counter
        counters = {k: v for k, v in self.percept.counters.items() if k != health}
        start = {k: v for k, v in self._counters_start.items() if k != health}
        return counters != start

    def _nearest(self, kind: str) -> tuple[int, int] | None:
        """The offset (rows, cols) from the crosshair of the nearest ``kind`` cell in view."""
        percept = self.percept
        if kind not in percept.classes:
            return None
        rows, cols = np.nonzero(percept.tiles == percept.classes.index(kind))
        if not len(rows):
            return None
        pr, pc = percept.player
        offsets = sorted(zip(rows - pr, cols - pc, strict=True),
                         key=lambda o: (abs(o[0]) + abs(o[1]), o[0], o[1]))
        return int(offsets[0][0]), int(offsets[0][1])

    def _towards(self, cell: tuple[int, int], aim: _Aim) -> str:
        """Turn the view towards a cell (columns first), or walk when it is straight ahead.

        A turn moves the view by a fixed angle, which may be more than a cell: a target that
        changes sides after a turn lies between two of the view's stops, so that axis counts
        as aimed until the target drifts ``REAIM`` cells off it. A target that a turn did not
        move is as far as that axis goes (the view cannot look further up) for the attempt."""
        if aim.axis is not None and aim.cell is not None and cell[aim.axis] == aim.cell[aim.axis]:
            aim.stuck[aim.axis] = True
        aim.cell, aim.axis = cell, None
        for axis in (1, 0):
            side = int(np.sign(cell[axis]))
            if aim.settled[axis] and abs(cell[axis]) >= REAIM:
                aim.settled[axis], aim.last[axis] = False, 0
            if not side or aim.settled[axis] or aim.stuck[axis]:
                continue
            if aim.last[axis] == -side:
                aim.settled[axis] = True
                continue
            aim.last[axis], aim.axis = side, axis
            return self.turns[(0, side) if axis else (side, 0)]
        return self.forward

    def _use(self, action: str) -> Generator[str, None, Outcome]:
        before = self.pointed()
        yield action
        return Outcome(target=HERE, target_before=before, effect=self._changed())

    def _explore(self) -> Generator[str, None, Outcome]:
        """Turn a random amount to a random side, then walk ahead."""
        seen = len(self._seen)
        side = self.turns[(0, -1)] if self.rng.random() < 0.5 else self.turns[(0, 1)]
        steps = self.config.agent.explore_steps
        for _ in range(int(self.rng.integers(0, max(steps // 2, 1) + 1))):
            yield side
        for _ in range(steps):
            yield self.forward
        return Outcome(effect=len(self._seen) > seen)
