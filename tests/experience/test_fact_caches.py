"""The planner's and distillation's remembered facts give what computing them afresh gives:
sets built the same way (down to their iteration order), fresh objects where callers get
mutable ones, and caches that notice a replaced guardrail, trigger or skill field."""

from __future__ import annotations

import random
from dataclasses import asdict

from cairn.experience.judging import ControllerTraits, learning_facts
from cairn.experience.records import (
    Cause,
    Diagnosis,
    ExperienceTuple,
    State,
    Subgoal,
    split_counter_effect,
)
from cairn.guardrails.model import Guardrail, Trigger, novelty_facts
from cairn.guardrails.store import GuardrailSet
from cairn.skills.model import Skill

POOL = ([f"near:k{i}" for i in range(12)] + [f"facing:k{i}" for i in range(6)]
        + [f"c{c}>={n}" for c in range(6) for n in range(1, 10)] + [f"see:k{i}" for i in range(12)]
        + ["tag:night", "c0=0", "c1=0"])


def _fresh_novelty(facts, ignore) -> set[str]:
    """novelty_facts as it was written before it remembered anything."""
    return {f for f in facts if (">=" in f and f.split(">=", 1)[0] not in ignore)
            or f.startswith(("near:", "facing:"))}


def _holds(trigger: Trigger, facts) -> bool:
    """Trigger.holds as it was written before it remembered anything."""
    if any(f not in facts for f in trigger.all_of) or any(f in facts for f in trigger.none_of):
        return False
    if trigger.within is None:
        return True
    have = _fresh_novelty(facts, set(trigger.ignore))
    return any(have <= set(seen) for seen in trigger.within)


def test_novelty_facts_are_built_as_before_and_fresh_each_time() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        facts = frozenset(rng.sample(POOL, rng.randint(0, 60)))
        ignore = set(rng.sample(["c0", "c1", "c2"], rng.randint(0, 2)))
        for _ in range(2):  # computed, then remembered
            got = novelty_facts(facts, ignore)
            expected = _fresh_novelty(facts, ignore)
            assert got == expected and list(got) == list(expected) and type(got) is set
            got.add("mutated by a caller")
        assert novelty_facts(facts, set()) == _fresh_novelty(facts, set())


def test_triggers_with_added_facts_are_triggers_on_the_union() -> None:
    rng = random.Random(1)
    for _ in range(3000):
        facts = frozenset(rng.sample(POOL, rng.randint(0, 25)))
        added = set(rng.sample(POOL, rng.randint(0, 3)))
        within = None if rng.random() < 0.2 else [
            rng.sample(POOL, rng.randint(0, 40)) for _ in range(rng.randint(0, 4))]
        trigger = Trigger(rng.sample(POOL, rng.randint(0, 2)), rng.sample(POOL, rng.randint(0, 1)),
                          within, rng.sample(["c0", "c1"], rng.randint(0, 2)))
        union = facts | added
        assert trigger.holds(facts, added) == trigger.holds(union) == _holds(trigger, union)
        assert trigger.holds(facts) == _holds(trigger, facts)
        expected = [set(seen) for seen in within or []
                    if _fresh_novelty(union, set(trigger.ignore)) <= set(seen)]
        assert trigger.covering(facts, added) == trigger.covering(union) == expected


def test_a_trigger_whose_within_is_replaced_is_judged_on_the_new_one() -> None:
    facts = frozenset({"near:tree", "wood>=1"})
    trigger = Trigger(within=[["near:tree", "wood>=1"]])
    assert trigger.holds(facts)
    trigger.within = [["near:tree"]]
    assert not trigger.holds(facts)
    trigger.within.append(["near:tree", "wood>=1", "wood>=2"])
    assert trigger.holds(facts)


def _guard(subgoal: str, status: str = "active", all_of: list[str] | None = None) -> Guardrail:
    return Guardrail("no_effect", "test", Trigger(all_of=all_of or []), f"subgoal {subgoal}",
                     "subgoal", [1], status=status)


def test_blocking_guardrails_follow_updates_statuses_and_replaced_sets() -> None:
    guards = GuardrailSet()
    first = guards.update(_guard("interact:tree"))
    facts = frozenset({"near:tree"})
    assert guards.blocking_subgoal_all("interact:tree", facts) == [first]
    assert guards.blocking_subgoal_all("interact:cow", facts) == []
    second = guards.update(_guard("interact:tree", all_of=["near:tree"]))
    in_key_order = sorted([first, second], key=lambda g: g.id)  # as the store lists them
    assert guards.blocking_subgoal_all("interact:tree", facts) == in_key_order
    first.status = "retired"  # changed in place: read live
    assert guards.blocking_subgoal_all("interact:tree", facts) == [second]
    replaced = _guard("interact:tree", all_of=["near:tree"])
    replaced.explanation = "a new version of the same guardrail"
    guards.update(replaced)  # the same id: replaced in place
    assert guards.blocking_subgoal_all("interact:tree", facts)[0] is replaced
    guards.guardrails = {}  # a fresh set, as a worker's snapshot brings
    assert guards.blocking_subgoal_all("interact:tree", facts) == []
    cow = _guard("interact:cow")
    guards.guardrails[cow.id] = cow
    assert guards.blocking_subgoal_all("interact:cow", facts) == [cow]


def test_learning_facts_of_walking_controllers_leave_places_out() -> None:
    pre = State(3, (1, 2), (0, 1), {"wood": 2, "food": 0}, "tree", [["tree", None]],
                ["tree", "water"], ["night"])
    attempt = ExperienceTuple("ep", 3, 5, pre, Subgoal("interact", "tree"), [1, 2],
                              Diagnosis(False, Cause.NO_EFFECT, {}, 0.0, [], 0.0, 1.0, 0, 2),
                              pre)
    walking = ControllerTraits(walking=frozenset({"interact"}))
    expected = frozenset(f for f in pre.facts()
                         if not f.startswith(("facing:", "near:", "see:")))
    assert learning_facts(attempt, walking) == expected == {"wood>=1", "wood>=2", "food=0",
                                                             "tag:night"}
    assert list(learning_facts(attempt, walking)) == list(expected)
    assert learning_facts(attempt, ControllerTraits()) is pre.facts()


def test_split_counter_effect_is_unchanged() -> None:
    assert split_counter_effect("wood+1") == ("wood", "+", 1)
    assert split_counter_effect("health-2") == ("health", "-", 2)
    assert split_counter_effect("changed:0,0:tree>grass") == (None, "", 0)
    assert split_counter_effect("reward") == (None, "", 0)


def test_a_skill_as_a_dict_is_asdict_without_its_version() -> None:
    skill = Skill("interact:tree", [{"controller": "interact", "target": "tree",
                                     "median_steps": 5}], ["near:tree"], ["wood+1"], 4, 5, 1,
                  [3, 8], version=2)
    expected = asdict(skill)
    expected.pop("version")
    body = skill.to_dict()
    assert body == expected and list(body) == list(expected)
    body["preconditions"].append("x")
    body["procedure"][0]["median_steps"] = 9
    assert skill.preconditions == ["near:tree"] and skill.procedure[0]["median_steps"] == 5
    odd = Skill("use:x", [{"controller": "use", "nested": [1, 2]}], ("a",), [], 1, 1, 0)
    expected = asdict(odd)
    expected.pop("version")
    assert odd.to_dict() == expected and type(odd.to_dict()["preconditions"]) is tuple
