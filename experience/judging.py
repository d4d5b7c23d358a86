"""How a stored attempt is judged by what is known now: shared by skill and guardrail
distillation, so neither reads the other's internals.

Distillation knows no controller by name. What it must know of them comes in as
``ControllerTraits``, filled in by the runtime that owns the controllers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cairn.experience.records import Cause, ExperienceTuple, split_counter_effect

Drift = dict[str, set[int]]
"""Counter name -> directions (+1, -1) it was seen to move in by itself."""

#: Failures where the agent got to act and nothing happened: evidence about requirements.
REQUIREMENT_CAUSES = frozenset({
    Cause.NO_EFFECT, Cause.MISSING_REQUIREMENT, Cause.DEADLOCK, Cause.STAGNATION, Cause.LOOP})


@dataclass(frozen=True)
class ControllerTraits:
    """What distillation needs to know about the controllers that made the attempts."""

    walking: frozenset[str] = frozenset()
    """Controllers that walk to their target first: what was faced, near or in view when
    the attempt started says nothing about the moment they acted."""
    unlearned: frozenset[str] = frozenset()
    """Controllers with no requirement to learn (the agent's fallbacks, like exploring)."""
    by_effect: frozenset[str] = frozenset()
    """Controllers judged by the effect they cause (not by reaching a place, say)."""


NO_TRAITS = ControllerTraits()


def learning_facts(t: ExperienceTuple, traits: ControllerTraits) -> frozenset[str]:
    """The facts of an attempt's pre-state that can bear on whether it works."""
    if t.subgoal.controller in traits.walking:
        return t.pre.unplaced_facts()
    return t.pre.facts()


def depleting(drift: Drift) -> set[str]:
    """Counters seen to fall by themselves: their levels are no requirement one can meet."""
    return {name for name, signs in drift.items() if -1 in signs}


def caused(effect: str, drift: Drift) -> bool:
    """False for a counter change in a direction the counter is now known to drift in (an
    early attempt may have credited itself with it before the drift was learned)."""
    name, sign, _ = split_counter_effect(effect)
    return name is None or (1 if sign == "+" else -1) not in drift.get(name, ())


def worked(t: ExperienceTuple, drift: Drift, traits: ControllerTraits) -> bool:
    """Re-judge a success with what is known now about counters that change on their own."""
    if not t.diagnosis.success:
        return False
    if t.subgoal.controller not in traits.by_effect:
        return True
    return any(caused(e, drift) for e in t.diagnosis.effects)


def acted_without_effect(t: ExperienceTuple) -> bool:
    """A failure where the action was carried out (target reached) but changed nothing."""
    d = t.diagnosis
    reached = d.distance is None or d.distance <= 1
    return not d.success and d.cause in REQUIREMENT_CAUSES and reached and bool(t.primitives)


def by_chance(successes: list[ExperienceTuple], drift: Drift
              ) -> tuple[list[ExperienceTuple], list[ExperienceTuple]]:
    """``successes`` split into those that did what the subgoal does and those that only
    saw something else change nearby while it acted (a creature eating the plant in front
    of the agent while it tried to craft).

    What the subgoal does is read off the successes that reached the goal (a reward), all
    of them, or else off the effects more than half of the successes show. A success that
    shows none of it is chance; a rise of the same counter by another amount still agrees,
    and a success with no effect of its own is never chance (it is known only by its
    reward). Where no effect is shared that widely, every success stands: too little is
    known to tell."""
    shown = [{e for e in t.diagnosis.effects if e != "reward" and caused(e, drift)}
             for t in successes]
    rewarded = [s for s, t in zip(shown, successes, strict=True)
                if "reward" in t.diagnosis.effects and s]
    anchors = set.intersection(*rewarded) if rewarded else set()
    if not anchors:
        counts = Counter(e for effects in shown for e in effects)
        anchors = {e for e, n in counts.items() if 2 * n > len(successes)}
    if not anchors:
        return list(successes), []
    kinds = {_subject(e) for e in anchors}
    agree, chance = [], []
    for t, effects in zip(successes, shown, strict=True):
        if not effects or any(_subject(e) in kinds for e in effects):
            agree.append(t)
        else:
            chance.append(t)
    return agree, chance


def _subject(effect: str) -> str:
    """What an effect is about, whatever the amount: ``food+6`` and ``food+2`` -> ``food+``."""
    name, sign, _ = split_counter_effect(effect)
    return f"{name}{sign}" if name else effect
