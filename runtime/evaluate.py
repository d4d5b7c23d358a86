"""Learning evaluation: train from an empty store, then score agents on held-out world seeds
side by side (random, learning disabled, full agent frozen), each with the game's own score."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


def train(config: RunConfig, store: ExperienceStore, budget: int, generation: int,
          first_seed: int = 0, report: Callable[[str], None] = print) -> list[Scored]:
    """Learn for ``budget`` env steps in blocks of ``generation`` episodes (one Scored each)."""
    config = dataclasses.replace(config, learning="learn", seed=first_seed)
    with Agent(config, store, None) as agent:
        return _train(agent, budget, generation, first_seed, report)


def _train(agent: Agent, budget: int, generation: int, first_seed: int,
           report: Callable[[str], None]) -> list[Scored]:
    generations: list[Scored] = []
    steps, seed, started = 0, first_seed, time.perf_counter()
    while steps < budget:
        block = Scored(f"generation {len(generations) + 1}", agent.game)
        for _ in range(generation):
            episode = agent.run_episode(seed, seed - first_seed)
            block.reached.append(episode.reached)
            block.steps += episode.steps
            steps += episode.steps
            seed += 1
            if steps >= budget:
                break
        generations.append(block)
        report(f"  {block.name}: {len(block.reached)} episodes, {steps}/{budget} steps, "
               f"{len(agent.learner.skills.active())} skills, "
               f"{len(agent.learner.guardrails.active())} guardrails, "
               f"{time.perf_counter() - started:.0f} s")
    return generations


def plot_curve(points: list[float], baselines: dict[str, float], path: Path) -> None:
    """A small PNG of the score per generation, with the baselines as flat lines."""
    import cv2

    width, height, margin = 640, 360, 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = max([*points, *baselines.values(), 1.0]) * 1.15
    def xy(i: int, value: float) -> tuple[int, int]:
        x = margin + int(i * (width - 2 * margin) / max(len(points) - 1, 1))
        return x, height - margin - int(value / top * (height - 2 * margin))
    cv2.line(canvas, (margin, height - margin), (width - margin, height - margin), (0, 0, 0), 1)
    cv2.line(canvas, (margin, margin), (margin, height - margin), (0, 0, 0), 1)
    colours = [(0, 0, 200), (0, 140, 0), (160, 0, 160)]
    for (name, value), colour in zip(baselines.items(), colours, strict=False):
        y = xy(0, value)[1]
        cv2.line(canvas, (margin, y), (width - margin, y), colour, 1)
        cv2.putText(canvas, f"{name} {value:.1f}", (width - margin - 170, y - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    line = np.array([xy(i, v) for i, v in enumerate(points)], np.int32)
    cv2.polylines(canvas, [line], False, (200, 80, 0), 2)
    for x, y in line:
        cv2.circle(canvas, (int(x), int(y)), 3, (200, 80, 0), -1)
    cv2.putText(canvas, "score per training generation", (margin, 24),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(canvas, f"{top:.1f}", (4, margin), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(canvas, "0", (24, height - margin), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(canvas, f"generations 1 to {len(points)}", (width // 2 - 50, height - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
