"""Distil guardrails from failures: requirements that were missing, and what hurt the agent.

Two sources:
- attempts that acted and changed nothing: forbid the subgoal while the requirement the
  evidence points to is missing (or, before it ever worked, while nothing new is at hand);
- attempts that lost health or ended in death: forbid stepping onto the kind of tile that
  killed, or the subgoal being run, while the facts that set the harm apart hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from cairn.experience.judging import (
    NO_TRAITS,
    ControllerTraits,
    Drift,
    acted_without_effect,
    by_chance,
    depleting,
    learning_facts,
    worked,
)
from cairn.experience.records import Cause, ExperienceTuple, Subgoal
from cairn.guardrails.model import Guardrail, Trigger, novelty_facts

MIN_FAILURES = 2
RARE_IN_SAFE = 0.2
MAX_TRIGGER_FACTS = 2
HARM_PRIOR = 5
MIN_CONTRAST = 5
HARM_FACT_PREFIXES = ("see:", "near:", "facing:", "tag:")
MIN_SITUATION, SITUATION_HARM, SUBGOAL_MARGIN = 4, 0.25, 0.25
"""A situation (the harm's trigger facts) is dangerous in itself when at least 4 attempts at
other subgoals were made in it and a quarter of them were hurt; a subgoal is worse there
when its share of hurt attempts is higher by more than a quarter."""


def requirement_guardrails(
    subgoal: str, attempts: Sequence[ExperienceTuple], preconditions: Sequence[str] | None,
    drift: Drift | None = None, traits: ControllerTraits = NO_TRAITS,
) -> list[Guardrail]:
    """Guardrails for ``subgoal`` from its attempts that acted without effect.
    ``preconditions``: what the subgoal's skill needs (None while it has no skill).

    A subgoal that never worked is gated after one failure: it is tried again only with
    something new at hand, and then before other experiments (a subgoal that failed once
    before the agent had what it needs would otherwise never come up again). Naming a
    requirement of one that works takes two failures."""
    if Subgoal.parse(subgoal).controller in traits.unlearned:
        return []
    successes, chance = by_chance([t for t in attempts if worked(t, drift or {}, traits)],
                                  drift or {})
    failures = [t for t in attempts if acted_without_effect(t)] + chance
    never_worked = preconditions is None or not successes
    if len(failures) < (1 if never_worked else MIN_FAILURES):
        return []
    forbidden = f"subgoal {subgoal}"
    if never_worked:
        ignore = depleting(drift or {})
        seen = maximal_sets([novelty_facts(learning_facts(t, traits), ignore)
                             for t in failures])
        guard = Guardrail(
            root_cause=str(Cause.NO_EFFECT),
            explanation=f"{subgoal} changed nothing in {len(failures)} attempts; "
                        "retry only with something new held or nearby",
            trigger=Trigger(within=seen, ignore=sorted(ignore)), forbidden=forbidden,
            scope="subgoal",
            evidence=_ids(failures))
        return [weigh(guard, successes, traits)]
    guards = []
    for fact in preconditions:
        lacking = [t for t in failures if fact not in learning_facts(t, traits)]
        if not lacking:
            continue
        guard = Guardrail(
            root_cause=str(Cause.MISSING_REQUIREMENT),
            explanation=f"{subgoal} needs {fact}: it failed {len(lacking)} times without it "
                        f"and worked {len(successes)} times with it",
            trigger=Trigger(none_of=[fact]), forbidden=forbidden, scope="subgoal",
            evidence=_ids(lacking))
        guards.append(weigh(guard, successes, traits))
    return guards


def maximal_sets(sets: list[set[str]]) -> list[list[str]]:
    """The distinct sets not contained in another one, each sorted (smallest first)."""
    unique = {frozenset(s) for s in sets}
    kept = [s for s in unique if not any(s < other for other in unique)]
    return sorted((sorted(s) for s in kept), key=lambda s: (len(s), s))


def harm_guardrails(
    attempt: ExperienceTuple,
    history: Sequence[ExperienceTuple],
    entries: dict[str, int],
    depleting: set[str],
    traits: ControllerTraits = NO_TRAITS,
) -> list[Guardrail]:
    """Guardrails about what caused a death or a loss of health in ``attempt``.

    ``history`` holds earlier attempts (for contrast); ``entries`` counts how often the
    agent stepped onto each kind of tile (the fatal step included); ``depleting`` names the
    counters that run down by themselves (their reaching zero may be the cause).
    """
    d = attempt.diagnosis
    died = d.cause == Cause.DIED
    if not died and d.health_delta >= 0:
        return []
    cause = str(Cause.DIED if died else Cause.DAMAGE_TAKEN)
    if died and d.entered and entries.get(d.entered, 0) <= 1:
        return [Guardrail(
            root_cause=cause,
            explanation=f"died right after stepping onto {d.entered}, "
                        "a kind it had never stood on before",
            trigger=Trigger(), forbidden=f"enter {d.entered}", scope="task",
            evidence=_ids([attempt]))]
    safe = [t for t in history if t.id != attempt.id and t.diagnosis.health_delta >= 0
            and t.diagnosis.cause != Cause.DIED]
    same = [t for t in safe if t.subgoal == attempt.subgoal]
    contrast = same if len(same) >= MIN_CONTRAST else safe
    if len(contrast) < MIN_CONTRAST:
        return []
    facts = _suspects(attempt, contrast, history, depleting)
    if not facts or _situational(attempt, facts, history):
        return []
    subgoal = attempt.subgoal.key
    guard = Guardrail(
        root_cause=cause,
        explanation=f"{'died' if died else f'lost {-d.health_delta} health'} during {subgoal} "
                    f"while {' & '.join(facts)}",
        trigger=Trigger(all_of=facts), forbidden=f"subgoal {subgoal}", scope="subgoal",
        evidence=_ids([attempt]), status="active" if died else "candidate")
    return [weigh(guard, same, traits)]


def _harm_facts(attempt: ExperienceTuple) -> frozenset[str]:
    """What held before the attempt, and what came into view during it."""
    return attempt.pre.facts() | {f for f in attempt.post.facts() if f.startswith("see:")}


def _situational(attempt: ExperienceTuple, facts: list[str],
                 history: Sequence[ExperienceTuple]) -> bool:
    """Does the harm go with the situation rather than with the subgoal? It does when other
    subgoals tried while ``facts`` held were hurt often too, and this subgoal's attempts
    there were not clearly hurt more often (too few of them to tell counts as not).
    Forbidding every subgoal in a dangerous situation teaches nothing and leaves the agent
    unable to act in it; a subgoal that is worse than the rest there keeps its guardrail."""
    wanted = set(facts)
    earlier = [t for t in history if t.id != attempt.id and wanted <= _harm_facts(t)]
    others = [t for t in earlier if t.subgoal != attempt.subgoal]
    same = [t for t in earlier if t.subgoal == attempt.subgoal] + [attempt]
    if len(others) < MIN_SITUATION or _harm_share(others) < SITUATION_HARM:
        return False
    if len(same) < MIN_FAILURES:
        return True
    return _harm_share(same) <= _harm_share(others) + SUBGOAL_MARGIN


def _harm_share(attempts: Sequence[ExperienceTuple]) -> float:
    return sum(map(_hurt, attempts)) / len(attempts)


def _hurt(attempt: ExperienceTuple) -> bool:
    return attempt.diagnosis.health_delta < 0 or attempt.diagnosis.cause == Cause.DIED


def _suspects(attempt: ExperienceTuple, safe: Sequence[ExperienceTuple],
              history: Sequence[ExperienceTuple], depleting: set[str]) -> list[str]:
    """Up to two facts of the harmful attempt that were rare in safe attempts and went with
    harm more often than attempts in general did, the most harmful first; the second only
    if it adds to the first (``_adds_harm``), else every harm by a known danger would name
    whatever else happened to be about, a new guardrail each time.

    Rarity alone names whatever was unusual at the time: a rare kind that happened to be in
    view when an attacker struck. Such a guardrail is rarely tested again, and each chance
    companion of a real danger made another one. A fact's harm rate is counted over
    ``history`` and the attempt, pulled towards the base rate by ``HARM_PRIOR`` attempts'
    worth of evidence, so a fact seen once is a suspect but one that went with harm many
    times comes first."""
    facts = _harm_facts(attempt)
    own = attempt.subgoal.target  # the subgoal runs where its target is: no suspect
    candidates = [f for f in facts if (f.startswith(HARM_FACT_PREFIXES)
                                       and f.split(":", 1)[1] != own)
                  or (f.endswith("=0") and f[:-2] in depleting)]
    safe_facts = [t.pre.facts() for t in safe]
    share = {f: sum(f in s for s in safe_facts) / max(len(safe_facts), 1) for f in candidates}
    rare = [f for f in candidates if share[f] < RARE_IN_SAFE]
    if not rare:
        return []
    others = [t for t in history if t is not attempt and (t.id is None or t.id != attempt.id)]
    seen = [(_harm_facts(t), _hurt(t)) for t in others] + [(facts, True)]
    base = sum(hurt for _, hurt in seen) / len(seen)
    rate = {}
    for f in rare:
        with_f = [hurt for held, hurt in seen if f in held]
        rate[f] = (sum(with_f) + HARM_PRIOR * base) / (len(with_f) + HARM_PRIOR)
    harmful = sorted((f for f in rare if rate[f] > base), key=lambda f: (-rate[f], share[f], f))
    if not harmful:
        return []
    first = harmful[0]
    with_first = [(held, hurt) for held, hurt in seen[:-1] if first in held]  # before this one
    companions = (f for f in harmful[1:] if _adds_harm(f, with_first))
    return [first, *islice(companions, MAX_TRIGGER_FACTS - 1)]


def _adds_harm(fact: str, with_first: list[tuple[frozenset[str], bool]]) -> bool:
    """Whether ``fact`` went with more harm than the first fact alone did, in the earlier
    attempts that held the first (``with_first``). Where the first never held without it,
    nothing tells them apart and both are named (as the first harm named them, so a second
    confirms it)."""
    if all(fact in held for held, _ in with_first):
        return True
    both = [hurt for held, hurt in with_first if fact in held]
    if not both:
        return False
    alone = (sum(hurt for _, hurt in with_first) + 1) / (len(with_first) + 1)
    return (sum(both) + 1 + HARM_PRIOR * alone) / (len(both) + 1 + HARM_PRIOR) > alone


def weigh(guard: Guardrail, successes: Sequence[ExperienceTuple],
          traits: ControllerTraits = NO_TRAITS) -> Guardrail:
    """Record attempts that went well while the trigger held: evidence against it. As
    many contradictions as supporting failures (two at least) retire the guardrail."""
    guard.contradictions = _ids(
        [t for t in successes if guard.trigger.holds(learning_facts(t, traits))])
    if len(guard.contradictions) >= MIN_FAILURES and \
            len(guard.contradictions) >= len(guard.evidence):
        guard.status = "retired"
    return guard


def _ids(attempts: Sequence[ExperienceTuple]) -> list[int]:
    return sorted(t.id for t in attempts if t.id is not None)
