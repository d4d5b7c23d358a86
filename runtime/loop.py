"""The perception-act loop: perceive, plan a subgoal, execute it, diagnose, store, repeat."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cairn.envs  # noqa: F401  (registers Cairn's env ids)
import gymnasium as gym
import numpy as np
from cairn.experience.recording import EpisodeRecorder
from cairn.experience.records import ExperienceTuple, condition_signature
from cairn.perception.percept import Percept
from cairn.runtime.config import RunConfig
from cairn.runtime.executor import EpisodeState, Executor, snapshot
from cairn.runtime.learning import Learner
from cairn.runtime.planner import PlanContext, Planner
from cairn.runtime.symbolic import SymbolicPlanner, WorldFacts

if TYPE_CHECKING:
    from cairn.experience.store import ExperienceStore
from cairn.runtime.world import WorldModel

log = logging.getLogger(__name__)
MAX_IDLE_ATTEMPTS = 200


@dataclass
class EpisodeResult:
    """What one episode did; ``steps_per_second`` leaves out world generation."""

    episode: str
    seed: int
    steps: int
    reward: float
    attempts: int
    successes: int
    seconds: float
    terminated: bool
    reset_seconds: float = 0.0
    """Time spent generating the world (reset), included in ``seconds``."""
    env_seconds: float = 0.0
    """Time spent inside the env's ``step``, included in ``seconds``."""
    unlocked: set[str] = field(default_factory=set)
    """Achievements the env reports (privileged: for the final table only)."""
    directory: Path | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.seconds - self.reset_seconds, 1e-9)


def make_parser(name: str, frame_shape: tuple[int, ...]) -> Callable[[np.ndarray], Percept]:
    """The screen parser a config names, sized for the env's frames."""
    if name == "crafter":
        from cairn.perception.crafter import CrafterParser

        return CrafterParser(size=frame_shape[0]).parse
    raise ValueError(f"unknown perception '{name}' (known: crafter)")


def by_name_actions(action_names: list[str], config: RunConfig) -> list[str]:
    """Actions with no generic role: the ones the agent tries by name."""
    roles = {config.actions.noop, config.actions.interact, config.actions.sleep}
    roles |= set(config.actions.moves)
    return [a for a in action_names if a not in roles]


class Agent:
    """Wires an env, a parser, a planner, the executor, the store and recordings together."""

    def __init__(
        self,
        config: RunConfig,
        store: ExperienceStore,
        run_dir: Path | None,
        planner: Planner | None = None,
        env: gym.Env | None = None,
    ):
        self.config = config
        self.store = store
        self.run_dir = run_dir
        self.env = env or gym.make(config.env.id, **config.env.kwargs).unwrapped
        self.rng = np.random.default_rng(config.seed)
        self.parse = make_parser(config.perception, self.env.observation_space.shape)
        self.learner = Learner(store, config.learning)
        self.world = WorldModel()
        self.planner = planner or SymbolicPlanner(
            self.learner.skills, self.learner.guardrails, self.rng, self._world_facts)
        self.moves = {name: tuple(d) for name, d in config.actions.moves.items()}
        self.action_names = list(self.env.action_names)
        self.by_name = by_name_actions(self.action_names, config)
        unknown = [a for a in (config.actions.noop, config.actions.interact,
                               *config.actions.moves) if a not in self.action_names]
        if config.actions.sleep and config.actions.sleep not in self.action_names:
            unknown.append(config.actions.sleep)
        if unknown:
            raise ValueError(
                f"actions {unknown} are not in the env's action set {self.action_names}")

    def run_episode(
        self, seed: int, index: int, on_step: Callable[[EpisodeState], None] | None = None
    ) -> EpisodeResult:
        episode = f"{self.config.name}-s{seed}-e{index}"
        directory = self.run_dir / f"episode-{index:03d}" if self.run_dir else None
        recorder = None
        if directory is not None:
            recorder = EpisodeRecorder(directory, self._metadata(seed, episode))
        started = time.perf_counter()
        try:
            result = self._play(seed, episode, recorder, on_step)
        except BaseException:
            if recorder is not None:
                recorder.close("error")
            raise
        if recorder is not None:
            recorder.close("terminated" if result.terminated else "truncated")
        result.seconds = time.perf_counter() - started
        result.seed, result.directory = seed, directory
        return result

    def _play(self, seed, episode, recorder, on_step) -> EpisodeResult:
        reset_started = time.perf_counter()
        frame, info = self.env.reset(seed=seed)
        reset_seconds = time.perf_counter() - reset_started
        if recorder is not None:
            recorder.record_reset(frame)
        # The baseline without learning starts every world knowing nothing.
        self.world = WorldModel() if self.config.learning == "off" else self.world.fresh()
        world = self.world
        world.observe(self.parse(frame))
        ep = EpisodeState(episode=episode, world=world, last_info=info)
        executor = Executor(self.env, self.parse, self.config, self.rng, recorder)
        if hasattr(self.planner, "reset"):
            self.planner.reset()
        attempts = successes = idle = 0
        while not ep.done:
            world.avoid = self.learner.guardrails.forbidden_entries()
            executor.guards = [self._guard] if self.learner.guardrails.primitive_rules() else []
            ctx = self._context(ep)
            subgoal = self.planner.next_subgoal(ctx)
            worked_before = self._worked_before(subgoal.key, ctx.condition)
            attempt = executor.attempt(subgoal, ep, worked_before)
            self._keep(attempt, recorder)
            self.learner.observe(attempt, world.entries(), world.drift)
            self.planner.on_attempt(attempt, ctx)
            attempts += 1
            successes += attempt.diagnosis.success
            idle = 0 if attempt.diagnosis.steps else idle + 1
            if idle >= MAX_IDLE_ATTEMPTS:
                raise RuntimeError(
                    f"the planner chose {idle} subgoals in a row that took no step "
                    f"(last: {subgoal.key}); stopping instead of spinning")
            if on_step is not None:
                on_step(ep)
        self.learner.end_episode()
        unlocked = _unlocked(ep.last_info)
        return EpisodeResult(episode, seed, ep.step, ep.total_reward, attempts, successes,
                             0.0, ep.terminated, reset_seconds, ep.env_seconds, unlocked)

    def _guard(self, action: str, world: WorldModel, step: int) -> str | None:
        """Executor hook: the id of a guardrail that forbids ``action`` now, if any. The
        state's facts are only worked out if a matching guardrail's trigger needs them."""
        move = self.moves.get(action)
        entering = None
        if move:
            entering = world.kind_at((world.position[0] + move[0], world.position[1] + move[1]))
        guard = self.learner.guardrails.blocking_primitive(
            action, entering, lambda: snapshot(world, step).facts())
        return None if guard is None else guard.id

    def _world_facts(self) -> WorldFacts:
        world = self.world
        near = {kind for row in world.near(1) for kind in row if kind}
        mobile = sorted(kind for kind in near if world.mobile(kind))
        return WorldFacts(world.known_kinds(), world.depleting(), dict(world.highest), mobile)

    def _context(self, ep: EpisodeState) -> PlanContext:
        state = snapshot(ep.world, ep.step)
        return PlanContext(
            state=state, condition=condition_signature(state.predicates()),
            by_name=self.by_name, can_sleep=self.config.actions.sleep is not None,
            stats=self._stats)

    def _stats(self, subgoal: str, condition: int | None) -> tuple[int, int]:
        summary = self.store.summary(subgoal, condition)
        return summary.attempts, summary.successes

    def _worked_before(self, subgoal: str, condition: int) -> bool:
        """Has this subgoal succeeded under some other condition (a requirement may be missing)?"""
        everywhere = self._stats(subgoal, None)[1]
        here = self._stats(subgoal, condition)[1]
        return everywhere > here

    def _keep(self, attempt: ExperienceTuple, recorder: EpisodeRecorder | None) -> None:
        self.store.add(attempt)
        if recorder is not None:
            recorder.record_attempt(attempt)

    def _metadata(self, seed: int, episode: str) -> dict[str, Any]:
        return {"episode": episode, "seed": seed, "config": asdict(self.config),
                "action_names": self.action_names}


def _unlocked(info: dict[str, Any]) -> set[str]:
    achievements = info.get("privileged", {}).get("achievements", {})
    return {name for name, count in achievements.items() if count > 0}
