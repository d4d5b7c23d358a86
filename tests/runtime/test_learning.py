"""The learner of a run on hand-made attempts in a real store: what each learning mode reads
and writes, and how guardrails give way as the evidence moves on."""

from types import SimpleNamespace

import pytest

from cairn.experience.records import change_effect
from cairn.experience.store import ExperienceStore
from cairn.guardrails.store import KIND as GUARDRAIL
from cairn.runtime.learning import Learner
from cairn.runtime.world import WorldModel
from cairn.skills.library import KIND as SKILL
from tests.map_attempts import Attempts, situation

TABLE = change_effect(0, 0, "grass", "table")


def kit(drift=None):
    """What the map rules read of the kit: its learning facts (entries and drift)."""
    world = WorldModel()
    world.drift = dict(drift or {})
    return SimpleNamespace(
        learning_facts=lambda: {"entries": world.entries(), "drift": world.drift})


def feed(learner, store, attempts, drift=None):
    """Store each attempt (the store numbers it) and show it to the learner, as the loop
    does; then end the episode."""
    k = kit(drift)
    for t in attempts:
        store.add(t)
        learner.observe(t, k)
    learner.end_episode()


def rows(store):
    """Every version of every skill and guardrail in the store."""
    k = store.knowledge
    return [(e.kind, e.key, e.version, e.status, e.body)
            for kind in (SKILL, GUARDRAIL) for key in [c.key for c in k.current(kind)]
            for e in k.history(kind, key)]


def building(attempt):
    """Two builds without wood (nothing happens), then two with it (a table)."""
    return ([attempt("use:place_table", {"wood": 0}) for _ in range(2)]
            + [attempt("use:place_table", {"wood": 1}, ["wood-1", TABLE], after={"wood": 0})
               for _ in range(2)])


@pytest.fixture
def learned(tmp_path):
    """A store with knowledge from a learning run on ``building``."""
    path = tmp_path / "exp.sqlite"
    with ExperienceStore(path) as store:
        feed(Learner(store, "learn"), store, building(Attempts()))
    return path


def test_learning_keeps_the_requirement_and_supersedes_the_nothing_new_guardrail(tmp_path):
    with ExperienceStore(tmp_path / "exp.sqlite") as store:
        learner = Learner(store, "learn")
        attempts = building(Attempts())
        failures, successes = attempts[:2], attempts[2:]
        feed(learner, store, failures)
        # It never worked: forbidden until something new is at hand.
        (gate,) = learner.guardrails.active()
        assert gate.novelty_gate and gate.root_cause == "no_effect"
        assert gate.evidence == [t.id for t in failures]
        assert learner.skills.get("use:place_table") is None
        feed(learner, store, successes)
        skill = learner.skills.get("use:place_table")
        assert skill.preconditions == ["wood>=1"] and skill.creates() == ["table"]
        # Now the evidence points at one requirement: its guardrail replaces the gate.
        (requirement,) = learner.guardrails.active()
        assert requirement.root_cause == "missing_requirement"
        assert requirement.trigger.none_of == ["wood>=1"]
        assert requirement.evidence == gate.evidence
        history = store.knowledge.history(GUARDRAIL, gate.id)
        assert [e.status for e in history] == ["active", "retired"]
        assert learner.guardrails.guardrails[gate.id].status == "retired"


def test_one_failure_gates_what_never_worked_and_names_no_requirement_of_what_works(tmp_path):
    with ExperienceStore(tmp_path / "exp.sqlite") as store:
        learner = Learner(store, "learn")
        attempt = Attempts()
        feed(learner, store, [attempt("use:place_table", {"wood": 0})])
        (gate,) = learner.guardrails.active()
        assert gate.novelty_gate
        blocking = learner.guardrails.blocking_subgoal
        assert blocking("use:place_table", situation({"wood": 0}).facts()) is gate
        assert blocking("use:place_table", situation({"wood": 1}).facts()) is None  # new
    with ExperienceStore(tmp_path / "other.sqlite") as store:
        learner = Learner(store, "learn")
        attempt = Attempts()
        feed(learner, store, building(attempt)[2:] + [attempt("use:place_table", {"wood": 0})])
        assert learner.skills.get("use:place_table") is not None
        assert learner.guardrails.active() == []


def test_frozen_uses_the_stored_knowledge_and_writes_none(learned):
    with ExperienceStore(learned) as store:
        before = rows(store)
        learner = Learner(store, "frozen")
        assert learner.skills.get("use:place_table").preconditions == ["wood>=1"]
        assert learner.guardrails.blocking_subgoal("use:place_table",
                                                   frozenset({"wood=0"})) is not None
        known = (repr(learner.skills.skills), repr(learner.guardrails.guardrails))
        # Evidence that would change what it knows: the table now fails with wood as well.
        attempt = Attempts("frozen-e0")
        feed(learner, store, [attempt("use:place_table", {"wood": 3}) for _ in range(8)])
        assert rows(store) == before
        assert (repr(learner.skills.skills), repr(learner.guardrails.guardrails)) == known
    with ExperienceStore(learned) as store:  # the same evidence, learning: it does change
        learner = Learner(store, "learn")
        attempt = Attempts("learn-e0")
        feed(learner, store, [attempt("use:place_table", {"wood": 3}) for _ in range(8)])
        assert learner.skills.get("use:place_table").status == "demoted"
        assert rows(store) != before


def test_off_knows_nothing_even_with_a_store_that_does(learned):
    with ExperienceStore(learned) as store:
        before = rows(store)
        assert before  # the store has skills and guardrails
        learner = Learner(store, "off")
        assert learner.skills.skills == {} and learner.guardrails.guardrails == {}
        assert learner.guardrails.blocking_subgoal("use:place_table",
                                                   frozenset({"wood=0"})) is None
        attempt = Attempts("off-e0")
        feed(learner, store, building(attempt))
        assert learner.skills.skills == {} and learner.guardrails.guardrails == {}
        assert rows(store) == before


def test_learning_starts_from_what_the_store_knows(learned):
    with ExperienceStore(learned) as store:
        learner = Learner(store, "learn")
        skill = learner.skills.get("use:place_table")
        assert skill is not None and skill.version >= 1
        # One more success at it: distilled with the stored attempts (earlier runs count).
        attempt = Attempts("second-e0")
        more = attempt("use:place_table", {"wood": 2}, ["wood-1", TABLE], after={"wood": 1})
        feed(learner, store, [more])
        again = learner.skills.get("use:place_table")
        assert again.successes == skill.successes + 1
        assert again.provenance == [*skill.provenance, more.id]


def test_an_unknown_mode_is_refused(tmp_path):
    with ExperienceStore(tmp_path / "exp.sqlite") as store, \
            pytest.raises(ValueError, match="unknown learning mode 'sometimes'"):
        Learner(store, "sometimes")


def test_off_plays_on_a_full_store_exactly_as_on_an_empty_one(table_store, tmp_path):
    """The baseline is a baseline wherever its store comes from: with learning off, neither
    stored knowledge nor the store's statistics of earlier runs change a single choice."""
    from cairn.runtime.config import load_config
    from cairn.runtime.loop import Agent

    from ..conftest import MANY_TREES_SEED, ROOT

    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 120, "learning": "off"})
    played = []
    for path in (table_store, tmp_path / "empty.sqlite"):
        with ExperienceStore(path) as store, Agent(config, store, None) as agent:
            episode = agent.run_episode(MANY_TREES_SEED, 0)
            played.append([t.subgoal.key for t in store.by_episode(episode.episode)])
    assert len(played[0]) > 10
    assert played[0] == played[1]


def test_what_a_run_learned_across_episodes_comes_back_and_a_broken_record_is_one_error(
        tmp_path):
    """The kit's and planner's memory is kept in the store after each episode; the next
    agent on the store starts with it, and an unreadable one stops it with a way out."""
    from cairn.experience.store import StoreError
    from cairn.runtime.config import load_config
    from cairn.runtime.loop import MEMORY, Agent

    from ..conftest import MANY_TREES_SEED, ROOT

    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 120})
    with ExperienceStore(tmp_path / "s.sqlite") as store, Agent(config, store, None) as agent:
        agent.run_episode(MANY_TREES_SEED, 0)
        walk = {k: (s.moved, s.blocked) for k, s in agent.kit.world.walk.items()}
        seen = set(agent.planner.seen_facts)
    assert walk and seen  # it walked on some kinds of tile and saw facts
    with ExperienceStore(tmp_path / "s.sqlite") as store, Agent(config, store, None) as agent:
        assert {k: (s.moved, s.blocked) for k, s in agent.kit.world.walk.items()} == walk
        assert agent.planner.seen_facts == seen
        store.knowledge.put(MEMORY, MEMORY, "active", {"kit": {"walk": [["grass"]]}})
    with ExperienceStore(tmp_path / "s.sqlite") as store, \
            pytest.raises(StoreError, match="DELETE FROM knowledge WHERE kind = 'memory'"):
        Agent(config, store, None)
