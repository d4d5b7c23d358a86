"""Backward chaining in the symbolic planner, on hand-written skills (pure logic)."""

import numpy as np

from cairn.experience.records import (
    FACT_MAX_COUNT,
    Cause,
    Diagnosis,
    ExperienceTuple,
    State,
    Subgoal,
    change_effect,
    condition_signature,
)
from cairn.guardrails.model import Guardrail, Trigger
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.planner import PlanContext
from cairn.runtime.symbolic import SCARCE, SymbolicPlanner, WorldFacts
from cairn.skills.library import SkillLibrary
from cairn.skills.model import Skill


def skill(subgoal, pre=(), verify=(), rewarded=0):
    return Skill(subgoal, [], list(pre), list(verify), successes=5, attempts=5,
                 rewarded=rewarded)


def context(counters, near=(), visible=("tree", "rock")):
    state = State(0, (0, 0), (1, 0), dict(counters), "grass",
                  [[None, k, None] for k in near] or [[None]], list(visible))
    return PlanContext(state, condition_signature(state.predicates()), ["make_x"], False,
                       lambda *_: (1, 1))  # everything tried (and worked) once before


def planner(guards=None, known=("tree", "bench"), experiments=True):
    library = SkillLibrary()
    library.update(skill("interact:tree", verify=["wood+1"]))
    library.update(skill("use:place_bench", pre=["wood>=2"],
                         verify=[change_effect(0, 0, "grass", "bench")]))
    library.update(skill("use:make_x", pre=["near:bench", "wood>=1"], verify=["x+1"],
                         rewarded=3))
    facts = WorldFacts(set(known), set(), {})
    planner = SymbolicPlanner(library, guards or GuardrailSet(), np.random.default_rng(0),
                              lambda: facts, experiments=experiments)
    planner.explore_share = 0.0  # always pursue goals when there are any
    planner.doubt_share = 0.0  # and by their preconditions
    return planner


def test_without_experiments_a_goal_is_always_pursued_while_there_is_one():
    def picks(experiments):
        library = planner().skills
        p = SymbolicPlanner(library, GuardrailSet(), np.random.default_rng(0),
                            lambda: WorldFacts({"tree", "bench"}, set(), {}),
                            experiments=experiments)
        ctx = context({"wood": 1}, near=["bench"])
        return [p.next_subgoal(ctx).key for _ in range(400)]

    learning, playing = picks(True), picks(False)
    assert set(playing) == {"use:make_x"}
    # Learning, a quarter of its choices explore (the goal is among what it may try then).
    assert 0.05 < 1 - learning.count("use:make_x") / len(learning) < 0.3


def test_in_play_the_cheapest_reward_comes_first():
    p = planner(experiments=False)
    # Resting needs nothing, but a success takes 36 steps and comes one time in two: 72,
    # against 1 step (three times over, for its two preconditions) for make_x.
    rest = Skill("use:rest", [{"controller": "use", "median_steps": 36}], [], ["energy+1"],
                 successes=5, attempts=10, rewarded=5)
    p.skills.update(rest)
    assert rest.steps_per_success == 72
    ctx = context({"wood": 1}, near=["bench"])
    assert p.next_subgoal(ctx).key == "use:make_x"
    p.rewarded_this_episode.add("use:make_x")
    assert p.next_subgoal(ctx).key == "use:rest"


def test_missing_counter_is_gathered_first():
    assert planner().next_subgoal(context({"wood": 0})).key == "interact:tree"


def test_a_remembered_tile_is_approached():
    assert planner().next_subgoal(context({"wood": 1})).key == "approach:bench"


def test_an_unseen_tile_is_made_by_the_skill_that_creates_it():
    p = planner(known=("tree",))
    assert p.next_subgoal(context({"wood": 1})).key == "interact:tree"  # wood>=2 to build
    assert p.next_subgoal(context({"wood": 3})).key == "use:place_bench"


def test_a_kind_to_have_in_view_is_walked_to():
    p = planner(known=("tree", "bench", "oven"))
    p.skills.update(skill("use:make_v", pre=["see:oven", "wood>=1"], verify=["v+1"],
                          rewarded=3))
    p.rewarded_this_episode.add("use:make_x")
    assert p.next_subgoal(context({"wood": 1})).key == "approach:oven"
    assert p.next_subgoal(context({"wood": 1}, visible=("oven",))).key == "use:make_v"


def test_the_goal_itself_once_every_precondition_holds():
    p = planner()
    assert p.next_subgoal(context({"wood": 1}, near=["bench"])).key == "use:make_x"


def test_a_guardrail_vetoes_the_chain_it_blocks():
    guards = GuardrailSet()
    guards.update(Guardrail("test", "test", Trigger(), "subgoal interact:tree", "subgoal", [1]))
    choice = planner(guards).next_subgoal(context({"wood": 0}))
    assert choice.key != "interact:tree"


def test_with_nothing_to_gather_a_never_working_action_is_tried_as_a_sibling_worked():
    guards = GuardrailSet()
    # make_y failed holding two wood; no tree is in sight to gather more.
    guards.update(Guardrail("no_effect", "test",
                            Trigger(within=[["facing:grass", "wood>=1", "wood>=2"]]),
                            "subgoal use:make_y", "subgoal", [1, 2]))
    p = planner(guards, known=())
    p.skills.update(skill("use:make_x", pre=["near:bench", "wood>=1"],  # raises no counter
                          verify=[change_effect(0, 0, "grass", "x")], rewarded=3))
    p.rewarded_this_episode.add("use:make_x")  # its own goal is done this episode
    ctx = context({"wood": 2}, visible=("rock",))
    ctx.by_name = ["make_y"]
    assert guards.blocking_subgoal("use:make_y", ctx.state.facts()) is not None
    # Its sibling make_x worked at a bench: build one, to stand by it.
    assert p.next_subgoal(ctx).key == "use:place_bench"
    assert p.pursuit.facts == {"near:bench"}
    built = context({"wood": 0}, near=["bench"], visible=("rock", "bench"))
    built.by_name = ["make_y"]
    assert p.next_subgoal(built).key == "use:make_y"


def gated_make_y(held):
    """make_y failed at the bench holding up to ``held`` wood; resting raises energy, a
    counter the gate disregards."""
    guards = GuardrailSet()
    failed = ["facing:grass", "near:bench"] + [f"wood>={n}" for n in range(1, held + 1)]
    guards.update(Guardrail("no_effect", "test", Trigger(within=[failed], ignore=["energy"]),
                            "subgoal use:make_y", "subgoal", [1, 2]))
    p = planner(guards)
    p.skills.update(skill("use:rest", verify=["energy+1"]))
    p.skills.update(skill("use:make_x", pre=["near:bench", "wood>=1"],
                          verify=["wood-1", change_effect(0, 0, "grass", "x")], rewarded=3))
    return p


def at_bench(wood):
    ctx = context({"wood": wood, "energy": 1}, near=["bench"])
    ctx.by_name = ["make_y"]
    return ctx


def test_an_experiment_gathers_twice_what_any_failure_held_and_keeps_it_from_the_goals():
    p = gated_make_y(held=2)
    p.explore_share = 1.0  # explore now
    # Twice the most a failure held (wood>=4), before standing by a tree (a tie); not
    # more energy, which the gate disregards.
    assert p.next_subgoal(at_bench(2)).key == "interact:tree"
    assert p.pursuit.facts == {"wood>=4"} and p.pursuit.subgoal.key == "use:make_y"
    p.explore_share = 0.0  # goals would come first now, and make_x spends wood
    assert p.next_subgoal(at_bench(3)).key == "interact:tree"  # new already, but not 4
    assert p.next_subgoal(at_bench(4)).key == "use:make_y"  # tried with all of it
    assert p.pursuit is None
    assert p.next_subgoal(at_bench(4)).key == "use:make_x"  # the goals again


def test_an_experiment_that_cannot_gather_more_tries_with_what_it_has_or_gives_up():
    p = gated_make_y(held=1)
    p.explore_share = 1.0
    assert p.next_subgoal(at_bench(1)).key == "interact:tree"
    assert p.pursuit.facts == {"wood>=2"}
    p.explore_share = 0.0
    p.skills.update(skill("interact:tree", pre=["near:axe"], verify=["wood+1"]))  # no axe
    assert p.next_subgoal(at_bench(1)).key == "use:make_x"  # still forbidden: given up
    assert p.pursuit is None


def test_what_never_worked_and_was_scarcely_tried_is_explored_before_a_lifted_gate():
    def choices(rock_attempts):
        p = gated_make_y(held=1)
        p.explore_share = 1.0
        ctx = at_bench(2)  # two wood: new to make_y's gate, which lets it through
        assert p.guardrails.blocking_subgoal("use:make_y", ctx.state.facts()) is None
        ctx.stats = lambda key, _: (rock_attempts, 0) if key == "interact:rock" else (50, 5)
        return {p.next_subgoal(ctx).key for _ in range(30)}

    assert choices(1) == {"interact:rock"}  # failed once: a few more tries tell more
    assert choices(SCARCE) == {"use:make_y"}  # failed often: the lifted gate comes first


def test_standing_at_one_place_a_skill_needs_the_other_is_made_here_not_walked_to():
    p = planner(known=("tree", "bench", "oven"))
    p.skills.update(skill("use:place_oven", pre=["stone>=1"],
                          verify=["stone-1", change_effect(0, 0, "grass", "oven")]))
    p.skills.update(skill("use:make_z", pre=["near:bench", "near:oven"], verify=["z+1"],
                          rewarded=3))
    p.rewarded_this_episode.add("use:make_x")
    assert p.next_subgoal(context({"stone": 1}, near=["bench"])).key == "use:place_oven"
    # Nothing to make one with: the remembered one is walked to.
    assert p.next_subgoal(context({"stone": 0}, near=["bench"])).key == "approach:oven"
    # Standing at neither: walked to, one after the other.
    assert p.next_subgoal(context({"stone": 1})).key == "approach:bench"


def test_an_experiment_aims_no_higher_than_a_fact_can_say():
    p = gated_make_y(held=6)
    p.explore_share = 1.0
    assert p.next_subgoal(at_bench(6)).key == "interact:tree"
    assert p.pursuit.facts == {f"wood>={FACT_MAX_COUNT}"}  # not twice six
    p = gated_make_y(held=FACT_MAX_COUNT)
    p.explore_share = 1.0
    p.next_subgoal(at_bench(FACT_MAX_COUNT))
    assert p.pursuit.facts == {"near:tree"}  # no more wood can be new


def test_an_experiment_keeps_the_place_it_stands_at_and_makes_the_other_here():
    guards = GuardrailSet()
    full = ["facing:grass"] + [f"{counter}>={n}" for n in range(1, FACT_MAX_COUNT + 1)
                               for counter in ("wood", "x")]
    # make_w failed by the bench and by the oven, never by both, holding all it could.
    guards.update(Guardrail("no_effect", "test",
                            Trigger(within=[full + ["near:bench"], full + ["near:oven"]]),
                            "subgoal use:make_w", "subgoal", [1, 2]))
    p = planner(guards, known=("tree", "bench", "oven"))
    p.explore_share = 1.0
    ctx = context({"wood": FACT_MAX_COUNT, "x": FACT_MAX_COUNT}, near=["oven"])
    ctx.by_name = ["make_w"]
    assert p.next_subgoal(ctx).key == "use:place_bench"  # not a walk to the bench
    assert p.pursuit.facts == {"near:bench", "near:oven"}


def test_a_kind_made_only_to_be_stood_by_is_sought_before_more_of_a_counter():
    def pursued(oven_worked):
        guards = GuardrailSet()
        guards.update(Guardrail("no_effect", "test", Trigger(within=[["facing:grass", "wood>=1"]]),
                                "subgoal use:make_w", "subgoal", [1, 2]))
        p = planner(guards, known=("tree", "bench", "oven"))
        p.skills.update(skill("use:place_oven", pre=["stone>=1"],
                              verify=["stone-1", change_effect(0, 0, "grass", "oven")]))
        p.skills.update(skill("use:place_bench", pre=["wood>=2"],  # it uses wood up
                              verify=["wood-2", change_effect(0, 0, "grass", "bench")]))
        p.explore_share = 1.0
        ctx = context({"wood": 1})
        ctx.by_name = ["make_w"]
        ctx.stats = lambda key, _: (3, int(oven_worked)) if key == "interact:oven" else (3, 1)
        assert p.next_subgoal(ctx) is not None
        return p.pursuit.facts

    assert pursued(oven_worked=False) == {"near:oven"}
    assert pursued(oven_worked=True) == {"wood>=2"}  # a neighbour like any other


def test_of_what_nothing_uses_up_an_experiment_seeks_one_not_more():
    p = gated_make_y(held=2)
    p.skills.update(skill("use:make_x", pre=["near:bench", "wood>=1"],  # now spends none
                          verify=[change_effect(0, 0, "grass", "x")], rewarded=3))
    p.explore_share = 1.0
    p.next_subgoal(at_bench(2))
    assert p.pursuit.facts == {"near:tree"}  # not wood>=4, nor wood>=3: it is had


def test_what_was_never_tried_anywhere_comes_first():
    p = planner()
    ctx = context({"wood": 1}, near=["bench"])
    ctx.stats = lambda key, _: (0, 0) if key == "interact:rock" else (3, 1)
    assert p.next_subgoal(ctx).key == "interact:rock"


def test_of_the_never_tried_the_one_the_kit_reaches_soonest_comes_first():
    ctx = context({}, visible=("tree", "rock", "sky"))
    ctx.stats = lambda key, _: (0, 0)
    steps = {"interact:tree": 4.0, "interact:rock": 2.0, "interact:sky": float("inf"),
             "use:make_x": 3.0, "explore": 6.0}
    ctx.reach = lambda subgoal: steps[subgoal.key]
    chosen = {planner().next_subgoal(ctx).key for _ in range(20)}
    assert chosen == {"interact:rock"}
    steps["interact:tree"] = 2.0  # a tie: either, by the planner's own generator
    picks = set()
    for seed in range(20):
        p = planner()
        p.rng = np.random.default_rng(seed)
        picks.add(p.next_subgoal(ctx).key)
    assert picks == {"interact:rock", "interact:tree"}


def test_a_goal_is_tried_now_and_then_without_its_one_missing_precondition():
    p = planner()
    p.doubt_share = 0.5
    ctx = context({"wood": 1})  # make_x wants to be near the bench as well
    picks = [p.next_subgoal(ctx).key for _ in range(200)]
    assert 60 < picks.count("use:make_x") < 140  # the doubt
    assert set(picks) == {"use:make_x", "approach:bench"}
    assert p.last_reason in ("doubt: use:make_x without near:bench", "reward: use:make_x")
    # Never without what it spends; more of it than it spends is doubted.
    p.skills.update(skill("use:make_x", pre=["near:bench", "wood>=1"],
                          verify=["wood-1", "x+1"], rewarded=3))
    assert {p.next_subgoal(context({"wood": 0}, near=["bench"])).key
            for _ in range(50)} == {"interact:tree"}
    p.skills.update(skill("use:make_x", pre=["near:bench", "wood>=3"],
                          verify=["wood-1", "x+1"], rewarded=3))
    assert {p.next_subgoal(context({"wood": 1}, near=["bench"])).key
            for _ in range(50)} == {"interact:tree", "use:make_x"}


def test_a_doubt_sets_aside_the_guardrail_that_mirrors_the_precondition_only():
    mirror = Guardrail("missing_requirement", "test", Trigger(none_of=["near:bench"]),
                       "subgoal use:make_x", "subgoal", [1, 2, 3])
    harm = Guardrail("damage_taken", "test", Trigger(all_of=["wood>=1"]),
                     "subgoal use:make_x", "subgoal", [4])
    for guards, doubted in (([mirror], True), ([mirror, harm], False)):
        store = GuardrailSet()
        for g in guards:
            store.update(g)
        p = planner(store)
        p.doubt_share = 1.0
        picks = {p.next_subgoal(context({"wood": 1})).key for _ in range(30)}
        assert ("use:make_x" in picks) is doubted, picks


def attempt(ctx, key, success, effects=(), health=0):
    diagnosis = Diagnosis(success, Cause.SUCCESS if success else Cause.NO_EFFECT, {}, 0.0, [],
                          1.0 if success else 0.0, None, health, 3, effects=list(effects))
    return ExperienceTuple("e", 0, 3, ctx.state, Subgoal.parse(key), [], diagnosis, ctx.state)


def test_a_goal_that_worked_without_reward_was_already_rewarded_this_episode():
    p = planner()
    ctx = context({"wood": 1}, near=["bench"])
    assert p.next_subgoal(ctx).key == "use:make_x"
    p.on_attempt(attempt(ctx, "use:make_x", True, ["x+1"]), ctx)  # the reward came earlier
    assert p.next_subgoal(ctx).key != "use:make_x"
    p.reset()
    assert p.next_subgoal(ctx).key == "use:make_x"
    p.on_attempt(attempt(ctx, "use:make_x", False), ctx)  # a failure proves nothing
    assert p.next_subgoal(ctx).key == "use:make_x"


def defending(harm_kinds=("bug",), near=("bug", "cat")):
    guards = GuardrailSet()
    for i, kind in enumerate(harm_kinds):
        guards.update(Guardrail("damage_taken", "test", Trigger(all_of=[f"near:{kind}"]),
                                "subgoal interact:tree", "subgoal", [i]))
    p = planner(guards)
    p.world_facts = lambda: WorldFacts({"tree", "bench"}, set(), {}, list(near))
    return p


def test_a_kind_a_harm_guardrail_names_is_struck_until_blows_at_it_twice_do_nothing():
    p = defending(near=["bug"])
    ctx = context({"wood": 1}, near=["bench"])
    assert p.next_subgoal(ctx).key == "interact:bug"
    assert p.last_reason == "defend: interact:bug"
    p.on_attempt(attempt(ctx, "interact:bug", False), ctx)
    assert p.next_subgoal(ctx).key == "interact:bug"
    p.on_attempt(attempt(ctx, "interact:bug", False, health=-2), ctx)  # it hit back
    assert p.next_subgoal(ctx).key == "interact:bug"
    p.on_attempt(attempt(ctx, "use:make_x", False), ctx)  # no harm since the hit
    p.on_attempt(attempt(ctx, "interact:bug", False), ctx)
    assert p.next_subgoal(ctx).key == "use:make_x"  # two blows for nothing: a bystander
    p.reset()
    assert p.next_subgoal(ctx).key == "interact:bug"  # a new episode, a new look


def test_when_hurt_the_kind_not_yet_struck_for_nothing_comes_first():
    p = defending(("bug", "cat"))
    ctx = context({"wood": 1}, near=["bench"])
    for _ in range(2):
        p.on_attempt(attempt(ctx, "interact:bug", False), ctx)
    assert p.next_subgoal(ctx).key == "interact:cat"
    p.on_attempt(attempt(ctx, "use:make_x", False, health=-2), ctx)
    assert p.next_subgoal(ctx).key == "interact:cat"
    for _ in range(2):
        p.on_attempt(attempt(ctx, "interact:cat", False), ctx)
    assert p.next_subgoal(ctx).key == "use:make_x"
    p.on_attempt(attempt(ctx, "use:make_x", False, health=-2), ctx)
    assert p.next_subgoal(ctx).key in ("interact:bug", "interact:cat")  # hurt: strike back
