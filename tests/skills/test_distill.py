"""Skills distilled from a real episode's attempts (see the ``table_run`` fixture)."""

from cairn.experience.records import Cause
from cairn.skills.distill import common_effects, explain_failures


def test_getting_wood_becomes_a_skill_verified_by_the_wood_counter_rising(table_run):
    agent, _, _, _ = table_run
    skill = agent.learner.skills.get("interact:tree")
    assert skill is not None and skill.status == "active"
    assert "wood+1" in skill.verification
    assert skill.raises() == {"wood": 1}
    assert len(skill.provenance) >= 4
    for attempt_id in skill.provenance:  # the evidence is real, stored attempts
        t = agent.store.get(attempt_id)
        assert t.subgoal.key == "interact:tree" and t.diagnosis.success
        assert t.post.counters["wood"] == t.pre.counters["wood"] + 1


def test_building_learns_the_requirement_its_failures_lacked(table_run):
    agent, _, _, _ = table_run
    skill = agent.learner.skills.get("use:place_table")
    assert skill is not None
    (requirement,) = skill.preconditions
    assert requirement.startswith("wood>=")
    assert any(v.startswith("tile:") and v.endswith(">table") for v in skill.verification)
    need = int(requirement.split(">=")[1])
    for attempt_id in skill.provenance:
        t = agent.store.get(attempt_id)
        assert t.diagnosis.success and t.pre.counters["wood"] >= need
    failures = [t for t in agent.store.by_subgoal("use:place_table")
                if not t.diagnosis.success]
    assert failures and all(t.pre.counters["wood"] < need for t in failures)


def test_the_stored_skill_is_versioned(table_run):
    agent, _, _, _ = table_run
    history = agent.store.knowledge.history("skill", "interact:tree")
    assert len(history) >= 1
    assert history[-1].version == agent.learner.skills.get("interact:tree").version


def test_explain_failures_prefers_the_fact_every_failure_lacked():
    successes = [frozenset({"wood>=1", "wood>=2", "see:a"}), frozenset({"wood>=1", "wood>=2"})]
    failures = [frozenset({"wood>=1", "see:a"}), frozenset({"see:a"})]
    assert explain_failures(successes, failures) == ["wood>=2"]
    assert explain_failures(successes, []) == []


def test_common_effects_keep_what_every_success_did_and_drop_reward():
    assert common_effects([["wood+1", "reward"], ["wood+1", "tile:a>b"]]) == ["wood+1"]
    assert common_effects([["a+1"], ["b+1"], ["a+1"]]) == []
    assert common_effects([["a+1"]] * 4 + [["b+1"]]) == ["a+1"]
    assert str(Cause.SUCCESS) == "success"


def test_skills_list_and_show_read_a_real_store(table_run, capsys):
    from cairn.runtime.cli import main

    _, store, _, _ = table_run
    assert main(["skills", "--store", str(store), "list"]) == 0
    listed = capsys.readouterr().out
    assert "interact:tree" in listed and "wood+1" in listed
    assert main(["skills", "--store", str(store), "show", "use:place_table"]) == 0
    shown = capsys.readouterr().out
    assert "preconditions" in shown and "provenance" in shown and "history: v1" in shown
    assert main(["skills", "--store", str(store), "show", "nope"]) == 2
    assert main(["skills", "--store", str(store.parent / "missing.sqlite"), "list"]) == 2
    assert "no experience store" in capsys.readouterr().err
