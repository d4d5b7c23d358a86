"""The map family: games seen from above as a grid of tiles around the agent.

The belief is a map of remembered tiles (``WorldModel``); the controllers walk to the nearest
remembered tile of a kind and act on it, use an action by name, explore or rest
(``Controllers``); an attempt is diagnosed from counter deltas, the target tile's change and
the agent's motion; the default planner chains skills (``SymbolicPlanner``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from cairn.envs.game import Game
from cairn.experience.judging import worked
from cairn.experience.records import (
    Diagnosis,
    State,
    Subgoal,
    change_effect,
    condition_signature,
    counter_effect,
    split_counter_effect,
)
from cairn.perception.percept import UNKNOWN, Percept
from cairn.runtime.controllers import TRAITS, AttemptView, Controllers, Outcome
from cairn.runtime.diagnosis import Diagnoser, MotionMonitor, Trace, may_lack_requirement
from cairn.runtime.learning import SubgoalRules
from cairn.runtime.planner import PlanContext, Planner
from cairn.runtime.symbolic import SCARCE, SymbolicPlanner, WorldFacts
from cairn.runtime.world import WorldModel

if TYPE_CHECKING:
    from cairn.runtime.config import RunConfig
    from cairn.runtime.executor import EpisodeState
    from cairn.runtime.learning import Learner

CHANGE_RADIUS = 2
"""Tiles within this many cells of the attempt's target are checked for changes."""
REACH = 14
"""How far from its start an attempt's target can be for its changes to be checked (the
controllers plan paths within 12 cells)."""


def by_name_actions(action_names: list[str], config: RunConfig) -> list[str]:
    """Actions with no generic role: the ones the agent tries by name."""
    roles = {config.actions.noop, config.actions.interact, config.actions.sleep}
    roles |= set(config.actions.moves)
    return [a for a in action_names if a not in roles]


class MapKit:
    def __init__(self, game: Game, env: gym.Env, config: RunConfig, learner: Learner,
                 rng: np.random.Generator):
        self.parse = game.perceiver(env).parse
        self.config, self.learner, self.rng = config, learner, rng
        self.action_names = list(env.unwrapped.action_names)
        self.action_ids = {name: i for i, name in enumerate(self.action_names)}
        actions = config.actions
        self.moves = {name: tuple(d) for name, d in actions.moves.items()}
        self.passive = set(self.moves) | {actions.noop}
        roles = [actions.noop, actions.interact, *actions.moves]
        unknown = [a for a in roles + [actions.sleep] if a and a not in self.action_ids]
        if unknown:
            raise ValueError(
                f"actions {unknown} are not in the env's action set {self.action_names}")
        self.by_name = by_name_actions(self.action_names, config)
        self.controllers = Controllers(actions, config.agent, rng)
        self.world = WorldModel()
        self.rules = SubgoalRules()
        self.max_attempts: int | None = None
        self._guarded = False
        self._own: dict[tuple[str, int | None], tuple[int, int]] = {}
        self._judged: dict[str, tuple[int, dict[str, set[int]], int]] = {}
        self._new_episode()

    def planner(self) -> Planner:
        return SymbolicPlanner(self.learner.skills, self.learner.guardrails, self.rng,
                               self._world_facts, experiments=self.config.experiments)

    def _new_episode(self) -> None:
        self.monitor = MotionMonitor(self.config.agent.stagnation_window)
        self.diagnoser = Diagnoser(self.config.agent.health_counter, self.monitor)

    # -- the loop's side ----------------------------------------------------------------

    def begin(self, frame: np.ndarray, ep: EpisodeState) -> None:
        # The baseline without learning starts every world knowing nothing.
        self.world = WorldModel() if self.learner.mode == "off" else self.world.fresh()
        self.world.observe(self.parse(frame))
        self._new_episode()

    def memory(self) -> dict[str, Any]:
        return self.world.lessons()

    def recall(self, memory: dict[str, Any]) -> None:
        self.world.learn_from(memory)

    def context(self, ep: EpisodeState) -> PlanContext:
        guardrails = self.learner.guardrails
        self.world.avoid = guardrails.forbidden_entries()
        self._guarded = bool(guardrails.primitive_rules())
        state = snapshot(self.world, ep.step)
        return PlanContext(
            state=state, condition=condition_signature(state.predicates()),
            by_name=self.by_name, can_sleep=self.config.actions.sleep is not None,
            stats=self._stats, skills=self.learner.skills, guardrails=guardrails)

    def may_lack_requirement(self, subgoal: Subgoal, ctx: PlanContext) -> bool:
        return may_lack_requirement(subgoal, ctx)

    def _stats(self, subgoal: str, condition: int | None) -> tuple[int, int]:
        """(attempts, successes) at ``subgoal`` under ``condition`` (None: any). Without
        learning, only this run's own attempts count: the store's are knowledge too.

        Over all conditions, the successes of a subgoal tried fewer than ``SCARCE`` times
        are judged again with the drift known now. A counter that rose by itself while the
        agent acted, before it had seen that counter drift, made a success label; trusted
        for good, it would never send the agent back to a subgoal that never really
        worked."""
        if self.learner.mode == "off":
            attempts, successes = self._own.get((subgoal, condition), (0, 0))
            return attempts, successes
        attempts, successes = self.learner.store.counts(subgoal, condition)
        if condition is None and successes and attempts < SCARCE:
            successes = self._judged_successes(subgoal, attempts)
        return attempts, successes

    def _judged_successes(self, subgoal: str, attempts: int) -> int:
        """The planner asks of every subgoal at every choice; the answer changes only with
        a new attempt or a new drift, so it is kept until one comes."""
        drift = self.world.drift
        kept = self._judged.get(subgoal)
        if kept is not None and kept[0] == attempts and kept[1] == drift:
            return kept[2]
        tries = self.learner.store.by_subgoal(subgoal, limit=attempts)
        successes = sum(worked(t, drift, TRAITS) for t in tries)
        self._judged[subgoal] = (attempts, {name: set(signs) for name, signs in drift.items()},
                                 successes)
        return successes

    def _count_own(self, subgoal: str, pre: State, success: bool) -> None:
        for key in ((subgoal, condition_signature(pre.predicates())), (subgoal, None)):
            attempts, successes = self._own.get(key, (0, 0))
            self._own[key] = (attempts + 1, successes + success)

    def _world_facts(self) -> WorldFacts:
        world = self.world
        near = {kind for row in world.near(1) for kind in row if kind}
        mobile = sorted(kind for kind in near if world.mobile(kind))
        return WorldFacts(world.known_kinds(), world.depleting(), dict(world.highest), mobile)

    # -- the executor's side ------------------------------------------------------------

    def start_attempt(self, subgoal: Subgoal, ep: EpisodeState) -> State:
        world = self.world
        self._center = world.position
        self._region_before = world.region(world.position, REACH)
        self._view = AttemptView(world, dict(world.percept.counters))
        return snapshot(world, ep.step)

    def budget(self, subgoal: Subgoal) -> int:
        agent = self.config.agent
        return agent.sleep_steps if subgoal.controller == "sleep" else agent.max_attempt_steps

    def controller(self, subgoal: Subgoal):
        return self.controllers.start(subgoal, self._view)

    def guard(self, action: str, ep: EpisodeState) -> str | None:
        """A guardrail that forbids ``action`` now; the state's facts are only worked out if
        a matching guardrail's trigger needs them."""
        if not self._guarded:
            return None
        world = self.world
        move = self.moves.get(action)
        entering = None
        if move:
            entering = world.kind_at((world.position[0] + move[0], world.position[1] + move[1]))
        guard = self.learner.guardrails.blocking_primitive(
            action, entering, lambda: snapshot(world, ep.step).facts())
        return None if guard is None else guard.id

    def encode(self, action: str) -> tuple[int, int]:
        index = self.action_ids[action]
        return index, index

    def settled(self, frame: np.ndarray, truncated: bool) -> np.ndarray:
        return frame

    def observe(self, frame: np.ndarray, action: str, ep: EpisodeState, trace: Trace,
                info: dict[str, Any]) -> None:
        percept = self.parse(frame)
        move = self.moves.get(action)
        world = self.world
        before = world.position
        dest = world.kind_at((before[0] + move[0], before[1] + move[1])) if move else None
        world.observe(percept, move, passive=action in self.passive)
        trace.entered = dest if world.position != before else None
        self.monitor.add(world.position, _surroundings_key(percept))
        trace.positions.append(world.position)
        self._view.reward = trace.reward

    def finish_attempt(self, subgoal: Subgoal, pre: State, ep: EpisodeState, trace: Trace,
                       outcome: Outcome, may_lack_requirement: bool) -> tuple[State, Diagnosis]:
        world = self.world
        post = snapshot(world, ep.step)
        changed = _changed_tiles(world, self._center, self._region_before,
                                 outcome.target or world.position)
        effects = self._effects(pre, post, outcome, trace)
        if subgoal.controller in TRAITS.by_effect and all(map(_loss, effects)):
            outcome.effect = False  # drift mid-attempt, or only a loss (a cost, a blow)
        diagnosis = self.diagnoser.diagnose(
            subgoal, pre, post, trace, outcome, changed, may_lack_requirement, effects)
        diagnosis.target = outcome.target
        if self.learner.mode == "off":
            self._count_own(subgoal.key, pre, diagnosis.success)
        return post, diagnosis

    def learning_facts(self) -> dict[str, Any]:
        return {"entries": self.world.entries(), "drift": self.world.drift}

    def _effects(self, pre: State, post: State, outcome: Outcome, trace: Trace) -> list[str]:
        world = self.world
        caused = world.unexplained_changes(pre.counters, post.counters)
        effects = [counter_effect(name, change) for name, change in sorted(caused.items())]
        if outcome.target is not None and outcome.target_before is not None:
            after = world.kind_at(outcome.target)
            if outcome.removed:  # whatever it stood on is left: it says nothing
                effects.append(change_effect(0, 0, outcome.target_before, ""))
            elif after != outcome.target_before and not world.mobile(outcome.target_before) \
                    and not world.mobile(after):
                effects.append(change_effect(0, 0, outcome.target_before, after))
        if trace.reward >= self.config.agent.reward_threshold:
            effects.append("reward")
        return effects


def _loss(effect: str) -> bool:
    """``health-2``: a counter that fell, which alone is no sign that an action worked."""
    return split_counter_effect(effect)[1] == "-"


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
    world: WorldModel, start: tuple[int, int], before: np.ndarray, focus: tuple[int, int]
) -> list[tuple[int, int, str | None, str | None]]:
    """Tiles within ``CHANGE_RADIUS`` of ``focus`` (the attempt's target, else where the
    agent ended) whose remembered kind changed since the attempt started, as offsets from
    ``focus``. ``before`` is the map within ``REACH`` of ``start`` when it started."""
    dr, dc = focus[0] - start[0], focus[1] - start[1]
    if max(abs(dr), abs(dc)) + CHANGE_RADIUS > REACH:
        return []
    r0, c0 = REACH + dr - CHANGE_RADIUS, REACH + dc - CHANGE_RADIUS
    side = 2 * CHANGE_RADIUS + 1
    before = before[r0:r0 + side, c0:c0 + side]
    after = world.region(focus, CHANGE_RADIUS)
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
