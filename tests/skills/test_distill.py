"""Skills distilled from a real episode's attempts (see the ``table_run`` fixture), and from
hand-made attempts where the evidence must be exact."""

import copy

from cairn.experience.judging import acted_without_effect, worked
from cairn.experience.records import change_effect
from cairn.experience.store import ExperienceStore
from cairn.guardrails.distill import requirement_guardrails
from cairn.skills.distill import (
    DEMOTE_AFTER,
    DEMOTE_BELOW,
    common_effects,
    distill_skill,
    explain_failures,
    with_what_it_spends,
)
from cairn.skills.library import IDENTITY, KIND, SkillLibrary
from tests.map_attempts import TRAITS, Attempts


def test_getting_wood_becomes_a_skill_verified_by_the_wood_counter_rising(table_run):
    agent, _, _, _ = table_run
    skill = agent.learner.skills.get("interact:tree")
    assert skill is not None and skill.status == "active"
    assert "wood+1" in skill.verification
    assert skill.raises() == {"wood": 1}
    assert len(skill.provenance) >= 4
    evidence = [agent.store.get(i) for i in skill.provenance]  # real, stored attempts
    most = max(t.post.counters["wood"] for t in evidence)
    rose = 0
    for t in evidence:
        assert t.subgoal.key == "interact:tree" and t.diagnosis.success
        if t.pre.counters["wood"] < most:  # at the most it ever held, the game may give no more
            assert t.post.counters["wood"] == t.pre.counters["wood"] + 1
            rose += 1
    assert rose >= 4


def test_building_learns_the_requirement_its_failures_lacked(table_run):
    agent, _, _, _ = table_run
    skill = agent.learner.skills.get("use:place_table")
    assert skill is not None
    (requirement,) = skill.preconditions
    assert requirement.startswith("wood>=")
    assert skill.creates() == ["table"]
    need = int(requirement.split(">=")[1])
    for attempt_id in skill.provenance:
        t = agent.store.get(attempt_id)
        assert t.diagnosis.success and t.pre.counters["wood"] >= need
    failures = [t for t in agent.store.by_subgoal("use:place_table")
                if not t.diagnosis.success]
    assert failures and all(t.pre.counters["wood"] < need for t in failures)


def test_only_a_change_of_what_a_skill_is_made_a_version_in_the_episode(table_run):
    agent, _, _, _ = table_run
    tree = agent.learner.skills.get("interact:tree")
    # Distilled at its second success, then again after each one, with new statistics
    # every time: far fewer versions than that.
    assert tree.successes >= 4
    assert len(agent.store.knowledge.history(KIND, "interact:tree")) < tree.successes - 1
    for key, skill in agent.learner.skills.skills.items():
        history = agent.store.knowledge.history(KIND, key)
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        assert history[-1].version == skill.version
        assert history[-1].body == skill.to_dict()  # statistics kept up to date in place
        for old, new in zip(history, history[1:], strict=False):
            assert any(old.body[f] != new.body[f] for f in IDENTITY), (key, old, new)


def test_what_a_skill_is_makes_a_new_version_and_statistics_do_not(table_run, table_store):
    agent, _, _, _ = table_run
    with ExperienceStore(table_store) as store:  # a copy: the shared store stays as it is
        library = SkillLibrary(store.knowledge)
        skill = copy.deepcopy(library.get("interact:tree"))
        first = skill.version
        rows = len(store.knowledge.history(KIND, skill.subgoal))

        def update(**changes):
            new = copy.deepcopy(library.get(skill.subgoal))
            for name, value in changes.items():
                setattr(new, name, value)
            return library.update(new).version, store.knowledge.history(KIND, skill.subgoal)

        # Statistics and provenance only: the current version is updated in place.
        version, history = update(successes=skill.successes + 1, attempts=skill.attempts + 1,
                                  provenance=[*skill.provenance, 999])
        assert version == first and len(history) == rows
        assert history[-1].body["successes"] == skill.successes + 1
        assert history[-1].body["provenance"][-1] == 999
        # Nothing changed at all: nothing is written.
        assert update() == (first, history)
        # A new precondition, a new verification, a new status: one new version each.
        version, history = update(preconditions=[*skill.preconditions, "near:water"])
        assert version == first + 1 and len(history) == rows + 1
        assert history[-2].body["preconditions"] == skill.preconditions
        version, history = update(verification=[*skill.verification, "sapling+1"])
        assert version == first + 2 and len(history) == rows + 2
        version, history = update(status="demoted")
        assert version == first + 3 and len(history) == rows + 3
        assert [e.status for e in history[-2:]] == ["active", "demoted"]
    with ExperienceStore(table_store) as store:  # the next run starts from the newest one
        reloaded = SkillLibrary(store.knowledge).get(skill.subgoal)
        assert (reloaded.version, reloaded.status) == (first + 3, "demoted")
        assert reloaded.preconditions == [*skill.preconditions, "near:water"]
        assert reloaded.successes == skill.successes + 1
        assert skill.subgoal not in {s.subgoal for s in SkillLibrary(store.knowledge).active()}


def test_explain_failures_prefers_the_fact_every_failure_lacked():
    successes = [frozenset({"wood>=1", "wood>=2", "see:a"}), frozenset({"wood>=1", "wood>=2"})]
    failures = [frozenset({"wood>=1", "see:a"}), frozenset({"see:a"})]
    assert explain_failures(successes, failures) == ["wood>=2"]
    assert explain_failures(successes, []) == []


def test_a_place_or_sight_must_explain_two_failures_to_become_a_precondition():
    """One failure away from water is no evidence that water is needed (the successes may
    have been near it by chance); a counter level is (what things usually need)."""
    successes = [frozenset({"wood>=1", "near:table", "near:water"})] * 2
    one_away = [frozenset({"wood>=1", "near:table"})]
    assert explain_failures(successes, one_away) == []
    assert explain_failures(successes, one_away * 2) == ["near:water"]
    no_wood = [frozenset({"near:table", "near:water"})]
    assert explain_failures(successes, no_wood) == ["wood>=1"]
    # Both at once: the level explains its one failure, the place its two.
    both = no_wood + [frozenset({"wood>=1", "near:water"})] * 2
    assert explain_failures(successes, both) == ["near:table", "wood>=1"]


def test_common_effects_keep_what_every_success_did_and_drop_reward():
    made = change_effect(0, 0, "a", "b")
    assert common_effects([["wood+1", "reward"], ["wood+1", made]]) == ["wood+1"]
    assert common_effects([["a+1"], ["b+1"], ["a+1"]]) == []
    assert common_effects([["a+1"]] * 4 + [["b+1"]]) == ["a+1"]
    # A success known only by its reward shows no effect: it does not thin out the rest.
    assert common_effects([["reward"], ["reward"], ["a+1"]]) == ["a+1"]


def test_a_rise_is_judged_only_where_the_counter_could_still_rise():
    made = change_effect(0, 0, "tree", "grass")
    # Seven harvests raised wood (to 9 at most); three more began with 9 and added none.
    effects = [["wood+1", made]] * 7 + [[made]] * 3
    held = [{"wood": n} for n in range(2, 9)] + [{"wood": 9}] * 3
    assert common_effects(effects) == [made]  # 7 of 10: not "nearly every"
    assert common_effects(effects, held) == [made, "wood+1"]
    # Three that began lower and added none do count against it.
    held = [{"wood": n} for n in range(2, 9)] + [{"wood": 1}] * 3
    assert common_effects(effects, held) == [made]


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


# -- hand-made evidence ---------------------------------------------------------------------

def test_a_skill_whose_success_rate_falls_is_demoted():
    attempt = Attempts()
    done = [attempt("use:make_x", {"wood": 1}, ["x+1"]) for _ in range(2)]
    # Failures in the same situation: no precondition explains them, they count against it.
    failed = [attempt("use:make_x", {"wood": 1}) for _ in range(7)]
    assert all(acted_without_effect(t) for t in failed)
    early = distill_skill("use:make_x", done + failed[:3], {}, TRAITS)
    assert early.status == "active"  # 2/5, but too few attempts to judge
    assert distill_skill("use:make_x", done + failed[:4], {}, TRAITS).status == "active"
    assert DEMOTE_AFTER == 6 and DEMOTE_BELOW == 0.25
    fallen = distill_skill("use:make_x", done + failed, {}, TRAITS)
    assert (fallen.successes, fallen.attempts) == (2, 9)
    assert fallen.success_rate < DEMOTE_BELOW and fallen.status == "demoted"
    # Failures that a precondition explains do not count against it.
    lacking = [attempt("use:make_x", {"wood": 0}) for _ in range(7)]
    kept = distill_skill("use:make_x", done + lacking, {}, TRAITS)
    assert kept.preconditions == ["wood>=1"] and kept.status == "active"
    # A demoted skill is no longer used to raise what it used to raise.
    library = SkillLibrary()
    library.update(early)
    assert [s.subgoal for s in library.raising("x")] == ["use:make_x"]
    library.update(fallen)
    assert library.raising("x") == [] and library.active() == []


def test_a_change_the_counter_drift_explains_is_no_success_any_more():
    attempt = Attempts()
    # Energy fell during two attempts: credited to the action before energy was known to
    # fall by itself.
    tired = [attempt("use:make_x", {"energy": 5}, ["energy-1"]) for _ in range(2)]
    skill = distill_skill("use:make_x", tired, {}, TRAITS)
    assert skill is not None and skill.verification == ["energy-1"]
    drift = {"energy": {-1}}
    assert not any(worked(t, drift, TRAITS) for t in tired)
    assert distill_skill("use:make_x", tired, drift, TRAITS) is None
    # The drift explains falls only: a rise is still the action's doing.
    rested = [attempt("use:rest", {"energy": 2}, ["energy+1"]) for _ in range(2)]
    assert all(worked(t, drift, TRAITS) for t in rested)
    assert distill_skill("use:rest", rested, drift, TRAITS).raises() == {"energy": 1}
    # A success with a real effect as well stays one, and verifies by that effect only.
    both = [attempt("interact:tree", {"food": 4}, ["food-1", "wood+1"]) for _ in range(2)]
    skill = distill_skill("interact:tree", both, {"food": {-1}}, TRAITS)
    assert skill.verification == ["wood+1"] and skill.successes == 2
    # The food level is no requirement to learn while food runs down by itself.
    hungry = [attempt("interact:tree", {"food": 0}) for _ in range(2)]
    assert distill_skill("interact:tree", both + hungry, {}, TRAITS).preconditions == \
        ["food>=1"]
    assert distill_skill("interact:tree", both + hungry, {"food": {-1}},
                         TRAITS).preconditions == []


def test_a_skill_requires_holding_what_it_spends_without_failures_to_show_it():
    held = [frozenset({"wood>=1", "wood>=2", "wood>=3", "facing:grass"})] * 3
    # Its recent failures only lacked the grass (it was tried only with wood): wood>=2 all
    # the same, from the wood-2 it spends.
    assert with_what_it_spends(["facing:grass"], ["wood-2", "x+1"], held) == \
        ["facing:grass", "wood>=2"]
    assert with_what_it_spends(["wood>=1"], ["wood-2"], held) == ["wood>=2"]  # in place
    assert with_what_it_spends(["wood>=3"], ["wood-2"], held) == ["wood>=3"]  # stays
    assert with_what_it_spends([], ["wood+1"], held) == []  # gaining needs nothing
    # A success that held less (a misread) makes no requirement of it.
    assert with_what_it_spends([], ["wood-2"], held + [frozenset({"wood>=1"})]) == []


def test_a_success_by_chance_does_not_hide_the_requirement():
    """A creature ate the plant the agent faced while it tried to craft far from a table:
    a success by its effect. Taken at its word it would keep the table out of the
    preconditions (the first success lacked it), and the skill would need the plant."""
    attempt = Attempts()
    eaten = attempt("use:make_x", {"wood": 1}, [change_effect(0, 0, "plant", "grass")],
                    near=("plant", "grass"))
    made = attempt("use:make_x", {"wood": 1}, ["wood-1", "x+1", "reward"],
                   near=("plant", "table"))
    far = [attempt("use:make_x", {"wood": 1}, near=("plant", "grass")) for _ in range(3)]
    far += [attempt("use:make_x", {"wood": 1}, near=("grass",)) for _ in range(2)]
    skill = distill_skill("use:make_x", [eaten, made] + far, {}, TRAITS)
    assert skill.preconditions == ["near:table", "wood>=1"]
    assert skill.verification == ["wood-1", "x+1"]
    assert (skill.successes, skill.attempts, skill.status) == (1, 1, "active")
    assert skill.provenance == [made.id]
    guards = requirement_guardrails("use:make_x", [eaten, made] + far, skill.preconditions,
                                    {}, TRAITS)
    (table,) = [g for g in guards if g.trigger.none_of == ["near:table"]]
    assert eaten.id in table.evidence and table.contradictions == []
