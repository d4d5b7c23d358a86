"""Guardrails distilled from a real episode's failures (see the ``table_run`` fixture)."""

import numpy as np
from cairn.experience.records import condition_signature
from cairn.guardrails.distill import weigh
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.cli import main
from cairn.runtime.executor import snapshot
from cairn.runtime.planner import PlanContext


def _requirement_guard(agent):
    found = [g for g in agent.learner.guardrails.active()
             if g.forbidden == "subgoal use:place_table" and g.trigger.none_of]
    assert len(found) == 1
    return found[0]


def test_a_guardrail_blocks_building_while_its_missing_requirement_holds(table_run):
    agent, _, _, _ = table_run
    guard = _requirement_guard(agent)
    (missing,) = guard.trigger.none_of
    assert missing == agent.learner.skills.get("use:place_table").preconditions[0]
    assert guard.root_cause == "missing_requirement"
    assert len(guard.evidence) >= 2
    for attempt_id in guard.evidence:  # evidence: real failed attempts lacking it
        t = agent.store.get(attempt_id)
        assert t.subgoal.key == "use:place_table" and not t.diagnosis.success
        assert missing not in t.pre.facts() and guard.trigger.holds(t.pre.facts())


def test_once_the_guardrail_exists_the_planner_no_longer_tries_it_there(table_run):
    agent, _, _, episode = table_run
    guard = _requirement_guard(agent)
    (missing,) = guard.trigger.none_of
    later = [t for t in agent.store.by_episode(episode)
             if t.id > max(guard.evidence) and t.subgoal.key == "use:place_table"]
    assert all(missing in t.pre.facts() for t in later)
    # Ask the planner directly, many times, in the state the episode ended in.
    state = snapshot(agent.world, 0)
    state.counters["wood"] = 0
    ctx = PlanContext(state=state, condition=condition_signature(state.predicates()),
                      by_name=["place_table"], can_sleep=False,
                      stats=lambda *_: (0, 0))
    assert agent.learner.guardrails.blocking_subgoal("use:place_table", state.facts()) is guard
    choices = {agent.planner.planner.next_subgoal(ctx).key for _ in range(50)}
    assert "use:place_table" not in choices


def test_contradicting_evidence_retires_a_guardrail(table_run, tmp_path):
    agent, _, _, episode = table_run
    attempts = list(agent.store.by_subgoal("use:place_table"))
    failures = [t for t in attempts if not t.diagnosis.success]
    successes = [t for t in attempts if t.diagnosis.success]
    # A guardrail that blames something in view, not what was held: the successes made
    # while it held contradict it.
    in_view = sorted(f for f in frozenset.intersection(
        failures[0].pre.facts(), *(t.pre.facts() for t in successes)) if f.startswith("see:"))
    wrong = Guardrail(
        root_cause="no_effect", explanation="test", trigger=Trigger(all_of=in_view[:1]),
        forbidden="subgoal use:place_table", scope="subgoal", evidence=[failures[0].id])
    assert all(wrong.trigger.holds(t.pre.facts()) for t in successes)
    weigh(wrong, successes)
    assert wrong.status == "retired"
    assert wrong.contradictions == sorted(t.id for t in successes)
    kept = GuardrailSet(agent.store.knowledge)
    kept.update(wrong)
    assert GuardrailSet(agent.store.knowledge).guardrails[wrong.id].status == "retired"


def test_enter_guardrails_block_the_move_not_the_kind_elsewhere():
    guards = GuardrailSet()
    guards.update(Guardrail("died", "test", Trigger(), "enter lava", "task", [1]))
    assert guards.forbidden_entries() == {"lava"}
    def no_facts_needed():
        raise AssertionError("an unconditional guardrail needs no facts")

    assert guards.blocking_primitive("move_left", "lava", no_facts_needed) is not None
    assert guards.blocking_primitive("move_left", "grass", no_facts_needed) is None
    assert guards.blocking_primitive("do", None, no_facts_needed) is None
    guards.update(Guardrail("died", "test", Trigger(all_of=["tag:night"]), "primitive sleep",
                            "task", [2]))
    assert guards.blocking_primitive("sleep", None, lambda: frozenset({"tag:night"}))
    assert guards.blocking_primitive("sleep", None, lambda: frozenset()) is None


def test_guardrails_show_prints_the_evidence(table_run, capsys):
    agent, store, runs, episode = table_run
    guard = _requirement_guard(agent)
    assert main(["guardrails", "--store", str(store), "show", guard.id, "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert guard.trigger.none_of[0] in out and "subgoal use:place_table" in out
    for attempt_id in guard.evidence:
        t = agent.store.get(attempt_id)
        assert f"#{attempt_id} episode {episode} steps {t.step_start}-{t.step_end}" in out
    assert "frames.bin" in out


def test_guardrails_disable_enable_and_export(table_run, tmp_path, capsys):
    agent, store, _, _ = table_run
    guard = _requirement_guard(agent)
    args = ["guardrails", "--store", str(store)]
    assert main(args + ["disable", guard.id]) == 0
    assert main(args + ["export", "-o", str(tmp_path / "g.json")]) == 0
    exported = (tmp_path / "g.json").read_text()
    assert guard.id in exported and '"disabled"' in exported
    assert main(args + ["enable", guard.id]) == 0
    assert main(args + ["show", "g-nope"]) == 2
    assert "no guardrail 'g-nope'" in capsys.readouterr().err
    assert np.isfinite(guard.confidence)


def test_nothing_new_means_no_earlier_failure_had_less():
    from cairn.guardrails.distill import maximal_sets

    sets = maximal_sets([{"wood>=1", "near:grass"}, {"near:table"}, {"near:grass"}])
    assert sets == [["near:table"], ["near:grass", "wood>=1"]]
    gate = Trigger(within=sets, ignore=["food"])
    assert gate.holds(frozenset({"wood>=1", "food>=3", "see:cow"}))  # nothing new
    assert gate.holds(frozenset({"near:table"}))
    # Each fact was seen in some failure, but never together: worth a try.
    assert not gate.holds(frozenset({"wood>=1", "near:table"}))
    assert not gate.holds(frozenset({"stone>=1"}))
