"""Effect skills (what a click does around the clicked cell) from hand-made click attempts."""

from cairn.skills.effects import (
    clip,
    effect_name,
    general_key,
    general_skill,
    offsets,
    predicted,
    predicted_looks,
    region_skills,
    toggles_only,
)
from tests.board_attempts import Clicks, board, setter, toggle_cross

CROSS = {(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)}


def play(start, cells, do, action="click", clicks=None):
    """Click ``cells`` in turn on ``start``; the attempts, oldest first."""
    clicks = clicks or Clicks()
    attempts, b = [], start
    for cell in cells:
        t, b = clicks(b, cell, do, action)
        attempts.append(t)
    return attempts


def test_effect_names_round_trip_through_offsets():
    names = [effect_name(dr, dc) for dr, dc in CROSS]
    assert offsets(names + ["reward", "wood+1"]) == CROSS


def test_one_pattern_wherever_it_is_clicked_clipped_at_the_border():
    # A corner click changes 3 cells, an edge click 4, the centre 5: one cross, clipped.
    attempts = play(board("aba/bab/aba"), [(0, 0), (1, 1), (0, 1), (2, 2)], toggle_cross)
    assert [len(t.diagnosis.effects) for t in attempts] == [3, 5, 4, 3]
    assert general_skill(attempts[:3], min_evidence=4) is None  # not enough evidence yet
    skill = general_skill(attempts, min_evidence=4)
    assert skill.subgoal == general_key("click") == "click:cell"
    assert skill.status == "active"
    assert offsets(skill.verification) == CROSS
    assert (skill.successes, skill.attempts) == (4, 4)
    assert skill.provenance == [t.id for t in attempts]
    # Predicted anywhere, clipped to the board: a corner of a 4x4 board it never saw.
    assert predicted(skill, (3, 0), (4, 4)) == {(3, 0), (2, 0), (3, 1)}
    assert clip(CROSS, (0, 0), (1, 1)) == {(0, 0)}


def test_a_click_that_disagrees_with_the_pattern_demotes_it_and_cells_keep_their_own():
    clicks = Clicks()
    attempts = play(board("aba/bab/aba"), [(1, 1), (0, 0), (2, 2)], toggle_cross,
                    clicks=clicks)
    assert general_skill(attempts, 3).status == "active"
    # The same action on (0, 2) changes only that cell: the effect depends on the place.
    odd, _ = clicks(board("aba/bab/aba"), (0, 2), setter("b"))
    skill = general_skill([*attempts, odd], 3)
    assert skill.status == "demoted"
    assert (skill.successes, skill.attempts) == (3, 4)
    assert odd.id not in skill.provenance
    # Per-cell skills take over: each clicked cell does exactly what it did there.
    per_cell = {s.subgoal: s for s in region_skills([*attempts, odd])}
    assert set(per_cell) == {"click:1,1", "click:0,0", "click:2,2", "click:0,2"}
    assert offsets(per_cell["click:0,2"].verification) == {(0, 0)}
    assert offsets(per_cell["click:1,1"].verification) == CROSS
    assert per_cell["click:0,2"].preconditions == ["tag:board:3x3"]
    assert per_cell["click:0,2"].applicable({"tag:board:3x3"})
    assert not per_cell["click:0,2"].applicable({"tag:board:4x4"})


def test_the_newest_attempt_wins_a_cells_own_skill():
    clicks = Clicks()
    first, b = clicks(board("aa/aa"), (0, 0), toggle_cross)
    second, _ = clicks(b, (0, 0), setter("c"))
    (skill,) = region_skills([first, second])
    assert offsets(skill.verification) == {(0, 0)}
    assert (skill.successes, skill.attempts, skill.provenance) == (1, 2, [second.id])


def test_toggles_learn_looks_that_swap_in_pairs():
    attempts = play(board("aba/bab/aba"), [(1, 1), (0, 0), (2, 2), (1, 1)], toggle_cross)
    skill = general_skill(attempts, 3)
    assert skill.status == "active" and toggles_only(skill)
    b = board("aaa/aba/aaa")
    looks = predicted_looks(skill, (1, 1), (3, 3), lambda rc: b[rc[0]][rc[1]])
    assert looks == {(1, 1): "a", (0, 1): "b", (2, 1): "b", (1, 0): "b", (1, 2): "b"}


def test_an_action_that_sets_a_look_is_told_from_a_toggle():
    fill = setter("x")
    # Set on a blank cell, on another blank one, then on one that has the look already:
    # that click changes nothing, and still agrees with what was learned.
    clicks = Clicks()
    t1, b = clicks(board("..../..../...."), (1, 1), fill)
    t2, b = clicks(b, (1, 2), fill)
    t3, b = clicks(b, (1, 1), fill)
    assert t3.diagnosis.effects == [] and not t3.diagnosis.success
    skill = general_skill([t1, t2, t3], 3)
    assert skill.status == "active"
    assert offsets(skill.verification) == {(0, 0)}
    assert skill.procedure[0]["looks"] == {"0,0": {".": "x", "x": "x"}}
    assert not toggles_only(skill)
    # What it predicts: a blank cell turns "x", a cell that has it is left out.
    assert predicted_looks(skill, (0, 0), (3, 4), lambda rc: b[rc[0]][rc[1]]) == {(0, 0): "x"}
    assert predicted_looks(skill, (1, 1), (3, 4), lambda rc: b[rc[0]][rc[1]]) == {}
    # Without looks to go by, the cell is predicted to change into an unknown look.
    assert predicted_looks(skill, (1, 1), (3, 4)) == {(1, 1): None}


def test_one_look_turning_into_two_different_ones_demotes_the_skill():
    clicks = Clicks()
    t1, b = clicks(board("..../...."), (0, 0), setter("x"))
    t2, b = clicks(b, (0, 1), setter("x"))
    t3, b = clicks(b, (0, 2), setter("y"))  # the same action, now "." -> "y"
    assert general_skill([t1, t2], 2).status == "active"
    assert general_skill([t1, t2, t3], 2).status == "demoted"


def test_each_action_learns_its_own_skill():
    clicks = Clicks()
    start = board("..../..../....")
    fills = play(start, [(0, 0), (1, 1)], setter("x"), "click", clicks)
    marks = play(start, [(0, 1), (2, 2)], setter("o"), "right_click", clicks)
    left, right = general_skill(fills + marks, 2, "click"), \
        general_skill(fills + marks, 2, "right_click")
    assert (left.subgoal, right.subgoal) == ("click:cell", "right_click:cell")
    assert left.status == right.status == "active"
    assert left.procedure[0]["looks"] == {"0,0": {".": "x"}}
    assert right.procedure[0]["looks"] == {"0,0": {".": "o"}}
    assert left.provenance == [t.id for t in fills]


def test_clicks_off_the_board_are_no_evidence_for_cell_skills():
    clicks = Clicks()
    outside = [clicks(board("ab/ba"), (-1, c), toggle_cross)[0] for c in range(3)]
    assert all("region:outside" in t.pre.tags for t in outside)
    assert general_skill(outside, 1) is None
    assert region_skills(outside) == []
