"""The worker side of a run with workers: one Ray actor that plays whole episodes.

It holds its own env and :class:`~cairn.runtime.loop.Agent` for its whole life, plays each
episode from the knowledge snapshot the owner sends (learning frozen), and sends back the
episode's result with every attempt and the learning facts it was played with. The owner's
side, which deals episodes out and distils what comes back, is ``cairn.runtime.workers``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from cairn.experience.records import ExperienceTuple
from cairn.experience.snapshot import open_snapshot
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import RunConfig
from cairn.runtime.executor import EpisodeState
from cairn.runtime.loop import Agent, EpisodeResult, episode_folder, episode_name


@dataclass
class EpisodeReport:
    """What a worker sends back once per episode."""

    worker: int
    result: EpisodeResult
    attempts: list[tuple[ExperienceTuple, dict[str, Any]]]
    knew: tuple[int, int] = (0, 0)
    """Skills and guardrails the episode started with (from its snapshot)."""


class EpisodeWorker:
    """One Ray actor: an env and an agent that play whole episodes from snapshots.

    ``progress`` and ``stop`` run in their own concurrency group, so they are answered while
    ``play`` runs; ``play`` and ``close`` always run on the one thread that owns the SQLite
    connection of the worker's snapshot.
    """

    def __init__(self, config: RunConfig, worker: int, run_id: str, run_dir: Path | None,
                 scratch: Path):
        # The owner learns from what a worker plays: its planner experiments as the owner's would.
        frozen = "frozen" if config.learning == "learn" else config.learning
        planner = dataclasses.replace(config.planner, experiments=config.experiments)
        self.config = dataclasses.replace(config, learning=frozen, workers=1, planner=planner)
        self.worker, self.run_id, self.run_dir = worker, run_id, run_dir
        self.scratch = scratch / f"worker-{worker}"
        self.agent: Agent | None = None
        self.store: ExperienceStore | None = None
        self.state: EpisodeState | None = None
        self.stopping = False

    def pid(self) -> int:
        return os.getpid()

    @ray.method(concurrency_group="control")
    def progress(self) -> int:
        """Steps played so far in the current episode."""
        return self.state.step if self.state is not None else 0

    @ray.method(concurrency_group="control")
    def stop(self) -> None:
        """Stop at the end of the current attempt; ``play`` returns what was played."""
        self.stopping = True

    def play(self, snapshot: bytes, seed: int, index: int) -> EpisodeReport:
        started = time.perf_counter()
        store = open_snapshot(snapshot, self.scratch / f"snapshot-e{index}.sqlite")
        if self.agent is None:
            self.agent = Agent(self.config, store, self.run_dir, run_id=self.run_id)
        else:
            self.agent.use_store(store)
        if self.store is not None:
            self._drop(self.store)
        self.store, self.state = store, None
        learner = self.agent.learner
        learner.outbox = outbox = []
        knew = learner.known()
        try:
            result = self.agent.run_episode(seed, index, self._on_step)
        except KeyboardInterrupt:
            result = self._partial(seed, index, "interrupted", time.perf_counter() - started)
        return EpisodeReport(self.worker, result, outbox, knew)

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
        if self.store is not None:
            self._drop(self.store)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _on_step(self, ep: EpisodeState) -> None:
        self.state = ep
        if self.stopping:
            raise KeyboardInterrupt  # the recording closes as "interrupted"

    def _partial(self, seed: int, index: int, end: str, seconds: float) -> EpisodeResult:
        ep, outbox = self.state, self.agent.learner.outbox or []
        return EpisodeResult(
            episode_name(self.config.name, self.run_id, index), seed, ep.step if ep else 0,
            ep.total_reward if ep else 0.0, len(outbox),
            sum(a.diagnosis.success for a, _ in outbox), seconds, end,
            directory=episode_folder(self.run_dir, index))

    @staticmethod
    def _drop(store: ExperienceStore) -> None:
        store.close()
        for path in store.path.parent.glob(store.path.name + "*"):
            path.unlink(missing_ok=True)
