"""Guardrails distilled from a real episode's failures (see the ``table_run`` fixture)."""

import dataclasses
import json

from cairn.experience.records import condition_signature
from cairn.experience.store import ExperienceStore
from cairn.guardrails.distill import weigh
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.cli import main
from cairn.runtime.map_kit import snapshot
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


def calm(planner):
    """The planner with nothing that moves by itself next to it: the episode may end beside
    an attacker, and hitting back comes before any choice between actions."""
    facts = planner.world_facts
    planner.world_facts = lambda: dataclasses.replace(facts(), mobile_near=[])
    return planner


def first_choices(planner, ctx, n=100):
    """``n`` choices in one state, each as the first (no experiment under way from the one
    before: it would go on with that)."""
    choices = []
    for _ in range(n):
        planner.pursuit = None
        choices.append(planner.next_subgoal(ctx).key)
    return choices


def test_once_the_guardrail_exists_the_planner_no_longer_tries_it_there(table_run,
                                                                       planner_copy):
    agent, _, _, episode = table_run
    guard = _requirement_guard(agent)
    (missing,) = guard.trigger.none_of
    # The attempts the planner chose itself (after the script), all made once the
    # guardrail with all its evidence existed: many while its trigger held, and in those
    # the planner tried other actions by name, but never this one.
    chosen = list(agent.store.by_episode(episode))[agent.planner.scripted:]
    assert chosen and min(t.id for t in chosen) > max(guard.evidence)
    while_forbidden = [t for t in chosen if guard.trigger.holds(t.pre.facts())]
    assert len(while_forbidden) >= 5
    tried = {t.subgoal.key for t in while_forbidden}
    assert "use:place_table" not in tried
    assert len({key for key in tried if key.startswith("use:")}) >= 3

    # Ask a copy of the planner, many times, in the state the episode ended in (without
    # wood), with and without the guardrail: only the guardrail keeps it from choosing it.
    state = snapshot(agent.kit.world, 0)
    state.counters["wood"] = 0
    assert missing not in state.facts()
    ctx = PlanContext(state=state, condition=condition_signature(state.predicates()),
                      by_name=["place_table", "place_stone"], can_sleep=False,
                      stats=lambda *_: (0, 0))
    # place_stone, the other action by name, without what forbids it here (it may never
    # have worked yet): the same kind of choice open to the planner.
    other = {g.id for g in agent.learner.guardrails.active()
             if g.forbidden == "subgoal use:place_stone"}
    guarded = calm(planner_copy(agent, without=other))
    assert guarded.guardrails.blocking_subgoal("use:place_table", state.facts()).id == guard.id
    with_guard = first_choices(guarded, ctx)
    assert "use:place_table" not in with_guard
    assert "use:place_stone" in with_guard
    unguarded = calm(planner_copy(agent, without=other | {guard.id}))
    without_guard = first_choices(unguarded, ctx)
    assert "use:place_table" in without_guard


def test_contradicting_evidence_retires_a_guardrail(table_run, table_store):
    agent, _, _, _ = table_run
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
    with ExperienceStore(table_store) as store:  # a copy: the shared store stays as it is
        GuardrailSet(store.knowledge).update(wrong)
        assert GuardrailSet(store.knowledge).guardrails[wrong.id].status == "retired"


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


def test_guardrails_disable_enable_and_export(table_run, table_store, tmp_path, capsys):
    agent, _, _, _ = table_run
    guard = _requirement_guard(agent)
    args = ["guardrails", "--store", str(table_store)]  # a copy: switching writes versions

    def exported():
        assert main(args + ["export", "-o", str(tmp_path / "g.json")]) == 0
        return {g["id"]: g for g in json.loads((tmp_path / "g.json").read_text())}

    before = exported()[guard.id]
    assert (before["status"], before["version"]) == ("active", guard.version)
    assert before["evidence"] == guard.evidence
    assert before["confidence"] == round(
        len(guard.evidence) / (len(guard.evidence) + len(guard.contradictions) + 1), 3)
    assert main(args + ["disable", guard.id]) == 0
    disabled = exported()[guard.id]
    assert (disabled["status"], disabled["version"]) == ("disabled", guard.version + 1)
    with ExperienceStore(table_store) as store:  # a new run would not enforce it
        assert GuardrailSet(store.knowledge).blocking_subgoal(
            "use:place_table", frozenset()) is None
    assert main(args + ["enable", guard.id]) == 0
    enabled = exported()[guard.id]
    assert (enabled["status"], enabled["version"]) == ("active", guard.version + 2)
    with ExperienceStore(table_store) as store:
        assert GuardrailSet(store.knowledge).blocking_subgoal(
            "use:place_table", frozenset()).id == guard.id
    assert main(args + ["show", "g-nope"]) == 2
    assert "no guardrail 'g-nope'" in capsys.readouterr().err


def test_confidence_grows_with_evidence_and_falls_with_contradictions():
    def confidence(evidence, contradictions=0):
        return Guardrail("no_effect", "test", Trigger(), "subgoal use:x", "subgoal",
                         list(range(evidence)),
                         list(range(100, 100 + contradictions))).confidence

    assert confidence(0) == 0.0
    assert 0 < confidence(1) < confidence(2) < confidence(5) < confidence(50) < 1
    assert confidence(5, 1) < confidence(5) and confidence(5, 5) < confidence(5, 1)
    assert confidence(5, 5) < 0.5 < confidence(5, 3)  # as many against as for: below half


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


def test_guardrails_list_puts_active_first_and_counts_what_it_hides(table_store, capsys):
    guard = Guardrail("damage_taken", "test", Trigger(all_of=["see:zombie"]),
                      "subgoal interact:tree", "subgoal", [1], [2], status="retired")
    with ExperienceStore(table_store) as store:
        GuardrailSet(store.knowledge).update(guard)
        statuses = [e.status for e in store.knowledge.current("guardrail")]
    assert main(["guardrails", "--store", str(table_store), "list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    listed = [r.split()[1] for r in rows[1:-1]]
    assert guard.id not in "\n".join(rows) and "retired" not in listed
    ranks = ["active", "candidate", "disabled"]
    assert listed == sorted(listed, key=ranks.index)
    assert len(listed) == sum(s != "retired" for s in statuses)
    hidden = statuses.count("retired")
    assert rows[-1].endswith(f"{hidden} not listed (--status all lists them)")
    assert f"{hidden} retired" in rows[-1]
    assert main(["guardrails", "--store", str(table_store), "list", "--status", "all"]) == 0
    every = capsys.readouterr().out.splitlines()
    assert len(every) == len(statuses) + 2 and guard.id in "\n".join(every)
    assert main(["guardrails", "--store", str(table_store), "list", "--status", "retired"]) == 0
    only = capsys.readouterr().out.splitlines()[1:-1]
    assert {r.split()[1] for r in only} == {"retired"} and len(only) == hidden


def test_guardrails_list_names_root_causes_and_filters_by_cause_and_operation(
        table_store, capsys):
    harm = [Guardrail("died", "test", Trigger(all_of=["see:zombie"]), f"subgoal {s}",
                      "subgoal", [1]) for s in ("interact:water", "interact:tree")]
    with ExperienceStore(table_store) as store:
        for guard in harm:
            GuardrailSet(store.knowledge).update(guard)
        every = store.knowledge.current("guardrail")
    current = [e for e in every if e.status != "retired"]
    args = ["guardrails", "--store", str(table_store), "list"]
    assert main(args) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    assert sorted(r.split()[2] for r in rows) == sorted(e.body["root_cause"] for e in current)
    assert main(args + ["--cause", "died"]) == 0
    out = capsys.readouterr().out.splitlines()
    died = {e.key for e in current if e.body["root_cause"] == "died"}
    assert {r.split()[0] for r in out[1:-1]} == died >= {g.id for g in harm}
    assert len(died) < len(current)  # something else was left out
    assert out[-1].endswith(f"; {len(every) - len(died)} not listed (left out by --status, "
                            "--cause or --forbids)")
    assert main(args + ["--cause", "died", "--forbids", "interact:water"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in out[1:-1]] == [harm[0].id]
