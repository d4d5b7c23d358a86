"""A skill: what a subgoal reliably does, when it works, and how to check that it did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cairn.experience.records import parse_change, split_counter_effect, upgrade_effect


@dataclass
class Skill:
    """Distilled from successful attempts at one subgoal (similar attempts merge here).

    ``preconditions`` are facts (see ``State.facts``) that held whenever it worked and
    that explain its failures; ``verification`` lists effects seen every time it worked
    (``wood+1``, ``changed:0,0:grass>table``); ``procedure`` is the controller call that worked.
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

    @property
    def steps_per_success(self) -> float:
        """What one success costs in steps: a successful attempt's median length over the
        success rate (a rate under 5% counts as 5%)."""
        steps = max((p.get("median_steps") or 1 for p in self.procedure), default=1)
        return steps / max(self.success_rate, 0.05)

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

    def uses(self) -> dict[str, int]:
        """Counters the skill spends, by how much (from ``name-n`` verification effects)."""
        return spent_counters(self.verification)

    def creates(self) -> list[str]:
        """Kinds the skill turns its target into (from ``changed:0,0:a>b`` effects)."""
        changes = (parse_change(e) for e in self.verification)
        return [c[3] for c in changes if c is not None and c[:2] == (0, 0) and c[3]]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("version")
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any], version: int = 0) -> Skill:
        body = {k: v for k, v in body.items() if k != "version"}
        body["verification"] = [upgrade_effect(e) for e in body.get("verification", [])]
        return cls(**body, version=version)


def spent_counters(effects: list[str]) -> dict[str, int]:
    """Counters that ``effects`` spend, by how much (``wood-2`` -> wood: 2)."""
    spent = (split_counter_effect(e) for e in effects)
    return {name: amount for name, sign, amount in spent if name and sign == "-"}
