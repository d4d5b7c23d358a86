"""Distil one skill per subgoal from its attempts: verification from what every success did,
preconditions from what separates successes from failures of the same subgoal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cairn.experience.judging import (
    NO_TRAITS,
    ControllerTraits,
    Drift,
    acted_without_effect,
    by_chance,
    caused,
    depleting,
    learning_facts,
    worked,
)
from cairn.experience.records import ExperienceTuple, Subgoal, split_counter_effect
from cairn.skills.model import Skill, spent_counters

MIN_SUCCESSES = 2
"""Successes a skill needs, unless one of them reached the goal (a reward is no fluke)."""
MIN_SUCCESSES_TILE_ONLY = 3
"""... when all it was seen to do is change a tile, which things nearby also do at times."""
VERIFY_SHARE = 0.8
DEMOTE_AFTER = 6
DEMOTE_BELOW = 0.25
PROVENANCE_KEPT = 20


def distill_skill(subgoal: str, attempts: Sequence[ExperienceTuple],
                  drift: Drift | None = None,
                  traits: ControllerTraits = NO_TRAITS) -> Skill | None:
    """The skill that ``attempts`` (all at ``subgoal``) support, or None without a success.
    A success that only saw something else change nearby counts as a failure (``by_chance``).

    ``drift`` (counter -> directions it moves in by itself) keeps such changes out of the
    verification and out of what counts as having worked.
    """
    if Subgoal.parse(subgoal).controller in traits.unlearned:
        return None
    drift = drift or {}
    successes, chance = by_chance([t for t in attempts if worked(t, drift, traits)], drift)
    rewarded = any("reward" in t.diagnosis.effects for t in successes)
    counted = any(split_counter_effect(e)[0] and caused(e, drift)
                  for t in successes for e in t.diagnosis.effects)
    needed = MIN_SUCCESSES if counted else MIN_SUCCESSES_TILE_ONLY
    if len(successes) < needed and not rewarded:
        return None
    failures = [t for t in attempts if acted_without_effect(t)] + chance
    success_facts = [learning_facts(t, traits) for t in successes]
    preconditions = explain_failures(
        success_facts, [learning_facts(t, traits) for t in failures], ignore=depleting(drift))
    verification = common_effects(
        [[e for e in t.diagnosis.effects if caused(e, drift)] for t in successes],
        [t.pre.counters for t in successes])
    preconditions = with_what_it_spends(preconditions, verification, success_facts)
    n_worked = _holding(successes, preconditions, traits)
    skill = Skill(
        subgoal=subgoal,
        procedure=[_procedure(subgoal, successes)],
        preconditions=preconditions,
        verification=verification,
        successes=n_worked,
        attempts=n_worked + _holding(failures, preconditions, traits),
        rewarded=sum("reward" in t.diagnosis.effects for t in successes),
        provenance=sorted(t.id for t in successes if t.id is not None)[-PROVENANCE_KEPT:],
    )
    if skill.attempts >= DEMOTE_AFTER and skill.success_rate < DEMOTE_BELOW:
        skill.status = "demoted"
    return skill


def _holding(attempts: list[ExperienceTuple], preconditions: list[str],
             traits: ControllerTraits) -> int:
    """How many of ``attempts`` were made while ``preconditions`` held."""
    return sum(all(p in learning_facts(t, traits) for p in preconditions) for t in attempts)


def explain_failures(success_facts: list[frozenset[str]],
                     failure_facts: list[frozenset[str]],
                     ignore: set[str] = frozenset()) -> list[str]:
    """The fewest facts, each true in every success, such that every failure lacked one.

    Greedy set cover: take the fact that the most unexplained failures lacked (at least two
    of them unless it is a counter level, see ``_evidence_needed``); among
    equals prefer counter thresholds (the usual requirement), then the lowest threshold
    (the least demanding guess; a failure at that level would raise it).
    Failures that no such fact explains are left as noise (they lower the success rate).
    Levels of the counters in ``ignore`` are never candidates, nor is lacking something
    (``x=0``): a requirement is something to have.
    """
    if not success_facts:
        return []
    candidates = frozenset(f for f in frozenset.intersection(*success_facts)
                           if counter_of(f) not in ignore and not f.endswith("=0"))
    unexplained = list(failure_facts)
    chosen: list[str] = []
    while unexplained:
        gains = {p: sum(p not in f for f in unexplained) for p in candidates - set(chosen)}
        gains = {p: n for p, n in gains.items() if n >= _evidence_needed(p)}
        if not gains:
            break
        best = max(gains, key=lambda p: (gains[p], _preference(p), p))
        chosen.append(best)
        unexplained = [f for f in unexplained if best in f]
    return sorted(chosen)


def with_what_it_spends(preconditions: list[str], verification: list[str],
                        success_facts: list[frozenset[str]]) -> list[str]:
    """``preconditions`` with, for each counter the skill spends (``wood-2``), holding that
    much (``wood>=2``, in place of a lower level; a higher one stays). No evidence is needed:
    nothing spends what it does not hold. Without it the requirement would fade once the
    failures that showed it leave the distillation window (the skill being tried only with
    enough, no new ones come), and the agent would try again without."""
    levels = {}
    for fact in preconditions:
        if ">=" in fact:
            name, level = fact.split(">=", 1)
            levels[name] = max(levels.get(name, 0), int(level))
    for name, amount in spent_counters(verification).items():
        if levels.get(name, 0) < amount and all(f"{name}>={amount}" in f for f in success_facts):
            levels[name] = amount
    kept = [f for f in preconditions if ">=" not in f]
    return sorted(kept + [f"{name}>={level}" for name, level in levels.items()])


def counter_of(fact: str) -> str | None:
    """``wood>=2`` and ``food=0`` -> the counter's name; other facts -> None."""
    if ":" in fact or "=" not in fact:
        return None
    return fact.split(">=", 1)[0] if ">=" in fact else fact.split("=", 1)[0]


def _evidence_needed(fact: str) -> int:
    """Failures a fact must explain to become a precondition: one for a counter level (what
    a thing usually needs), two for anything else. A place or a sight true in a few
    successes by chance would otherwise become a requirement, and a skill is only tried
    where its preconditions hold, so nothing would ever contradict it."""
    return 1 if ">=" in fact else 2


def _preference(fact: str) -> tuple[int, int]:
    if ">=" in fact:
        return 2, -int(fact.rsplit(">=", 1)[1])
    if fact.startswith(("near:", "facing:")):
        return 1, 0
    return 0, 0


def common_effects(effect_lists: list[list[str]],
                   held: list[dict[str, int]] | None = None) -> list[str]:
    """Effects seen in nearly every success. ``reward`` is left out: the task rewards a
    thing once, so it is no test that the skill worked.

    ``held`` (the counters each success started with) sets aside, for a counter's rise,
    the successes that did not raise it while already holding as much as any success
    raised it to: at its ceiling it cannot rise (a harvest with a full inventory), and
    many such would otherwise hide what the skill gives."""
    held = held if held is not None else [{}] * len(effect_lists)
    pairs = [(set(e) - {"reward"}, h) for e, h in zip(effect_lists, held, strict=True)]
    pairs = [(s, h) for s, h in pairs if s]  # a success known only by its reward shows none
    counts = Counter(e for s, _ in pairs for e in s)
    return sorted(e for e, n in counts.items() if n >= VERIFY_SHARE * _could_show(e, pairs))


def _could_show(effect: str, pairs: list[tuple[set[str], dict[str, int]]]) -> int:
    """How many of the successes could have shown ``effect`` (see ``common_effects``)."""
    name, sign, amount = split_counter_effect(effect)
    if name is None or sign != "+":
        return len(pairs)
    top = max(h.get(name, 0) + amount for s, h in pairs if effect in s)
    return sum(effect in s or h.get(name, 0) < top for s, h in pairs)


def _procedure(subgoal: str, successes: list[ExperienceTuple]) -> dict[str, object]:
    controller, _, target = subgoal.partition(":")
    steps = sorted(len(t.primitives) for t in successes)
    return {"controller": controller, "target": target or None,
            "median_steps": steps[len(steps) // 2]}
