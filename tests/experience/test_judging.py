"""Which successes did what their subgoal does, and which only saw something else change."""

from cairn.experience.judging import by_chance
from cairn.experience.records import change_effect
from tests.map_attempts import Attempts

EATEN = change_effect(0, 0, "plant", "grass")


def test_a_success_that_shows_none_of_what_the_rewarded_ones_did_is_chance():
    attempt = Attempts()
    eaten = attempt("use:make_x", {"wood": 1}, [EATEN])
    made = attempt("use:make_x", {"wood": 1}, ["wood-1", "x+1", "reward"])
    agree, chance = by_chance([eaten, made], {})
    assert agree == [made] and chance == [eaten]
    # Without the reward neither of the two is the majority: both stand.
    plain = attempt("use:make_x", {"wood": 1}, ["wood-1", "x+1"])
    assert by_chance([eaten, plain], {}) == ([eaten, plain], [])


def test_without_a_reward_what_most_successes_did_decides():
    attempt = Attempts()
    made = [attempt("use:make_x", {"wood": 2}, ["wood-1", "x+1"]) for _ in range(2)]
    eaten = attempt("use:make_x", {"wood": 2}, [EATEN])
    assert by_chance(made + [eaten], {}) == (made, [eaten])
    # A success that did what most did, and more besides, agrees.
    more = attempt("use:make_x", {"wood": 2}, ["x+1", EATEN])
    assert by_chance(made + [more], {}) == (made + [more], [])


def test_a_rise_by_another_amount_and_a_success_known_by_its_reward_agree():
    attempt = Attempts()
    full = [attempt("interact:cow", {"food": 2}, ["food+6"]) for _ in range(2)]
    topped_up = attempt("interact:cow", {"food": 8}, ["food+1"])
    only_reward = attempt("interact:cow", {"food": 8}, ["reward"])
    agree, chance = by_chance(full + [topped_up, only_reward], {})
    assert agree == full + [topped_up, only_reward] and chance == []


def test_a_change_the_drift_explains_is_not_what_a_success_did():
    attempt = Attempts()
    made = [attempt("use:make_x", {"energy": 3}, ["x+1", "energy-1"]) for _ in range(2)]
    tired = attempt("use:make_x", {"energy": 3}, ["energy-1", EATEN])
    # Known to fall by itself, energy is nothing the three share: the third did nothing
    # the others did.
    assert by_chance(made + [tired], {"energy": {-1}}) == (made, [tired])
    assert by_chance(made + [tired], {}) == (made + [tired], [])
