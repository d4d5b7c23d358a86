"""Learning evaluation: train from an empty store, then score agents on held-out world seeds
side by side (random, learning disabled, full agent frozen), each with the game's own score."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cairn.envs.game import Game
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import RunConfig
from cairn.runtime.loop import Agent

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """What one agent reached in each episode, scored by the game."""

    name: str
    game: Game
    reached: list[set[str]] = field(default_factory=list)
    steps: int = 0
    knowledge: dict[str, int] = field(default_factory=dict)
    """Skills and guardrails by status when it ended (training generations only)."""

    def rates(self) -> dict[str, float]:
        return self.game.score(self.reached).rates

    def score(self) -> float:
        return self.game.score(self.reached).value


def random_agent(config: RunConfig, seeds: list[int]) -> Scored:
    """Uniformly random actions (of a discrete action set) until the episode ends."""
    game = config.game_adapter()
    rng = np.random.default_rng(0)
    result = Scored("random", game)
    with game.open() as env:
        for i, seed in enumerate(seeds):
            env.reset(seed=seed, options=game.reset_options(seed, i))
            done, steps, info = False, 0, {}
            while not done and (config.max_steps is None or steps < config.max_steps):
                action = int(rng.integers(env.action_space.n))
                _, _, terminated, truncated, info = env.step(action)
                done, steps = terminated or truncated, steps + 1
            result.reached.append(game.reached(info))
            result.steps += steps
    return result


def play(config: RunConfig, store: ExperienceStore, seeds: list[int], name: str,
         on_episode: Callable[[int], None] | None = None) -> Scored:
    with Agent(config, store, None) as agent:
        result = Scored(name, agent.game)
        for i, seed in enumerate(seeds):
            episode = agent.run_episode(seed, i)
            result.reached.append(episode.reached)
            result.steps += episode.steps
            if on_episode is not None:
                on_episode(episode.steps)
    return result


@dataclass(frozen=True)
class Progress:
    """Where a training run stands after a whole generation: with the store as it was
    then, enough to go on exactly as the uninterrupted run would have."""

    steps: int = 0
    episodes: int = 0
    generations: int = 0


def train(config: RunConfig, store: ExperienceStore, budget: int, generation: int,
          first_seed: int = 0, report: Callable[[str], None] = print,
          checkpoints: Sequence[int] = (),
          on_checkpoint: Callable[[int, Agent], None] | None = None,
          start: Progress = Progress(),
          on_generation: Callable[[Progress, Scored, Agent], None] | None = None
          ) -> list[Scored]:
    """Learn for ``budget`` env steps in blocks of ``generation`` episodes (one Scored each).

    ``on_checkpoint(steps, agent)`` is called after the episode that first takes the
    training past each of ``checkpoints`` (the learning agent must not be changed by it);
    ``on_generation(progress, block, agent)`` after every generation. ``start`` goes on from a
    progress an earlier call reported, on the store as it was then; it returns the
    generations played from there.
    """
    config = dataclasses.replace(config, learning="learn", seed=first_seed)
    with Agent(config, store, None) as agent:
        return _train(agent, budget, generation, first_seed, report,
                      sorted(c for c in checkpoints if c > start.steps), on_checkpoint,
                      start, on_generation)


def _train(agent: Agent, budget: int, generation: int, first_seed: int,
           report: Callable[[str], None], checkpoints: list[int],
           on_checkpoint: Callable[[int, Agent], None] | None, start: Progress,
           on_generation: Callable[[Progress, Scored, Agent], None] | None) -> list[Scored]:
    generations: list[Scored] = []
    steps, seed, started = start.steps, first_seed + start.episodes, time.perf_counter()
    while steps < budget:
        block = Scored(f"generation {start.generations + len(generations) + 1}", agent.game)
        for _ in range(generation):
            episode = agent.run_episode(seed, seed - first_seed)
            block.reached.append(episode.reached)
            block.steps += episode.steps
            steps += episode.steps
            seed += 1
            while checkpoints and steps >= checkpoints[0]:
                checkpoints.pop(0)
                if on_checkpoint is not None:
                    on_checkpoint(steps, agent)
            if steps >= budget:
                break
        block.knowledge = knowledge_size(agent)
        generations.append(block)
        if on_generation is not None:
            on_generation(Progress(steps, seed - first_seed,
                                   start.generations + len(generations)), block, agent)
        report(f"  {block.name}: {len(block.reached)} episodes, {steps}/{budget} steps, "
               f"{len(agent.learner.skills.active())} skills, "
               f"{len(agent.learner.guardrails.active())} guardrails, "
               f"{time.perf_counter() - started:.0f} s")
    return generations


def knowledge_size(agent: Agent) -> dict[str, int]:
    """How many skills and guardrails the agent holds now, by status."""
    sizes: dict[str, int] = {}
    for kind, entries in (("skills", agent.learner.skills.skills),
                          ("guardrails", agent.learner.guardrails.guardrails)):
        for entry in entries.values():
            key = f"{kind} {entry.status}"
            sizes[key] = sizes.get(key, 0) + 1
    return dict(sorted(sizes.items()))
