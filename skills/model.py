"""A skill: what a subgoal reliably does, when it works, and how to check that it did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Skill:
    """Distilled from successful attempts at one subgoal (similar attempts merge here).

    ``preconditions`` are facts (see ``State.facts``) that held whenever it worked and
    that explain its failures; ``verification`` lists effects seen every time it worked
    (``wood+1``, ``tile:grass>table``); ``procedure`` is the controller call that worked.
    """

    subgoal: str
    procedure: list[dict[str, Any]]
    preconditions: list[str]
    verification: list[str]
    successes: int
    attempts: int
    """Attempts made while the preconditions held (the ones the skill answers for)."""
    rewarded: int
    """Successes that reached the task's goal (a reward)."""
    provenance: list[int] = field(default_factory=list)
    """Ids of the successful attempts it was distilled from (newest last)."""
    status: str = "active"
    version: int = 0

    @property
    def id(self) -> str:
        return self.subgoal

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.attempts, 1)

    def applicable(self, facts: frozenset[str] | set[str]) -> bool:
        return all(p in facts for p in self.preconditions)

    def verified_by(self, effects: list[str]) -> bool:
        """Does an attempt's observed effect list satisfy the verification criterion?"""
        return all(v in effects for v in self.verification)

    def raises(self) -> dict[str, int]:
        """Counters the skill increases, by how much (from ``name+n`` verification effects)."""
        out = {}
        for effect in self.verification:
            name, sign, amount = split_counter_effect(effect)
            if name and sign == "+":
                out[name] = amount
        return out

    def creates(self) -> list[str]:
        """Tile kinds the skill creates (from ``tile:a>b`` verification effects)."""
        return [e.split(">", 1)[1] for e in self.verification if e.startswith("tile:")]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("version")
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any], version: int = 0) -> Skill:
        return cls(**{k: v for k, v in body.items() if k != "version"}, version=version)


def split_counter_effect(effect: str) -> tuple[str | None, str, int]:
    """``wood+1`` -> ("wood", "+", 1); anything else -> (None, "", 0)."""
    for i, ch in enumerate(effect):
        if ch in "+-" and i > 0 and effect[i + 1:].isdigit() and ":" not in effect:
            return effect[:i], ch, int(effect[i + 1:])
    return None, "", 0
