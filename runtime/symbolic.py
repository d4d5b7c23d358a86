"""The symbolic planner: chains learned skills backward from the goal, explores elsewhere.

The goal is reward. Skills that have earned reward are the targets (each once per episode,
as the task rewards a thing once; in play the cheapest first); their unmet preconditions are
reached through skills whose verified effects provide them (a counter that rises, a tile
kind that gets made), or by walking to a remembered tile. Counters that run down by
themselves are topped up with skills that raise them before they run out. Where no skill
applies it explores: interactions it never tried, actions its guardrails no longer forbid,
unseen ground, and experiments that gather something new for a subgoal that never worked
(``runtime.experiments``).
Guardrails veto subgoals; every failed attempt triggers a fresh plan from the current
state, so steps already achieved are kept and only the rest is repaired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cairn.experience.records import FACT_MAX_COUNT, Cause, ExperienceTuple, Subgoal
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.experiments import (
    Experimenting,
    Pursuit,
    holding_first,
    is_place,
    out_of_sight,
)
from cairn.runtime.planner import PlanContext, candidate_subgoals
from cairn.skills.library import SkillLibrary
from cairn.skills.model import Skill

MAX_DEPTH = 6
MAX_IDLE = 3
EXPLORE_SHARE = 0.25
"""Chance of exploring although a goal could be pursued (unless a need is pressing)."""
REACH_PENALTY, REACH_CAP = 0.1, 10.0
"""Where the kit guesses the steps before a subgoal can act (``PlanContext.reach``), each
step (up to the cap) lowers an experiment's score by the penalty: of two alike, the cheaper."""
DOUBT = 0.1
"""Chance, when goals remain, of trying one that lacks a single precondition (not what it
spends): a precondition learned by chance makes a skill tried only where it holds, so
nothing would ever contradict it; a success without it does, and a failure without it is
one more failure it explains."""
PROBATION = 0.1
"""Chance that a harm guardrail lets its subgoal through, to test it (see GuardrailSet)."""
NEED_FRACTION = 0.4
"""A self-depleting counter below this share of its highest value seen is a need."""
SCARCE = 10
"""A subgoal that never worked, tried fewer times than this by any episode, is the first
thing to explore: a few tries in other situations (other things held) tell whether it can
work at all, where a subgoal that failed hundreds of times has little left to tell."""


@dataclass
class WorldFacts:
    """What the planner may know about the world beyond the state: remembered kinds and
    which counters run down by themselves (both learned by the world model)."""

    known_kinds: set[str]
    depleting: set[str]
    highest: dict[str, int]
    mobile_near: list[str] = field(default_factory=list)
    """Kinds next to the agent that move by themselves."""


class SymbolicPlanner(Experimenting):
    def __init__(self, skills: SkillLibrary, guardrails: GuardrailSet,
                 rng: np.random.Generator,
                 world_facts: Callable[[], WorldFacts] | None = None,
                 experiments: bool = True):
        """``experiments``: make attempts only to learn from them (explore while a goal
        could be pursued, doubt, probation); a run that learns nothing from its attempts
        plays what it knows."""
        self.skills = skills
        self.guardrails = guardrails
        self.rng = rng
        self.world_facts = world_facts
        self.explore_share = EXPLORE_SHARE if experiments else 0.0
        self.doubt_share = DOUBT if experiments else 0.0
        self.probation = PROBATION if experiments else 0.0
        self.experiments = experiments
        self.rewarded_this_episode: set[str] = set()
        self.tried: dict[str, int] = {}
        self.failed_here: dict[tuple[str, int], int] = {}
        self.fruitless: dict[str, int] = {}
        """Kind -> attempts this episode at acting on it that did nothing and took no harm:
        what the defence reflex should leave alone."""
        self.seen_facts: set[str] = set()
        self.harmed = False
        self.idle_attempts = 0
        """Attempts in a row that took no env step: the state cannot change, so after a
        few the planner must pick something that moves."""
        self.last_reason = ""
        self.pursuit: Pursuit | None = None
        """The experiment under way, if any (see ``_pursue``)."""

    def reset(self) -> None:
        """Start of an episode: the task rewards each thing once per episode, so what was
        tried and rewarded is counted per episode (across episodes this planner learns only
        through skills and guardrails)."""
        self.rewarded_this_episode.clear()
        self.failed_here.clear()
        self.fruitless.clear()
        self.tried.clear()
        self.pursuit = None
        self.harmed = False
        self.idle_attempts = 0

    def memory(self) -> dict[str, Any]:
        return {"seen_facts": sorted(self.seen_facts)}

    def recall(self, memory: dict[str, Any]) -> None:
        self.seen_facts.update(memory.get("seen_facts", []))

    # -- choosing ----------------------------------------------------------------------------

    def next_subgoal(self, ctx: PlanContext) -> Subgoal:
        facts = ctx.state.facts()
        self.seen_facts |= facts
        world = self.world_facts() if self.world_facts else WorldFacts(set(), set(), {})
        if self.idle_attempts >= MAX_IDLE:
            self.last_reason = "unstick"
            return Subgoal("explore")
        defence = self._defend(world)
        if defence is not None:
            self.last_reason = f"defend: {defence.key}"
            return defence
        never = [s for s in candidate_subgoals(ctx)
                 if ctx.stats(s.key, None)[0] == 0 and self._allowed(s, facts, ctx)]
        if never:  # never tried anywhere, by any episode: the cheapest thing to learn from
            self.last_reason = "explore: never tried"
            if ctx.reach is not None:
                costs = [ctx.reach(s) for s in never]
                cheapest = min(costs)
                never = [s for s, c in zip(never, costs, strict=True) if c == cheapest]
            return never[int(self.rng.integers(len(never)))]
        if self.pursuit is not None:
            step = self._pursue(ctx, facts, world)
            if step is not None:
                self.last_reason = f"experiment: {step.key}"
                return step
        goals = self._goals(ctx, world)
        if goals and goals[0][0] != "need" and self.rng.random() < self.explore_share:
            goals = []  # leave room to explore even while goals remain
        if goals and self.rng.random() < self.doubt_share:
            doubted = self._doubt([skill for _, skill in goals], facts, ctx, world)
            if doubted is not None:
                self.last_reason = f"doubt: {doubted[0].subgoal} without {doubted[1]}"
                return Subgoal.parse(doubted[0].subgoal)
        for reason, skill in goals:
            step = self._first_step(skill, facts, ctx, world, set(), 0)
            if step is not None and self._allowed(step, facts, ctx):
                self.last_reason = f"{reason}: {skill.subgoal}"
                return step
        self.last_reason = "explore"
        return self._explore(ctx, facts, world)

    def _defend(self, world: WorldFacts) -> Subgoal | None:
        """Act on something that moves by itself next to the agent when the agent just
        got hurt, or when a harm guardrail names that kind (the generic reflex of hitting
        back; whether it helps is for the diagnosis to tell). A kind that twice took a
        blow for nothing, without hurting back, is left alone unless the agent was just
        hurt, and then tried after the others: a harm guardrail may name a bystander."""
        dangerous = self.guardrails.harmful_kinds()
        kinds = sorted(world.mobile_near, key=lambda k: (self.fruitless.get(k, 0), k))
        for kind in kinds:
            if not (self.harmed or (kind in dangerous and self.fruitless.get(kind, 0) < 2)):
                continue
            subgoal = Subgoal("interact", kind)
            if self.guardrails.blocking_subgoal(subgoal.key, frozenset()) is None \
                    and self.idle_attempts == 0:
                return subgoal
        return None

    def _goals(self, ctx: PlanContext, world: WorldFacts) -> list[tuple[str, Skill]]:
        goals = []
        for counter in sorted(world.depleting):
            high = world.highest.get(counter, 0)
            if high and ctx.state.counters.get(counter, 0) < NEED_FRACTION * high:
                goals += [("need", s) for s in self.skills.raising(counter)[:1]]
        todo = [s for s in self.skills.rewarding()
                if s.subgoal not in self.rewarded_this_episode]
        if self.experiments:  # learning: fewest preconditions first (see docs/learning.md)
            todo.sort(key=lambda s: (len(s.preconditions), -s.success_rate, s.subgoal))
        else:  # playing: the cheapest reward first, what a success costs once more for
            # each precondition (a rough count of what must be had first)
            todo.sort(key=lambda s: (s.steps_per_success * (1 + len(s.preconditions)),
                                     s.subgoal))
        goals += [("reward", s) for s in todo]
        return goals

    def _first_step(self, skill: Skill, facts: frozenset[str], ctx: PlanContext,
                    world: WorldFacts, visiting: set[str], depth: int) -> Subgoal | None:
        """The first subgoal on a path that ends with ``skill`` applied, or None."""
        if depth > MAX_DEPTH or skill.subgoal in visiting:
            return None
        visiting = visiting | {skill.subgoal}
        unmet = sorted((f for f in skill.preconditions if f not in facts), key=holding_first)
        if unmet:
            stay = any(is_place(f) for f in skill.preconditions if f in facts)
            return self._achieve(unmet[0], facts, ctx, world, visiting, depth, stay)
        subgoal = Subgoal.parse(skill.subgoal)
        if out_of_sight(subgoal, ctx, world):
            return None  # needs a tile not in sight; exploring may find one
        return subgoal

    def _doubt(self, skills: list[Skill], facts: frozenset[str], ctx: PlanContext,
               world: WorldFacts) -> tuple[Skill, str] | None:
        """A goal skill that could act now but for one precondition, and that precondition:
        not a level of a counter the skill spends (it plainly needs what it spends). The
        guardrail that mirrors the precondition (missing requirement) is what is doubted;
        any other guardrail still stands."""
        options = []
        for skill in skills:
            unmet = [f for f in skill.preconditions if f not in facts]
            if len(unmet) != 1 or not _doubtable(unmet[0], skill):
                continue
            subgoal = Subgoal.parse(skill.subgoal)
            if out_of_sight(subgoal, ctx, world):
                continue
            if self._allowed_without(subgoal, unmet[0], facts, ctx):
                options.append((skill, unmet[0]))
        return options[int(self.rng.integers(len(options)))] if options else None

    def _allowed_without(self, subgoal: Subgoal, fact: str, facts: frozenset[str],
                         ctx: PlanContext) -> bool:
        """Allowed, but for the guardrail that says it needs ``fact``: that is what the
        doubt tests."""
        for guard in self.guardrails.blocking_subgoal_all(subgoal.key, facts):
            if guard.root_cause != Cause.MISSING_REQUIREMENT or guard.trigger.none_of != [fact]:
                return False
        return self.failed_here.get((subgoal.key, ctx.condition), 0) < 2

    def _achieve(self, fact: str, facts: frozenset[str], ctx: PlanContext, world: WorldFacts,
                 visiting: set[str], depth: int, stay: bool = False) -> Subgoal | None:
        """A first step towards ``fact``. A kind to stand next to (or to have in view) is
        walked to where one is remembered, else made; with ``stay`` (a place the agent is
        at is needed too, and walking off would lose it) made here first, walked to only
        if it cannot be made."""
        if ">=" in fact:
            counter = fact.split(">=", 1)[0]
            for producer in self.skills.raising(counter):
                step = self._first_step(producer, facts, ctx, world, visiting, depth + 1)
                if step is not None and self._allowed(step, facts, ctx):
                    return step
            return None
        if is_place(fact) or fact.startswith("see:"):  # a kind comes into view nearby
            kind = fact.split(":", 1)[1]
            if kind in world.known_kinds and not stay:
                return Subgoal("approach", kind)
            for maker in self.skills.creating(kind):
                step = self._first_step(maker, facts, ctx, world, visiting, depth + 1)
                if step is not None and self._allowed(step, facts, ctx):
                    return step
            if kind in world.known_kinds:
                return Subgoal("approach", kind)
        return None

    def _allowed(self, subgoal: Subgoal, facts: frozenset[str], ctx: PlanContext) -> bool:
        blocking = self.guardrails.blocking_subgoal_all(subgoal.key, facts)
        if blocking and not (all(self.guardrails.on_probation(g) for g in blocking)
                             and self.rng.random() < self.probation):
            return False
        return self.failed_here.get((subgoal.key, ctx.condition), 0) < 2

    def _explore(self, ctx: PlanContext, facts: frozenset[str], world: WorldFacts) -> Subgoal:
        """Subgoals that never worked and were scarcely tried by any episode first; then
        experiments; then subgoals untried this episode; then skills that would reach a
        counter level never held (a new level may be what a forbidden subgoal was missing);
        then the least tried. An experiment chosen while learning is pursued over the next
        choices."""
        options = [s for s in candidate_subgoals(ctx) if self._allowed(s, facts, ctx)]
        novel = self._new_levels(ctx, facts)
        pursuits = dict(self._experiments(ctx, facts, world))
        options += [s for s in novel + list(pursuits) if s not in options]
        if not options:
            return Subgoal("explore")
        gated = {g.forbidden_subgoal for g in self.guardrails.active() if g.novelty_gate}
        scores = []
        for s in options:
            tried = self.tried.get(s.key, 0)
            score = 3.0 if tried == 0 else 1.0 / (1 + tried)
            if s.key in gated:
                score = 3.5  # it never worked, but something new is at hand: try it now
            if s in pursuits:
                score = 3.6  # a step towards trying a never-working subgoal anew
            elif s in novel:
                score = max(score, 2.5)
            if _scarce(ctx.stats(s.key, None)):
                score = 4.0
            if s.controller == "explore":
                score = 0.6
            elif ctx.reach is not None:
                score -= REACH_PENALTY * min(ctx.reach(s), REACH_CAP)
            scores.append(score + 0.5 * self.rng.random())
        choice = options[int(np.argmax(scores))]
        if choice in pursuits and self.experiments:
            self.pursuit = pursuits[choice]
        return choice

    def _new_levels(self, ctx: PlanContext, facts: frozenset[str]) -> list[Subgoal]:
        found = []
        visible = set(ctx.state.visible)
        for skill in self.skills.active():
            subgoal = Subgoal.parse(skill.subgoal)
            if subgoal.controller == "interact" and subgoal.target not in visible:
                continue
            for counter in skill.raises():
                level = ctx.state.counters.get(counter, 0) + 1
                if level <= FACT_MAX_COUNT and f"{counter}>={level}" not in self.seen_facts \
                        and skill.applicable(facts) and self._allowed(subgoal, facts, ctx):
                    found.append(subgoal)
                    break
        return found

    # -- feedback ----------------------------------------------------------------------------

    def on_attempt(self, attempt: ExperienceTuple, ctx: PlanContext) -> None:
        key = attempt.subgoal.key
        self.seen_facts |= attempt.post.facts()
        self.harmed = attempt.diagnosis.health_delta < 0
        self.idle_attempts = 0 if attempt.diagnosis.steps else self.idle_attempts + 1
        self.tried[key] = self.tried.get(key, 0) + 1
        if "reward" in attempt.diagnosis.effects or (
                attempt.diagnosis.success and key in {s.subgoal for s in self.skills.rewarding()}):
            self.rewarded_this_episode.add(key)  # a success that earned nothing: already had
        if attempt.subgoal.controller == "interact" and attempt.subgoal.target:
            target = attempt.subgoal.target
            if attempt.diagnosis.success:
                self.fruitless.pop(target, None)
            elif attempt.diagnosis.health_delta >= 0:
                self.fruitless[target] = self.fruitless.get(target, 0) + 1
        if not attempt.diagnosis.success:
            cell = (key, ctx.condition)
            self.failed_here[cell] = self.failed_here.get(cell, 0) + 1


def _scarce(stats: tuple[int, int]) -> bool:
    attempts, successes = stats
    return successes == 0 and 0 < attempts < SCARCE


def _doubtable(fact: str, skill: Skill) -> bool:
    """A precondition worth testing: anything but holding what the skill spends."""
    if ">=" not in fact:
        return True
    name, level = fact.split(">=", 1)
    return int(level) > skill.uses().get(name, 0)
