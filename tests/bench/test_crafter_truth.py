"""The diagnosis judge of ``bench/crafter_truth.py`` on real Crafter steps: claims that did
and did not happen, changes the agent did not cause, causes that the truth contradicts, and
one short real training run."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from crafter import objects

from cairn.envs.crafter import ACTIONS
from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.experience.store import ExperienceStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench/ is not installed: it runs from the checkout
from bench.crafter_truth import TruthAudit, audit_training, main  # noqa: E402


@pytest.fixture
def audit(small_world, crafter_config):
    audit = TruthAudit(crafter_config)
    audit.wrap(small_world).reset(seed=0)
    return audit


def stage(audit, faced=None, **inventory):
    """Put ``faced`` in front of the player and set its inventory (privileged: staging only),
    then take a no-op step so that the log starts from the staged world; returns the step."""
    crafter_env = audit.env.unwrapped._env
    player = crafter_env._player
    cell = tuple(player.pos + player.facing)
    if faced is not None:
        assert crafter_env._world[cell][1] is None, "a creature stands on the staged cell"
        crafter_env._world[cell] = faced
    player.inventory.update(inventory)
    return play(audit, "noop")


def play(audit, *actions):
    for action in actions:
        audit.env.step(ACTIONS.index(action))
    return audit.env.first + len(audit.env.log) - 1


def attempt(start, end, subgoal, effects=(), cause=Cause.SUCCESS, target=None, facing=(1, 0)):
    """An attempt over steps ``start``..``end`` as the agent would record it, ending at its
    own (0, 0) facing ``facing``; ``target`` defaults to the faced cell."""
    state = State(0, (0, 0), facing, {}, None, [], [])
    diagnosis = Diagnosis(cause == Cause.SUCCESS, cause, {}, 0.0, [], 0.0, None, 0, end - start,
                          effects=list(effects), target=target or facing)
    return ExperienceTuple("e", start, end, state, Subgoal.parse(subgoal), [], diagnosis, state)


def verdicts(audit, t):
    return {v.claimed: (v.verdict, v.truth) for v in audit.judge(t)}


def test_a_counter_claim_is_right_only_when_the_inventory_changed_by_as_much(audit):
    start = stage(audit, "tree")
    end = play(audit, "do")
    judged = verdicts(audit, attempt(start, end, "interact:tree", ["wood+1", "wood+2", "stone+1"]))
    assert judged["worked"] == ("right", "did collect_wood")
    assert judged["wood+1"][0] == "right"
    assert judged["wood+2"] == ("wrong", "wood+1")
    assert judged["stone+1"] == ("wrong", "stone+0")


def test_a_change_that_came_by_itself_is_uncaused_and_the_success_wrong(audit):
    start = stage(audit, "sand", health=5)
    audit.env.unwrapped._env._player._recover = 25  # health regenerates on the next step
    end = play(audit, "do")
    t = attempt(start, end, "interact:sand", ["health+1"])
    judged = verdicts(audit, t)
    assert judged["health+1"] == ("uncaused", "changed on no acting step")
    assert judged["worked"] == ("wrong", "nothing happened")
    audit.on_attempt(t)
    assert (audit.summary.successes.wrong, audit.summary.successes.right) == (1, 0)
    assert audit.summary.claims["counter"].uncaused == 1


def test_a_change_is_judged_at_the_true_target(audit):
    start = stage(audit, "grass", wood=5)
    end = play(audit, "place_table")
    right = attempt(start, end, "use:place_table", ["changed:0,0:grass>table", "wood-2"])
    assert {v for v, _ in verdicts(audit, right).values()} == {"right"}
    assert verdicts(audit, attempt(start, end, "use:place_table", ["changed:0,0:grass>stone"])
                    )["changed:0,0:grass>stone"] == ("wrong", "grass>table")
    behind = attempt(start, end, "use:place_table", ["changed:0,0:grass>table"], target=(-1, 0))
    assert verdicts(audit, behind)["changed:0,0:grass>table"][0] == "wrong"


@pytest.mark.parametrize("cause, staged, verdict", [
    (Cause.NO_EFFECT, {"faced": "sand"}, "right"),
    (Cause.NO_EFFECT, {"faced": "tree"}, "wrong"),           # it gave wood
    (Cause.MISSING_REQUIREMENT, {"faced": "stone"}, "right"),  # no pickaxe
    (Cause.MISSING_REQUIREMENT, {"faced": "stone", "wood_pickaxe": 1}, "wrong"),
    (Cause.DAMAGE_TAKEN, {"faced": "sand"}, "wrong"),        # health did not fall
])
def test_a_failure_cause_is_judged_against_what_really_happened(audit, cause, staged, verdict):
    start = stage(audit, **staged)
    end = play(audit, "do")
    t = attempt(start, end, f"interact:{staged['faced']}", cause=cause)
    assert verdicts(audit, t)[str(cause)][0] == verdict


def test_a_requirement_is_missing_by_crafters_own_rules(audit):
    start = stage(audit, "grass", wood=1)  # a pickaxe needs a table nearby
    end = play(audit, "make_wood_pickaxe")
    judged = verdicts(audit, attempt(start, end, "use:make_wood_pickaxe",
                                     cause=Cause.MISSING_REQUIREMENT))
    assert judged["missing_requirement"] == ("right", "requirement unmet")
    start = stage(audit, "table")
    end = play(audit, "make_wood_pickaxe")
    judged = verdicts(audit, attempt(start, end, "use:make_wood_pickaxe",
                                     cause=Cause.MISSING_REQUIREMENT))
    assert judged["missing_requirement"] == ("wrong", "it worked: did make_wood_pickaxe")


def test_a_short_training_run_checks_real_claims(crafter_config, tmp_path):
    config = dataclasses.replace(crafter_config, env=dataclasses.replace(
        crafter_config.env, kwargs={"size": 64, "area": (32, 32)}))
    summary = audit_training(config, budget=300, first_seed=0, store=tmp_path / "s.sqlite")
    with ExperienceStore(tmp_path / "s.sqlite") as store:
        assert store.count() == summary.attempts > 0  # every stored attempt was judged
    successes, causes = summary.successes, summary.causes.values()
    assert successes.checked > 0 and summary.claims["counter"].checked > 0
    assert 0.0 <= successes.share <= 1.0
    judged = successes.checked + successes.unchecked + sum(t.checked + t.unchecked for t in causes)
    assert judged == summary.attempts  # one mark per success, one cause per failure
    assert "success labels" in summary.table()
    assert json.loads(json.dumps(summary.to_dict()))["attempts"] == summary.attempts


def test_bad_budget_is_one_line_and_status_2(capsys):
    assert main(["--budget", "0"]) == 2
    assert capsys.readouterr().err.strip() == "cairn: error: --budget must be at least 1, got 0"


def test_a_creature_struck_down_is_judged_by_what_crafter_counts_not_by_its_cell(audit):
    crafter_env = audit.env.unwrapped._env
    player = crafter_env._player
    cell = tuple(player.pos + player.facing)
    start = stage(audit)
    crafter_env._world[cell] = "grass"
    cow = objects.Cow(crafter_env._world, cell)
    cow.move = lambda *_: False  # it stays where it was put
    crafter_env._world.add(cow)
    hit = play(audit, "do")
    claim = "changed:0,0:cow>grass"
    assert verdicts(audit, attempt(start, hit, "interact:cow", [claim]))[claim] == (
        "wrong", "no eat_cow")  # one blow: still standing
    end = play(audit, "do", "do")
    assert verdicts(audit, attempt(start, end, "interact:cow", [claim]))[claim] == (
        "right", "eat_cow")
