"""A guardrail: an operation the agent must not perform while a trigger condition holds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

#: Fact families that count as "something new" for a ``within`` trigger: what is held
#: (counter thresholds) and what is next to the agent.
NOVELTY_PREFIXES = ("near:", "facing:")


def novelty_facts(facts: frozenset[str] | set[str], ignore: frozenset[str] | set[str] = frozenset()
                  ) -> set[str]:
    """Held items (counter thresholds, minus counters in ``ignore``) and neighbours."""
    return {f for f in facts
            if (">=" in f and f.split(">=", 1)[0] not in ignore) or f.startswith(NOVELTY_PREFIXES)}


@dataclass
class Trigger:
    """Holds when every ``all_of`` fact holds, no ``none_of`` fact does and, if ``within``
    is set, one of its fact sets (what an earlier failure held and stood next to) covers
    everything the state holds and stands next to: nothing new to try with."""

    all_of: list[str] = field(default_factory=list)
    none_of: list[str] = field(default_factory=list)
    within: list[list[str]] | None = None
    ignore: list[str] = field(default_factory=list)
    """Counters whose levels ``within`` disregards (ones that change by themselves)."""

    def holds(self, facts: frozenset[str] | set[str]) -> bool:
        if any(f not in facts for f in self.all_of):
            return False
        if any(f in facts for f in self.none_of):
            return False
        if self.within is None:
            return True
        have = novelty_facts(facts, set(self.ignore))
        return any(have <= set(seen) for seen in self.within)

    def covering(self, facts: frozenset[str] | set[str]) -> list[set[str]]:
        """The ``within`` sets that still cover what ``facts`` hold and stand next to: the
        earlier failures that had everything these facts would bring."""
        have = novelty_facts(facts, set(self.ignore))
        return [set(seen) for seen in self.within or [] if have <= set(seen)]

    def unconditional(self) -> bool:
        return not self.all_of and not self.none_of and self.within is None

    def describe(self) -> str:
        parts = [" & ".join(self.all_of)] if self.all_of else []
        parts += [f"not {f}" for f in self.none_of]
        if self.within is not None:
            parts.append(f"nothing held or near beyond what one of {len(self.within)} "
                         "failed attempts had")
        return " & ".join(parts) or "always"


@dataclass
class Guardrail:
    """Distilled from failures: why they failed, what to forbid, where, and on what evidence.

    ``forbidden`` is ``subgoal <key>`` (checked by the planner before choosing) or
    ``enter <kind>`` / ``primitive <action>`` (checked by the executor before each action).
    """

    root_cause: str
    explanation: str
    trigger: Trigger
    forbidden: str
    scope: str
    """``subgoal`` (only that subgoal is affected) or ``task`` (anything the agent does)."""
    evidence: list[int]
    contradictions: list[int] = field(default_factory=list)
    status: str = "active"
    version: int = 0

    @property
    def id(self) -> str:
        """Stable across versions: what is forbidden, and under which trigger."""
        key = f"{self.forbidden}|{sorted(self.trigger.all_of)}|{sorted(self.trigger.none_of)}|" \
              f"{self.trigger.within is not None}"
        return "g-" + hashlib.blake2b(key.encode(), digest_size=4).hexdigest()

    @property
    def forbidden_subgoal(self) -> str | None:
        """The subgoal key a ``subgoal <key>`` guardrail forbids (None for other kinds)."""
        kind, _, what = self.forbidden.partition(" ")
        return what if kind == "subgoal" else None

    @property
    def novelty_gate(self) -> bool:
        """Forbids until something new is at hand (a ``within`` trigger)."""
        return self.trigger.within is not None

    @property
    def confidence(self) -> float:
        """Share of the evidence that supports it (with one phantom contradiction)."""
        return len(self.evidence) / (len(self.evidence) + len(self.contradictions) + 1)

    def blocks_subgoal(self, subgoal: str, facts: frozenset[str]) -> bool:
        return (self.status == "active" and self.forbidden == f"subgoal {subgoal}"
                and self.trigger.holds(facts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "root_cause": self.root_cause, "explanation": self.explanation,
            "trigger": {"all_of": self.trigger.all_of, "none_of": self.trigger.none_of,
                        "within": self.trigger.within, "ignore": self.trigger.ignore},
            "forbidden": self.forbidden, "scope": self.scope, "evidence": self.evidence,
            "contradictions": self.contradictions, "status": self.status,
            "confidence": round(self.confidence, 3),
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any], version: int = 0) -> Guardrail:
        t = body["trigger"]
        return cls(
            body["root_cause"], body["explanation"],
            Trigger(list(t["all_of"]), list(t["none_of"]), t["within"], list(t.get("ignore", []))),
            body["forbidden"], body["scope"], list(body["evidence"]),
            list(body.get("contradictions", [])), body.get("status", "active"), version)
