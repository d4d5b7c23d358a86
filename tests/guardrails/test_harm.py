"""Guardrails about what hurt the agent, from hand-made attempts: how they are distilled,
confirmed, tested on probation and retired."""

from collections import Counter

import numpy as np

from cairn.experience.records import State, condition_signature
from cairn.guardrails.distill import MIN_CONTRAST, harm_guardrails
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import CONFIRMED_KEPT, UNCONFIRMED, GuardrailSet
from cairn.runtime.planner import PlanContext
from cairn.runtime.symbolic import PROBATION, SymbolicPlanner, WorldFacts
from cairn.skills.library import SkillLibrary
from tests.map_attempts import TRAITS, Attempts

DAY = {"visible": ("grass", "tree")}
NIGHT = {"visible": ("grass", "tree", "zombie"), "tags": ("night",)}


def safe_sleeps(attempt, n=MIN_CONTRAST):
    return [attempt("sleep", {"energy": 3}, ["energy+1"], **DAY) for _ in range(n)]


def test_dying_on_a_kind_never_stood_on_forbids_stepping_onto_it():
    attempt = Attempts()
    death = attempt("explore", {"health": 2}, cause="died", health_delta=-2, entered="lava")
    (guard,) = harm_guardrails(death, [], {"lava": 1, "grass": 40}, set(), TRAITS)
    assert (guard.forbidden, guard.scope, guard.status) == ("enter lava", "task", "active")
    assert guard.trigger.unconditional() and guard.evidence == [death.id]
    guards = GuardrailSet()
    guards.update(guard)
    assert guards.forbidden_entries() == {"lava"}
    # Stood on it many times before: the kind is not what killed (and with no history to
    # contrast, nothing else is named either).
    assert harm_guardrails(death, [], {"lava": 30}, set(), TRAITS) == []


def test_harm_names_the_facts_that_set_it_apart_and_waits_for_a_second_one():
    attempt = Attempts()
    history = safe_sleeps(attempt)
    bitten = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2, **NIGHT)
    assert harm_guardrails(bitten, history[:MIN_CONTRAST - 1], {}, set(), TRAITS) == []
    (guard,) = harm_guardrails(bitten, history, {}, set(), TRAITS)
    assert guard.forbidden == "subgoal sleep" and guard.root_cause == "damage_taken"
    assert guard.trigger.all_of == ["see:zombie", "tag:night"]  # rare in the safe sleeps
    assert guard.status == "candidate" and guard.evidence == [bitten.id]
    guards = GuardrailSet()
    guards.update(guard)
    night = bitten.pre.facts()
    assert guards.blocking_subgoal("sleep", night) is None  # a candidate forbids nothing
    assert guards.harmful_kinds() == {"zombie"}
    again = attempt("sleep", {"energy": 2}, cause="damage_taken", health_delta=-1, **NIGHT)
    (second,) = harm_guardrails(again, [*history, bitten], {}, set(), TRAITS)
    merged = guards.update(second)
    assert merged.id == guard.id and merged.evidence == [bitten.id, again.id]
    assert merged.status == "active"
    assert guards.blocking_subgoal("sleep", night) is merged
    assert guards.blocking_subgoal("sleep", history[0].pre.facts()) is None  # by day


def test_harm_names_what_went_with_harm_before_not_what_was_merely_rare():
    attempt = Attempts()
    history = safe_sleeps(attempt)
    history += [attempt("explore", {}, cause="damage_taken", health_delta=-1, **NIGHT)
                for _ in range(3)]
    diamond = {"visible": ("grass", "tree", "diamond")}
    history += [attempt("explore", {}, ["moved"], **diamond) for _ in range(4)]
    bitten = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2,
                     visible=("grass", "tree", "zombie", "diamond"), tags=("night",))
    (guard,) = harm_guardrails(bitten, [*history, bitten], {}, set(), TRAITS)
    # All three were never seen in a safe sleep; the diamond was seen safely elsewhere.
    assert guard.trigger.all_of == ["see:zombie", "tag:night"]
    # A diamond seen only now, with no harm behind zombies or the night, is the suspect.
    calm = [*safe_sleeps(attempt), bitten]
    (guard,) = harm_guardrails(bitten, calm, {}, set(), TRAITS)
    assert guard.trigger.all_of == ["see:diamond", "see:zombie"]


def test_a_companion_of_a_known_danger_is_named_only_when_it_went_with_more_harm():
    """Zombies have hurt sleeps before, always by day. A bite that comes with lava in view,
    then one with a cow in view, names the zombie alone both times (the companions were
    met only now), so the second bite confirms the first one's guardrail instead of
    making its own. The night is named beside them when zombies hurt more often at night
    than by day."""
    attempt = Attempts()
    history = safe_sleeps(attempt, 20)
    zombie = {"visible": ("grass", "tree", "zombie")}
    history += [attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-1,
                        **zombie) for _ in range(3)]
    guards = GuardrailSet()
    for companion in ("lava", "cow"):
        bite = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2,
                       visible=("grass", "tree", "zombie", companion))
        history.append(bite)
        (guard,) = harm_guardrails(bite, history, {}, set(), TRAITS)
        assert guard.trigger.all_of == ["see:zombie"]
        merged = guards.update(guard)
    assert merged.status == "active" and len(merged.evidence) == 2
    assert len(guards.guardrails) == 1

    attempt = Attempts()
    history = safe_sleeps(attempt, 20)
    day = {"energy": 3}
    history += [attempt("sleep", day, ["energy+1"], visible=("grass", "tree"), tags=("night",))
                for _ in range(4)]  # the night alone did no harm
    history += [attempt("sleep", day, cause="damage_taken", health_delta=-1, **zombie),
                attempt("sleep", day, cause="damage_taken", health_delta=-1, **zombie),
                attempt("sleep", day, ["energy+1"], **zombie)]  # zombies by day: 2 of 3
    history += [attempt("sleep", day, cause="damage_taken", health_delta=-1, **NIGHT)
                for _ in range(2)]  # zombies at night: 2 of 2
    bite = attempt("sleep", day, cause="damage_taken", health_delta=-2, **NIGHT)
    (guard,) = harm_guardrails(bite, [*history, bite], {}, set(), TRAITS)
    assert guard.trigger.all_of == ["see:zombie", "tag:night"]
    # Had zombies hurt as often by day, the night would add nothing.
    history[-3] = attempt("sleep", day, cause="damage_taken", health_delta=-1, **zombie)
    (guard,) = harm_guardrails(bite, [*history, bite], {}, set(), TRAITS)
    assert guard.trigger.all_of == ["see:zombie"]


def test_a_death_is_enforced_at_once_and_a_counter_run_down_can_be_the_cause():
    attempt = Attempts()
    history = safe_sleeps(attempt)
    starved = attempt("sleep", {"energy": 3, "food": 0}, cause="died", health_delta=-3, **DAY)
    (guard,) = harm_guardrails(starved, history, {}, {"food"}, TRAITS)
    assert guard.status == "active" and guard.root_cause == "died"
    assert guard.trigger.all_of == ["food=0"]
    # Food at zero is only a suspect when food is known to run down by itself.
    assert harm_guardrails(starved, history, {}, set(), TRAITS) == []


def test_a_subgoal_keeps_few_harms_seen_once_and_one_that_comes_back_is_confirmed():
    def death(kind, attempt_id):
        return Guardrail(root_cause="died", explanation="", scope="subgoal",
                         trigger=Trigger(all_of=[f"see:{kind}"]), forbidden="subgoal sleep",
                         evidence=[attempt_id])

    guards = GuardrailSet()
    kinds = ["arrow", "cow", "lava", "plant", "stone", "zombie"]
    for i, kind in enumerate(kinds, 1):
        guards.update(death(kind, i))
        guards.forget("subgoal sleep")
    live = [g.trigger.all_of[0] for g in guards.active()]
    assert sorted(live) == [f"see:{k}" for k in kinds[-UNCONFIRMED:]]  # the newest
    first = guards.update(death("arrow", 7))  # the oldest, forgotten, comes back
    guards.forget("subgoal sleep")
    assert first.status == "active" and first.evidence == [1, 7]
    assert first in guards.active() and len(guards.active()) == UNCONFIRMED + 1


def test_a_subgoal_keeps_its_best_supported_harm_guardrails_and_forgets_the_weakest():
    """Chance brings the same companions of a danger twice now and then over a long run:
    confirmed guardrails are capped per subgoal too, the weakest (fewest harms beyond their
    contradictions, then the least recently hurt) retired first; another subgoal's are not
    touched."""
    def harm(kind, evidence, contradictions=(), forbidden="subgoal sleep"):
        return Guardrail(root_cause="damage_taken", explanation="", scope="subgoal",
                         trigger=Trigger(all_of=[f"see:{kind}"]), forbidden=forbidden,
                         evidence=list(evidence), contradictions=list(contradictions))

    guards = GuardrailSet()
    guards.update(harm("skeleton", [1, 2], forbidden="subgoal explore"))
    strong = [harm("zombie", [1, 2, 3, 4]), harm("arrow", [5, 6, 7]), harm("lava", [8, 9, 30])]
    weak = [harm("cow", [10, 11]), harm("plant", [12, 13, 14, 15], [16, 17]),
            harm("water", [20, 21])]  # water hurt later than cow
    for guard in strong + weak:
        guards.update(guard)
        guards.forget("subgoal sleep")
    kept = {g.trigger.all_of[0] for g in guards.active() if g.forbidden == "subgoal sleep"}
    assert len(kept) == CONFIRMED_KEPT
    assert kept == {"see:zombie", "see:arrow", "see:lava", "see:water"}
    assert guards.blocking_subgoal("explore", frozenset({"see:skeleton"})) is not None
    # The cow comes back with a third harm: it now outweighs the water, which goes.
    back = guards.update(harm("cow", [40]))
    guards.forget("subgoal sleep")
    assert back.status == "active" and back.evidence == [10, 11, 40]
    kept = {g.trigger.all_of[0] for g in guards.active() if g.forbidden == "subgoal sleep"}
    assert kept == {"see:zombie", "see:arrow", "see:lava", "see:cow"}


def test_unharmed_attempts_made_while_it_held_retire_a_harm_guardrail():
    attempt = Attempts()
    history = safe_sleeps(attempt)
    bites = [attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2, **NIGHT)
             for _ in range(2)]
    guards = GuardrailSet()
    for bite in bites:
        for guard in harm_guardrails(bite, history, {}, set(), TRAITS):
            guards.update(guard)
    (guard,) = guards.active()
    # Evidence that does not bear on it: harmed, by day, or another subgoal.
    guards.weigh_harm(attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-1,
                              **NIGHT))
    guards.weigh_harm(attempt("sleep", {"energy": 3}, ["energy+1"], **DAY))
    guards.weigh_harm(attempt("interact:tree", {"energy": 3}, ["wood+1"], **NIGHT))
    assert guard.contradictions == [] and guard.status == "active"
    # Slept unharmed while it held (on probation): one contradiction, counted once.
    quiet = attempt("sleep", {"energy": 3}, ["energy+1"], **NIGHT)
    guards.weigh_harm(quiet)
    guards.weigh_harm(quiet)
    assert guard.contradictions == [quiet.id] and guard.status == "active"
    guards.weigh_harm(attempt("sleep", {"energy": 3}, ["energy+1"], **NIGHT))
    assert len(guard.contradictions) == len(guard.evidence) == 2
    assert guard.status == "retired" and guards.active() == []


def test_only_harm_guardrails_on_subgoals_are_put_on_probation():
    def guard(root, forbidden):
        return Guardrail(root, "test", Trigger(all_of=["tag:night"]), forbidden, "subgoal", [1])

    assert GuardrailSet.on_probation(guard("damage_taken", "subgoal sleep"))
    assert GuardrailSet.on_probation(guard("died", "subgoal use:x"))
    assert not GuardrailSet.on_probation(guard("died", "enter lava"))
    assert not GuardrailSet.on_probation(guard("no_effect", "subgoal use:x"))
    assert not GuardrailSet.on_probation(guard("missing_requirement", "subgoal use:x"))


def choices(root, n=2000, experiments=True):
    """What a planner picks, ``n`` times, at night with a guardrail of ``root`` cause
    forbidding ``use:rest`` then (None: no guardrail)."""
    guards = GuardrailSet()
    if root is not None:
        guards.update(Guardrail(root, "test", Trigger(all_of=["tag:night"]), "subgoal use:rest",
                                "subgoal", [1]))
    planner = SymbolicPlanner(SkillLibrary(), guards, np.random.default_rng(0),
                              lambda: WorldFacts(set(), set(), {}), experiments=experiments)
    state = State(0, (0, 0), (1, 0), {}, "grass", [["grass"]], ["grass"], ["night"])
    ctx = PlanContext(state, condition_signature(state.predicates()), ["rest", "dig"], False,
                      lambda *_: (0, 0))
    return Counter(planner.next_subgoal(ctx).key for _ in range(n))


def test_the_planner_breaks_a_harm_guardrail_now_and_then_to_test_it():
    free, harm, requirement = choices(None), choices("damage_taken"), choices("no_effect")
    assert requirement["use:rest"] == 0
    # Unguarded it is one of four choices; under a harm guardrail about PROBATION of that.
    assert free["use:rest"] > 400
    assert 0 < harm["use:rest"] < 2 * PROBATION * free["use:rest"]
    assert harm["use:rest"] > 0.5 * PROBATION * free["use:rest"]


def test_a_planner_that_makes_no_experiments_never_breaks_a_guardrail():
    assert choices(None, experiments=False)["use:rest"] > 400
    assert choices("damage_taken", experiments=False)["use:rest"] == 0


def test_a_candidate_contradicted_in_the_same_situation_is_retired():
    attempt = Attempts()
    history = safe_sleeps(attempt)
    bitten = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2, **NIGHT)
    guards = GuardrailSet()
    (guard,) = [guards.update(g) for g in harm_guardrails(bitten, history, {}, set(), TRAITS)]
    assert guard.status == "candidate"
    guards.weigh_harm(attempt("sleep", {"energy": 3}, ["energy+1"], **DAY))  # another situation
    assert guard.status == "candidate" and guard.contradictions == []
    quiet = attempt("sleep", {"energy": 3}, ["energy+1"], **NIGHT)
    guards.weigh_harm(quiet)
    assert guard.status == "retired" and guard.contradictions == [quiet.id]
    assert guards.harmful_kinds() == set()


def test_harm_that_comes_with_the_situation_forbids_no_one_subgoal():
    """At night with a zombie in view, other subgoals were often hurt too: the situation is
    dangerous, the subgoal is not, and forbidding it would teach nothing. A subgoal hurt
    clearly more often there than the rest keeps its guardrail."""
    attempt = Attempts()
    history = safe_sleeps(attempt, 20)
    for i in range(5):  # drinking at night: 2 of 5 hurt
        hurt = {"cause": "damage_taken", "health_delta": -2} if i < 2 else {}
        history.append(attempt("interact:water", {"energy": 3}, [] if hurt else ["drink+1"],
                               **hurt, **NIGHT))
    chop = attempt("interact:tree", {"energy": 3}, cause="damage_taken", health_delta=-2,
                   **NIGHT)
    assert harm_guardrails(chop, history, {}, set(), TRAITS) == []
    # Too few attempts at other subgoals there to judge the situation: the usual guardrail.
    (guard,) = harm_guardrails(chop, history[:-2], {}, set(), TRAITS)
    assert guard.forbidden == "subgoal interact:tree"
    assert guard.trigger.all_of == ["see:zombie", "tag:night"]
    # Sleeping there: hurt 2 times of 2 against 2 of 5 for the rest: kept (not at the first).
    first = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2, **NIGHT)
    assert harm_guardrails(first, history, {}, set(), TRAITS) == []
    second = attempt("sleep", {"energy": 3}, cause="damage_taken", health_delta=-2, **NIGHT)
    (guard,) = harm_guardrails(second, [*history, first], {}, set(), TRAITS)
    assert guard.forbidden == "subgoal sleep"
