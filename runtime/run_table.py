"""The table ``cairn run`` prints at the end: a row per episode, the game's score over the run,
how that score moved from the run's first episodes to its last, and what the store holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cairn.envs.game import Score
from cairn.experience.store import ExperienceStore
from cairn.guardrails.store import KIND as GUARDRAIL
from cairn.skills.library import KIND as SKILL

KINDS = (SKILL, GUARDRAIL)
"""Knowledge kinds the table counts."""


@dataclass(frozen=True)
class Trend:
    """The game's score over the first and over the last third of a run's episodes."""

    name: str
    first: float
    last: float
    size: int
    """Episodes in each third."""

    def line(self) -> str:
        first, last = f"{self.first:.2f}", f"{self.last:.2f}"
        early = "the first episode" if self.size == 1 else f"the first {self.size} episodes"
        late = "the last one" if self.size == 1 else f"the last {self.size}"
        if first == last:
            return f"{self.name} stayed at {first} from {early} to {late}"
        moved = "rose" if self.last > self.first else "fell"
        return f"{self.name} {moved} from {first} over {early} to {last} over {late}"


def score_trend(reached: Sequence[set[str]], score: Callable[[Sequence[set[str]]], Score]
                ) -> Trend | None:
    """``score`` (the game's) over the first third of ``reached`` and over the last third;
    None for fewer than three episodes."""
    size = len(reached) // 3
    if size == 0:
        return None
    first, last = score(list(reached[:size])), score(list(reached[-size:]))
    return Trend(first.name, first.value, last.value, size)


@dataclass(frozen=True)
class Holdings:
    """What a store holds: its attempts and, per knowledge kind, entries by status."""

    attempts: int
    statuses: dict[str, dict[str, int]]

    def count(self, kind: str) -> int:
        return sum(self.statuses.get(kind, {}).values())


def holdings(store: ExperienceStore) -> Holdings:
    knowledge = store.knowledge
    return Holdings(store.count(), {
        kind: dict(Counter(e.status for e in knowledge.current(kind))) for kind in KINDS})


def holdings_line(before: Holdings, after: Holdings) -> str:
    """What the store holds now, and what this run added to it."""
    held = [_count(after.attempts, "attempt")]
    added = [_count(after.attempts - before.attempts, "attempt")]
    for kind in KINDS:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(after.statuses[kind].items()))
        held.append(_count(after.count(kind), kind) + (f" ({statuses})" if statuses else ""))
        added.append(_count(after.count(kind) - before.count(kind), kind))
    return f"the store now holds {', '.join(held)}; this run added {', '.join(added)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_table(results, score: Score, run_dir: Path | None,
                notes: Sequence[str] = ()) -> None:
    """One line per episode, then the game's own score (what its env reports), then
    ``notes`` (how the score moved, what the store holds)."""
    header = f"{'episode':<26} {'seed':>6} {'steps':>6} {'reward':>7} {'attempts':>8} " \
             f"{'explore':>7} {'steps/s':>8} {'end':<13} reached"
    print(header)
    print("-" * len(header))
    for r in results:
        names = ", ".join(sorted(r.reached)) or "-"
        print(f"{r.episode:<26} {r.seed:>6} {r.steps:>6} {r.reward:>7.1f} {r.attempts:>8} "
              f"{r.explored:>7} {r.steps_per_second:>8.0f} {r.end:<13} {names}")
    total_steps = sum(r.steps for r in results)
    total_time = sum(r.seconds - r.reset_seconds for r in results)
    print("-" * len(header))
    print(f"{score.name} {score.value:.2f}  over {len(results)} episode(s), "
          f"{len(score.rates)} item(s); {total_steps / max(total_time, 1e-9):.0f} steps/s "
          "in episode time (resets excluded)")
    for note in notes:
        print(note)
    if run_dir is not None:
        print(f"recordings: {run_dir}")
