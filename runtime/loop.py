"""The one perception-act loop: perceive, plan a subgoal, execute it through controllers,
diagnose, store and record, distil, replan. Every game is played by this loop; what differs
between games comes from its adapter (``cairn.envs.game``) and the controller family it names
(``cairn.runtime.kits``)."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from cairn.envs.game import Game
from cairn.experience.recording import EpisodeRecorder
from cairn.experience.records import ExperienceTuple
from cairn.experience.store import ExperienceStore, StoreError
from cairn.runtime.config import RunConfig
from cairn.runtime.executor import EpisodeState, Executor
from cairn.runtime.kits import Kit, make_kit
from cairn.runtime.learning import Learner
from cairn.runtime.planner import Planner

log = logging.getLogger(__name__)
MAX_IDLE_ATTEMPTS = 200
"""Subgoals in a row that took no step after which an episode ends as stuck."""
MEMORY = "memory"
"""The knowledge kind (and key) of what the kit and planner learned across episodes."""


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
    end: str
    """Why it ended: ``terminated``, ``truncated`` (the env's limits), ``goal`` (the goal
    is on the screen), ``stuck`` (no plan reaches it), ``window_closed``, ``max_attempts``."""
    reset_seconds: float = 0.0
    """Time spent generating the world (reset), included in ``seconds``."""
    env_seconds: float = 0.0
    """Time spent inside the env's ``step``, included in ``seconds``."""
    reached: set[str] = field(default_factory=set)
    """What the env reports the episode reached (privileged: for the final table only)."""
    explored: int = 0
    """Attempts the planner made to learn rather than to reach the goal."""
    directory: Path | None = None
    planner_usage: dict[str, float] = field(default_factory=dict)
    """A model planner's calls, tokens, cost and fallbacks by reason this episode
    (``Usage.as_dict`` in ``runtime/llm_client.py``); empty for the kit's own planner."""

    @property
    def terminated(self) -> bool:
        return self.end == "terminated"

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.seconds - self.reset_seconds, 1e-9)


class Agent:
    """Plays episodes of one game with one store's knowledge.

    ``env`` (optional) is an env already opened by ``game``; without it the agent opens one
    and ``close()`` closes it.
    """

    def __init__(
        self,
        config: RunConfig,
        store: ExperienceStore,
        run_dir: Path | None,
        planner: Planner | None = None,
        env: gym.Env | None = None,
        game: Game | None = None,
        run_id: str | None = None,
    ):
        self.config = config
        self.store = store
        self.run_dir = run_dir
        self.game = game or config.game_adapter()
        self.run_id = run_id or new_run_id()
        """Part of every episode's name: episodes of different runs never share one."""
        self._owned, self.sight = None, None
        if env is None:
            self._owned = self.game.open()
            env = self._owned.__enter__()
        self.env = env
        try:  # a game this agent opened must not outlive an agent that could not start
            self.rng = np.random.default_rng(config.seed)
            self.learner = Learner(store, config.learning)
            self.kit: Kit = make_kit(self.game, env, config, self.learner, self.rng)
            self.learner.rules = self.kit.rules
            self.sight = self._sight(store)
            self.planner = planner or self._configured_planner()
            self._recall()
        except BaseException:
            self.close()
            raise

    def _sight(self, store: ExperienceStore) -> Any:
        """The config's CLIP encoder at work (``runtime.sight``), or None without one."""
        if self.config.clip is None:
            return None
        from cairn.runtime.sight import Sight

        sight = Sight(self.config.clip, store)
        if hasattr(self.kit, "parse"):
            self.kit.parse = sight.tagging(self.kit.parse)
        return sight

    def _configured_planner(self) -> Planner:
        """The kit's planner, or the config's model planner falling back to it."""
        if self.config.planner.kind != "llm":
            return self.kit.planner()
        from cairn.runtime.llm_planner import LLMPlanner

        return LLMPlanner.for_agent(self.config, self.kit.planner(), self.env, self.game)

    def _recall(self) -> None:
        """Start with what earlier runs on this store learned outside skills and guardrails
        (the baseline without learning starts knowing nothing)."""
        if self.learner.mode == "off":
            return
        entry = self.store.knowledge.get(MEMORY, MEMORY)
        if entry is None:
            return
        try:
            self.kit.recall(entry.body.get("kit", {}))
            self.planner.recall(entry.body.get("planner", {}))
        except (AttributeError, TypeError, ValueError) as err:
            raise StoreError(
                f"{self.store.path}: what earlier runs learned across episodes (its "
                f"'{MEMORY}' entry) cannot be read ({err}); delete it to start without it: "
                f"sqlite3 {self.store.path} \"DELETE FROM knowledge WHERE kind = '{MEMORY}'\""
            ) from None

    def _remember(self) -> None:
        """Keep that memory in the store after every episode the run learns from itself
        (a worker's agent plays for a run whose knowledge lives elsewhere)."""
        if self.learner.mode == "learn" and self.learner.outbox is None:
            body = {"kit": self.kit.memory(), "planner": self.planner.memory()}
            self.store.knowledge.put(MEMORY, MEMORY, "active", body, identity=())

    def use_store(self, store: ExperienceStore) -> None:
        """Play from now on with another store's knowledge (a worker's new snapshot)."""
        self.store = store
        self.learner.use_store(store)
        if self.sight is not None:
            self.sight.use_store(store)

    def close(self) -> None:
        if self.sight is not None:
            self.sight.close()
        if self._owned is not None:
            owned, self._owned = self._owned, None
            owned.__exit__(None, None, None)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_episode(
        self, seed: int, index: int, on_step: Callable[[EpisodeState], None] | None = None,
        on_attempt: Callable[[ExperienceTuple, EpisodeState], None] | None = None,
    ) -> EpisodeResult:
        """``on_step`` gets the episode's state after an attempt (not one that ends the
        episode at the kit's attempt limit); ``on_attempt`` gets every attempt with that state,
        once it is stored and learned from."""
        episode = episode_name(self.config.name, self.run_id, index)
        directory = episode_folder(self.run_dir, index)
        recorder = None
        if directory is not None:
            recorder = EpisodeRecorder(directory, self._metadata(seed, index, episode))
        started = time.perf_counter()
        try:
            result = self._play(seed, index, episode, recorder, on_step, on_attempt)
        except BaseException as err:
            if recorder is not None:
                recorder.close(end_reason(err))
            raise
        if recorder is not None:
            recorder.close(result.end)
        result.seconds = time.perf_counter() - started
        result.directory = directory
        return result

    def _play(self, seed, index, episode, recorder, on_step, on_attempt) -> EpisodeResult:
        # The kit, controllers and planner share this generator; drawn afresh from the run's
        # seed and the world's, an episode plays the same whatever ran before it in this
        # process (a resumed run, a worker given any episode).
        entropy = [self.config.seed % 2**63, int(seed) % 2**63]  # SeedSequence wants >= 0
        self.rng.bit_generator.state = np.random.default_rng(entropy).bit_generator.state
        reset_started = time.perf_counter()
        frame, info = self.env.reset(seed=seed, options=self.game.reset_options(seed, index))
        reset_seconds = time.perf_counter() - reset_started
        if recorder is not None:
            recorder.record_reset(frame)
        ep = EpisodeState(episode=episode, last_info=info, frame=frame)
        self.kit.begin(frame, ep)
        executor = Executor(self.env, self.kit, self.config.max_steps, recorder)
        self.planner.reset()
        attempts = successes = explored = idle = 0
        while not ep.done:
            ctx = self.kit.context(ep)
            first_frame = ep.frame
            if self.sight is not None:
                ctx.similar = functools.partial(self.sight.similar, first_frame)
            subgoal = self.planner.next_subgoal(ctx)
            if subgoal is None:  # the planner has nothing left to do: the goal, or stuck
                ep.end = self.planner.last_reason or "stuck"
                break
            explored += self.planner.last_reason.startswith("explore")
            attempt = executor.attempt(subgoal, ep, self.kit.may_lack_requirement(subgoal, ctx))
            attempt.diagnosis.planner = getattr(self.planner, "last_event", "")
            self._keep(attempt, recorder)
            if self.sight is not None:
                self.sight.remember(attempt, first_frame)
                if not ep.done and self.sight.goal_seen(ep.frame):
                    ep.end, ep.done = "goal", True  # the goal in words is on the screen
            self.learner.observe(attempt, self.kit)
            self.planner.on_attempt(attempt, ctx)
            if on_attempt is not None:
                on_attempt(attempt, ep)
            attempts += 1
            successes += attempt.diagnosis.success
            idle = 0 if attempt.diagnosis.steps else idle + 1
            if idle >= MAX_IDLE_ATTEMPTS:  # boxed in (every way out a kind it must not
                # enter, say): nothing it can choose moves the game on. The world is given
                # up, not the run: a long run goes on with the next one.
                log.warning("%s: %d subgoals in a row took no step (last: %s); ending the "
                            "episode", episode, idle, subgoal.key)
                ep.end = "stuck"
                break
            if self.kit.max_attempts is not None and attempts >= self.kit.max_attempts:
                ep.end = ep.end or "max_attempts"
                break
            if on_step is not None:
                on_step(ep)
        self.learner.end_episode()
        self._remember()
        end = ep.end or ("terminated" if ep.terminated else "truncated")
        reached = self.game.reached({**ep.last_info, "goal_reached": end == "goal"})
        return EpisodeResult(episode, seed, ep.step, ep.total_reward, attempts, successes,
                             0.0, end, reset_seconds, ep.env_seconds, reached, explored,
                             planner_usage=dict(getattr(self.planner, "episode_usage", {})))

    def _keep(self, attempt: ExperienceTuple, recorder: EpisodeRecorder | None) -> None:
        self.store.add(attempt)
        if recorder is not None:
            recorder.record_attempt(attempt)

    def _metadata(self, seed: int, index: int, episode: str) -> dict[str, Any]:
        return {"episode": episode, "seed": seed, "config": asdict(self.config),
                "game": self.game.name, "versions": self.game.versions(),
                "action_names": list(getattr(self.env.unwrapped, "action_names", []) or []),
                "reset_options": self.game.reset_options(seed, index)}


def end_reason(err: BaseException) -> str:
    """How an episode that raised ``err`` ended, as its recording says it: ``interrupted``
    (Ctrl-C, SIGTERM), the exception's own ``end_reason`` (a kill switch says ``killed``),
    else ``error: <type>``."""
    if isinstance(err, KeyboardInterrupt | SystemExit):
        return "interrupted"
    return getattr(err, "end_reason", None) or f"error: {type(err).__name__}"


def episode_name(run_name: str, run_id: str, index: int) -> str:
    """The episode's name in the store and the table: unique across runs."""
    return f"{run_name}-{run_id}-e{index}"


def episode_folder(run_dir: Path | None, index: int) -> Path | None:
    """Where episode ``index`` of a run is recorded (None: the run records nothing)."""
    return run_dir / f"episode-{index:03d}" if run_dir is not None else None


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]

