"""Guardrails against clicking where a click never does anything, from hand-made attempts."""

from cairn.guardrails.effects import FORBIDDEN, no_effect_guardrails, region_trigger
from cairn.guardrails.store import GuardrailSet
from tests.board_attempts import Clicks, board, setter, state, toggle_cross


def nothing(b, _cell):
    return [list(r) for r in b]


def facts_of(b, region, action="click"):
    return lambda: state(b, region, action).facts()


def test_clicks_off_the_board_that_never_did_anything_are_forbidden_there():
    clicks, b = Clicks(), board("ab/ba")
    misses = [clicks(b, region, toggle_cross)[0] for region in [(-1, 0), (2, 1)]]
    assert all(t.diagnosis.cause == "no_effect" for t in misses)
    (candidate,) = no_effect_guardrails(misses[:1], min_evidence=2)
    assert candidate.status == "candidate"  # one miss: not enforced yet
    (guard,) = no_effect_guardrails(misses, min_evidence=2)
    assert guard.status == "active" and guard.forbidden == FORBIDDEN
    assert guard.trigger.all_of == ["tag:action:click", "tag:region:outside"]
    assert guard.evidence == [t.id for t in misses] and guard.contradictions == []
    guards = GuardrailSet()
    guards.update(guard)
    # Forbids clicking any point off the board, never a cell, never another button.
    assert guards.blocking_primitive("click", None, facts_of(b, (1, -1))) is not None
    assert guards.blocking_primitive("click", None, facts_of(b, (0, 0))) is None
    assert guards.blocking_primitive("click", None, facts_of(b, (1, -1), "right_click")) \
        is None


def test_cells_are_told_apart_by_their_look():
    clicks, b = Clicks(), board("xa/ax")
    fill = setter("x")  # sets a cell to "x": on an "x" cell it does nothing
    attempts = [clicks(b, cell, fill)[0] for cell in [(0, 0), (1, 1)]]
    attempts.append(clicks(b, (0, 1), fill)[0])  # an "a" cell: it works
    assert [t.diagnosis.success for t in attempts] == [False, False, True]
    guards = {tuple(g.trigger.all_of): g for g in no_effect_guardrails(attempts, 2)}
    assert set(guards) == {("tag:action:click", "tag:region:cell", "facing:x")}
    assert region_trigger(attempts[2]) == ["tag:action:click", "tag:region:cell", "facing:a"]
    held = GuardrailSet()
    held.update(guards[("tag:action:click", "tag:region:cell", "facing:x")])
    assert held.blocking_primitive("click", None, facts_of(b, (1, 1))) is not None
    assert held.blocking_primitive("click", None, facts_of(b, (1, 0))) is None


def test_clicks_that_work_under_the_same_trigger_retire_the_guardrail():
    clicks = Clicks()
    fill = setter("x")
    misses = [clicks(board("x."), (0, 0), fill)[0] for _ in range(2)]
    (guard,) = no_effect_guardrails(misses, 2)
    assert guard.status == "active"
    # The same look later changes when clicked (the game's state moved on): contradictions.
    blank_x = board("x.")
    works = [clicks(blank_x, (0, 0), setter("."))[0]]
    (weighed,) = no_effect_guardrails(misses + works, 2)
    assert weighed.status == "active"  # one contradiction against two misses
    assert weighed.contradictions == [works[0].id]
    works.append(clicks(blank_x, (0, 0), setter("."))[0])
    (retired,) = no_effect_guardrails(misses + works, 2)
    assert retired.status == "retired"
    assert retired.contradictions == [t.id for t in works]
    # A retired guardrail blocks nothing; the set keeps its evidence.
    guards = GuardrailSet()
    guards.update(guard)
    guards.update(retired)
    assert guards.active() == []
    assert guards.blocking_primitive("click", None, facts_of(blank_x, (0, 0))) is None
    assert guards.guardrails[guard.id].evidence == [t.id for t in misses]


def test_attempts_without_an_id_are_not_evidence():
    clicks = Clicks()
    t, _ = clicks(board("ab"), (-1, 0), nothing)
    t.id = None
    assert no_effect_guardrails([t, t], 1) == []
