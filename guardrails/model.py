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
    if type(facts) is not frozenset:
        return {f for f in facts if _novel(f, ignore)}
    # The facts it kept, in the order it met them: a set built from them one by one is
    # the very set the comprehension above builds, down to its iteration order.
    return set(_novelty_entry(facts, frozenset(ignore))[0])


def _novel(fact: str, ignore: frozenset[str] | set[str]) -> bool:
    return (">=" in fact and fact.split(">=", 1)[0] not in ignore) \
        or fact.startswith(NOVELTY_PREFIXES)


_NOVELTY_CACHE: dict[int, tuple[frozenset[str], frozenset[str], tuple[str, ...],
                                frozenset[str]]] = {}
_NOVELTY_CACHE_SIZE = 1024


def _novelty_entry(facts: frozenset[str], ignore: frozenset[str]
                   ) -> tuple[tuple[str, ...], frozenset[str]]:
    """(the novelty facts of ``facts`` in the order met, as a frozenset), remembered per
    facts object: a state's facts are one frozenset, tested against every guardrail and
    distilled again after every attempt. Only the very same object (which the entry keeps
    alive, so its id is not reused) with an equal ``ignore`` hits."""
    entry = _NOVELTY_CACHE.get(id(facts))
    if entry is not None and entry[0] is facts and entry[1] == ignore:
        return entry[2], entry[3]
    kept = tuple(f for f in facts if _novel(f, ignore))
    have = frozenset(kept)
    if len(_NOVELTY_CACHE) >= _NOVELTY_CACHE_SIZE:
        _NOVELTY_CACHE.clear()
    _NOVELTY_CACHE[id(facts)] = (facts, ignore, kept, have)
    return kept, have


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

    def holds(self, facts: frozenset[str] | set[str],
              added: frozenset[str] | set[str] = frozenset()) -> bool:
        """``added``: more facts that count as holding; ``holds(facts, added)`` is
        ``holds(facts | added)`` without building the union (whose novelty facts the cache
        of ``facts``' own could not serve)."""
        for f in self.all_of:
            if f not in facts and f not in added:
                return False
        for f in self.none_of:
            if f in facts or f in added:
                return False
        if self.within is None:
            return True
        have = self._novelty(facts, added)
        return any(have <= seen for seen in self._within_sets())

    def covering(self, facts: frozenset[str] | set[str],
                 added: frozenset[str] | set[str] = frozenset()) -> list[set[str]]:
        """The ``within`` sets that still cover what ``facts`` (and ``added``) hold and
        stand next to: the earlier failures that had everything these facts would bring."""
        if self.within is None:
            return []
        have = self._novelty(facts, added)
        return [set(seen) for seen, frozen in zip(self.within, self._within_sets(), strict=True)
                if have <= frozen]

    def _within_sets(self) -> tuple[frozenset[str], ...]:
        """``within`` as frozensets, made once per ``within`` (the same list object holding
        the same lists) instead of once per test."""
        within = self.within or []
        inner = tuple(map(id, within))
        cached = self.__dict__.get("_within_cache")
        if cached is None or cached[0] is not within or cached[1] != inner:
            cached = (within, inner, tuple(frozenset(seen) for seen in within))
            self.__dict__["_within_cache"] = cached
        return cached[2]

    def _novelty(self, facts: frozenset[str] | set[str],
                 added: frozenset[str] | set[str]) -> frozenset[str]:
        """``novelty_facts(facts | added, ignore)`` as a frozenset (the filter goes fact by
        fact, so ``facts``' own part comes from the cache)."""
        ignore = frozenset(self.ignore)
        if type(facts) is frozenset:
            have = _novelty_entry(facts, ignore)[1]
        else:
            have = frozenset(f for f in facts if _novel(f, ignore))
        return have.union(f for f in added if _novel(f, ignore)) if added else have

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
