"""How the first-person kit brings a target under the crosshair (pure logic on grid offsets;
tests/runtime/test_first_person.py plays the real game)."""

from cairn.runtime.first_person_kit import FirstPersonKit, _Aim

TURNS = {(0, -1): "turn_left", (0, 1): "turn_right", (-1, 0): "look_up", (1, 0): "look_down"}


def kit() -> FirstPersonKit:
    k = FirstPersonKit.__new__(FirstPersonKit)  # only the aiming: no game, no perception
    k.turns, k.forward = TURNS, "forward"
    return k


def test_columns_are_aimed_before_rows_then_it_walks():
    k, aim = kit(), _Aim()
    assert k._towards((2, 3), aim) == "turn_right"
    assert k._towards((2, 1), aim) == "turn_right"
    assert k._towards((2, 0), aim) == "look_down"
    assert k._towards((0, 0), aim) == "forward"


def test_a_target_that_changes_sides_after_a_turn_is_aimed_until_it_drifts_off():
    k, aim = kit(), _Aim()
    assert k._towards((0, 1), aim) == "turn_right"
    assert k._towards((0, -1), aim) == "forward"  # between two stops of the view: no swing
    assert k._towards((0, 1), aim) == "forward"
    assert k._towards((0, -2), aim) == "turn_left"  # walking moved it well off: aim again


def test_an_axis_a_turn_cannot_move_is_left_alone_for_the_attempt():
    k, aim = kit(), _Aim()
    assert k._towards((-3, 0), aim) == "look_up"
    assert k._towards((-3, 0), aim) == "forward"  # looking up moved nothing: as far as it goes
    assert k._towards((-4, 0), aim) == "forward"
    assert k._towards((-4, 2), aim) == "turn_right"  # the other axis still turns
