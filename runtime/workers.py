"""Parallel environment workers under Ray, with one knowledge owner and batch evolution.

``cairn run CONFIG --workers N`` plays N episodes at once, each in its own Ray actor that
holds its own env and :class:`~cairn.runtime.loop.Agent` (a desktop game on the worker's own
private display). Nothing crosses a process boundary once per step:

1. The owner (this process, which holds the real store) takes a snapshot of the knowledge
   (``cairn.experience.snapshot``) and puts it in Ray's object store once.
2. Worker slot ``w`` plays episodes ``w``, ``w + N``, ``w + 2N``, ... Each starts from the
   snapshot taken after every episode before it but the ``N - 1`` just before it
   (``snapshot_for``), with learning frozen, and keeps every attempt with its kit's learning
   facts.
3. When the episode ends the worker sends its attempts back in one message; the owner adds
   them to the store and distils them, strictly in episode order, then snapshots again.

So each episode starts from everything learned but what its peers are still playing; with
one worker it is everything before it. Which snapshot an episode sees never depends on
timing, so the same config, seed and N give the same run. What a worker gives up against a
single process is learning within its episode and from its peers' running episodes
(docs/workers.md).

A worker process that dies mid-episode is replaced; its episode is marked ``worker_lost``
and keeps the steps its recording holds. Ctrl-C (or the kill switch) asks every worker to
stop at its next attempt, stores what they send back, and ends the run cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from cairn.envs.x11 import Terminated
from cairn.experience.recording import mark_abandoned
from cairn.experience.snapshot import take_snapshot
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import RunConfig
from cairn.runtime.kits import make_rules
from cairn.runtime.learning import Learner
from cairn.runtime.loop import EpisodeResult, episode_folder, episode_name
from cairn.runtime.worker import EpisodeReport, EpisodeWorker

log = logging.getLogger(__name__)

LOST = "worker_lost"
"""How an episode whose worker process died ends (its recording keeps its steps)."""
MAX_DEATHS_IN_A_ROW = 3
"""A slot whose worker dies this many times without finishing an episode ends the run."""
STOP_GRACE_S = 20.0
"""How long a stopped run waits for its workers to send what they played."""


@dataclass
class WorkerStats:
    episodes: int = 0
    steps: int = 0
    seconds: float = 0.0
    """Time spent playing (world generation left out)."""
    replaced: int = 0

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


@dataclass
class ParallelRun:
    """What a run with workers did, for the final table and the scaling benchmark."""

    results: list[EpisodeResult] = field(default_factory=list)
    knew: list[tuple[int, int]] = field(default_factory=list)
    """Per episode (as ``results``): the skills and guardrails it started with."""
    known: list[tuple[int, int]] = field(default_factory=list)
    """``known[k]``: the skills and guardrails the store held after the first k episodes."""
    workers: list[WorkerStats] = field(default_factory=list)
    startup_seconds: float = 0.0
    """Ray's start (or connection) and the workers' start."""
    sync_seconds: list[float] = field(default_factory=list)
    """Per episode: storing and distilling what came back, then the next snapshot."""
    play_seconds: float = 0.0
    """Wall-clock time from the first episode's start to the last one's end."""
    stopped: str = ""
    """What stopped the run early, if anything: ``interrupted`` (Ctrl-C), ``terminated``
    (SIGTERM) or ``killed`` (the kill switch)."""

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.results)

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.play_seconds, 1e-9)


def snapshot_for(index: int, workers: int) -> int:
    """Episode ``index`` starts from the knowledge of the episodes before it but the
    ``workers - 1`` just before it: those its peers may still be playing. (One worker sees
    everything before it, as a single process does.)"""
    return max(0, index - workers + 1)


class Owner:
    """The run's one knowledge owner: it stores what workers send and distils it."""

    def __init__(self, config: RunConfig, store: ExperienceStore):
        self.store = store
        self.learner = Learner(store, config.learning)
        self.learner.rules = make_rules(config.game_adapter(), config, self.learner)

    def snapshot(self) -> bytes:
        return take_snapshot(self.store)

    def ingest(self, report: EpisodeReport) -> None:
        """Store an episode's attempts (one transaction), then distil them in order."""
        attempts = [attempt for attempt, _ in report.attempts]
        self.store.add_many(attempts)
        for attempt, facts in report.attempts:
            self.learner.observe_facts(attempt, facts)
        self.learner.end_episode()


def run_parallel(config: RunConfig, store: ExperienceStore, run_dir: Path | None,
                 run_id: str, on_progress: Callable[[int, int], None] | None = None
                 ) -> ParallelRun:
    """Play ``config.episodes`` episodes on ``config.workers`` Ray workers into ``store``.

    ``on_progress(episodes_done, steps)`` is called about twice a second. Ctrl-C, SIGTERM
    and the kill switch stop the run cleanly: the returned run says which in ``stopped``
    and holds every episode that finished or was stopped; the exception is not raised
    again.
    """
    run = ParallelRun()
    began = time.perf_counter()
    owned = not ray.is_initialized()
    if owned:
        _start_ray(config)
    scratch = Path(tempfile.mkdtemp(prefix=f"cairn-{run_id}-"))
    run.workers = [WorkerStats() for _ in range(config.workers)]
    pool = _Pool(config, run_id, run_dir, scratch, run.workers)
    try:
        pool.start()
        run.startup_seconds = time.perf_counter() - began
        playing = time.perf_counter()
        sigterm: list[int] = []
        try:
            with _terminate_as_interrupt(sigterm):
                _Schedule(pool, Owner(config, store), run, config, on_progress).play()
        except KeyboardInterrupt as err:
            terminated = sigterm or isinstance(err, Terminated)
            run.stopped = "terminated" if terminated else "interrupted"
        except Exception as err:
            if getattr(err, "end_reason", None) != "killed":
                raise
            run.stopped = "killed"
        run.play_seconds = time.perf_counter() - playing
    finally:
        pool.shutdown()
        if owned:
            ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    return run


class WorkerError(Exception):
    """The workers cannot run: no Ray cluster at the address, or a slot whose worker keeps
    dying; the message says why."""


def _start_ray(config: RunConfig) -> None:
    address = config.ray_address
    _check_reachable(address)
    try:
        ray.init(address=address, num_cpus=None if address else config.workers,
                 include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as err:
        raise WorkerError(
            f"cannot reach a Ray cluster at {address!r} ({err}); start one with "
            "'ray start --head' and pass the address it prints, or 'auto' on its head node "
            "(a cluster with token authentication also needs RAY_AUTH_MODE=token here)"
        ) from None


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at a
    HOST:PORT address."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise WorkerError(f"cannot reach a Ray cluster at {address!r} ({reason}); start one "
                          "with 'ray start --head' and pass the address it prints") from None


class _Schedule:
    """Deals episodes to worker slots (slot ``w`` plays ``w``, ``w + N``, ...), starts each
    from its snapshot (``snapshot_for``) as soon as that snapshot exists, and stores and
    distils finished episodes strictly in index order. Which snapshot an episode sees never
    depends on timing, so runs are reproducible; a worker waits only when an episode its next
    one must know about is still being played."""

    def __init__(self, pool: _Pool, owner: Owner, run: ParallelRun, config: RunConfig,
                 on_progress: Callable[[int, int], None] | None):
        self.pool, self.owner, self.run, self.config = pool, owner, run, config
        self.on_progress = on_progress
        self.n, self.episodes = config.workers, config.episodes
        self.next = list(range(self.n))
        """Per slot, the next episode it will play."""
        self.pending: dict[Any, tuple[int, int]] = {}
        self.finished: dict[int, EpisodeReport] = {}
        self.snapshots: dict[int, Any] = {}
        self.ingested = 0

    def play(self) -> None:
        self._snapshot()
        try:
            self._start_ready()
            while self.pending:
                done, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.5)
                for ref in done:
                    worker, index = self.pending.pop(ref)
                    self.finished[index] = self.pool.collect(ref, worker, index)
                with _deferred_interrupts():
                    self._ingest_in_order()
                self._start_ready()
                self._progress()
        except BaseException:
            with _deferred_interrupts():
                self.finished.update(self.pool.stop(self.pending))
                for index in sorted(self.finished):
                    began = time.perf_counter()
                    self._keep(self.finished.pop(index))
                    self.run.sync_seconds.append(time.perf_counter() - began)
            raise

    def _start_ready(self) -> None:
        busy = {worker for worker, _ in self.pending.values()}
        for worker in range(self.n):
            index = self.next[worker]
            needed = snapshot_for(index, self.n)
            if worker in busy or index >= self.episodes or needed not in self.snapshots:
                continue
            ref = self.pool.play(worker, self.snapshots[needed], self.config.seed + index, index)
            self.pending[ref] = (worker, index)
            self.next[worker] += self.n
        oldest = snapshot_for(min(self.next), self.n)
        for k in [k for k in self.snapshots if k < oldest]:
            del self.snapshots[k]  # no episode still to start needs it: Ray frees it

    def _ingest_in_order(self) -> None:
        while self.ingested in self.finished:
            began = time.perf_counter()
            self._keep(self.finished.pop(self.ingested))
            self.ingested += 1
            if self.ingested <= snapshot_for(self.episodes - 1, self.n):
                self._snapshot()
            self.run.sync_seconds.append(time.perf_counter() - began)

    def _snapshot(self) -> None:
        self.snapshots[self.ingested] = ray.put(self.owner.snapshot())
        self.run.known.append(self.owner.learner.known())

    def _keep(self, report: EpisodeReport) -> None:
        run = self.run
        self.owner.ingest(report)
        run.results.append(report.result)
        run.knew.append(report.knew)
        stats = run.workers[report.worker]
        stats.episodes += 1
        stats.steps += report.result.steps
        stats.seconds += report.result.seconds - report.result.reset_seconds

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        live = self.pool.live_steps([worker for worker, _ in self.pending.values()])
        done = self.run.results + [r.result for r in self.finished.values()]
        self.on_progress(len(done), sum(r.steps for r in done) + live)


class _Pool:
    """The Ray actors of a run, by worker slot; a dead one is replaced in its slot."""

    def __init__(self, config: RunConfig, run_id: str, run_dir: Path | None, scratch: Path,
                 stats: list[WorkerStats]):
        self.config, self.run_id, self.stats = config, run_id, stats
        self.run_dir, self.scratch = run_dir, scratch
        self.actor_class = ray.remote(num_cpus=1, concurrency_groups={"control": 1},
                                      max_restarts=0, max_task_retries=0)(EpisodeWorker)
        self.actors: list[Any] = []
        self.deaths = [0] * config.workers
        """Per slot, deaths since its last finished episode."""

    def start(self) -> None:
        self.actors = [self._spawn(w) for w in range(self.config.workers)]
        ray.get([actor.pid.remote() for actor in self.actors])  # up and importable

    def _spawn(self, worker: int) -> Any:
        return self.actor_class.remote(self.config, worker, self.run_id, self.run_dir,
                                       self.scratch)

    def play(self, worker: int, snapshot: Any, seed: int, index: int) -> Any:
        return self.actors[worker].play.remote(snapshot, seed, index)

    def collect(self, ref: Any, worker: int, index: int) -> EpisodeReport:
        """The report behind ``ref``; a worker that died gets a ``worker_lost`` report and
        is replaced. An error inside the episode is raised as itself."""
        try:
            report = ray.get(ref)
        except ray.exceptions.RayActorError:
            self.deaths[worker] += 1
            if self.deaths[worker] >= MAX_DEATHS_IN_A_ROW:
                raise WorkerError(
                    f"worker {worker} died {self.deaths[worker]} times in a row, the last "
                    f"time during episode {index}; something kills every episode (the game, "
                    "memory, or the Ray cluster itself): see the lines above") from None
            log.warning("worker %d died during episode %d; it is replaced", worker, index)
            self.actors[worker] = self._spawn(worker)
            self.stats[worker].replaced += 1
            return self._lost(worker, index)
        except ray.exceptions.RayTaskError as err:
            raise err.as_instanceof_cause() from None
        self.deaths[worker] = 0
        return report

    def _lost(self, worker: int, index: int) -> EpisodeReport:
        directory = episode_folder(self.run_dir, index)
        steps = mark_abandoned(directory, LOST) if directory is not None else 0
        config = self.config
        result = EpisodeResult(episode_name(config.name, self.run_id, index),
                               config.seed + index, steps, 0.0, 0, 0, 0.0, LOST,
                               directory=directory)
        return EpisodeReport(worker, result, [])

    def live_steps(self, workers: list[int]) -> int:
        refs = [self.actors[w].progress.remote() for w in workers]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
        steps = 0
        for ref in ready:
            with contextlib.suppress(Exception):
                steps += ray.get(ref)
        return steps

    def stop(self, pending: dict[Any, tuple[int, int]]) -> dict[int, EpisodeReport]:
        """Ask the busy workers to stop and collect what they played."""
        for worker, _ in pending.values():
            with contextlib.suppress(Exception):
                self.actors[worker].stop.remote()
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_S)
        reports = {}
        for ref in done:
            worker, index = pending[ref]
            with contextlib.suppress(Exception):
                reports[index] = self.collect(ref, worker, index)
        return reports

    def shutdown(self) -> None:
        closing = []
        for actor in self.actors:
            with contextlib.suppress(Exception):
                closing.append(actor.close.remote())
        with contextlib.suppress(Exception):
            ray.wait(closing, num_returns=len(closing), timeout=10)
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


@contextlib.contextmanager
def _terminate_as_interrupt(received: list[int]) -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does (a SIGTERM ignored on purpose stays ignored);
    ``received`` remembers it, since a library may turn the exception into a plain
    KeyboardInterrupt on its way up."""
    def terminate(signum: int, frame: Any) -> None:
        received.append(signum)
        raise Terminated("SIGTERM received")

    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_IGN:
            signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the owner writes, so a batch is stored, distilled
    and counted whole (a SIGTERM between storing an episode and adding it to the run's
    results left it out of the final table); the signal acts once the block is done."""
    caught: list[int] = []
    held = [signal.SIGINT]
    if callable(signal.getsignal(signal.SIGTERM)):  # handled (``_terminate_as_interrupt``)
        held.append(signal.SIGTERM)
    try:
        previous = {signum: signal.signal(signum, lambda n, frame: caught.append(n))
                    for signum in held}
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in caught:
        previous[signal.SIGTERM](signal.SIGTERM, None)
    if caught:
        raise KeyboardInterrupt
