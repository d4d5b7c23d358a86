"""Experiments: how the symbolic planner looks for what a never-working subgoal lacks.

A subgoal that never worked is forbidden by a "nothing new" guardrail until something is
at hand that no failure had. An experiment picks such a thing within reach (more of a
counter a skill raises, or a remembered kind to stand next to), gathers it over the next
choices while the goals wait, and then tries the subgoal with it. An amount needed is
unknown: a counter is aimed at twice the most any failure held, so a few tries find it.
See docs/learning.md ("Experiments that gather").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cairn.experience.records import FACT_MAX_COUNT, Subgoal
from cairn.runtime.planner import PlanContext

if TYPE_CHECKING:
    from cairn.guardrails.model import Guardrail
    from cairn.runtime.symbolic import WorldFacts

MAX_EXPERIMENT_FACTS = 3
PURSUIT_STEPS = 25
"""Choices an experiment may take to gather what it is to be tried with."""


@dataclass
class Pursuit:
    """An experiment under way: reach ``facts``, then try ``subgoal`` (which never worked
    with what was at hand before), within ``left`` more choices."""

    subgoal: Subgoal
    facts: frozenset[str]
    left: int


class Experimenting:
    """The experiment half of ``SymbolicPlanner`` (which supplies ``skills``,
    ``guardrails``, ``pursuit``, ``_achieve`` and ``_allowed``)."""

    def _experiments(self, ctx: PlanContext, facts: frozenset[str],
                     world: WorldFacts) -> list[tuple[Subgoal, Pursuit]]:
        """First steps towards trying a never-working subgoal with something new at hand:
        for a subgoal its "nothing new" guardrail forbids now, a few facts within reach
        (more of a counter a skill raises, remembered kinds to stand next to) that would
        lift it; the first step gets one of them, things to hold first. Each comes with
        the pursuit that carries it on over the next choices."""
        gated = [g for g in self.guardrails.active() if g.novelty_gate
                 and g.forbidden_subgoal is not None and g.trigger.holds(facts)]
        if not gated:
            return []
        neighbours = [f"near:{kind}" for kind in sorted(world.known_kinds)]
        stations = {f"near:{kind}" for kind in world.known_kinds if self._station(kind, ctx)}
        active = self.skills.active()
        spent = {name for skill in active for name in skill.uses()}
        raised = {name: name in spent for name in sorted(
            {name for skill in active for name in skill.raises()})}
        steps: list[tuple[Subgoal, Pursuit]] = []
        for guard in gated:
            found = self._lift(guard, facts, neighbours, stations, raised, ctx, world) or \
                self._borrow(guard, facts, ctx, world)
            if found is not None and found[0] not in (step for step, _ in steps):
                target = Subgoal.parse(guard.forbidden_subgoal)
                steps.append((found[0], Pursuit(target, frozenset(found[1]), PURSUIT_STEPS)))
        return steps

    def _borrow(self, guard: Guardrail, facts: frozenset[str], ctx: PlanContext,
                world: WorldFacts) -> tuple[Subgoal, set[str]] | None:
        """When no single fact within reach would do: what made a sibling work (the
        preconditions of a known skill with the same controller, another action used by
        name, say), if holding them would be new for the forbidden subgoal."""
        controller = Subgoal.parse(guard.forbidden_subgoal).controller
        siblings = sorted((s for s in self.skills.active()
                           if Subgoal.parse(s.subgoal).controller == controller),
                          key=lambda s: (len(s.preconditions), s.subgoal))
        for sibling in siblings:
            wanted = set(sibling.preconditions) - facts
            if not wanted or guard.trigger.holds(facts, wanted):
                continue
            step = self._first_of(wanted, facts, ctx, world)
            if step is not None:
                return step, wanted
        return None

    def _station(self, kind: str, ctx: PlanContext) -> bool:
        """A kind the agent can make that never gave anything when acted on: there, it
        seems, to be stood by (a sibling may need it near)."""
        attempts, successes = ctx.stats(f"interact:{kind}", None)
        return attempts > 0 and successes == 0 and bool(self.skills.creating(kind))

    def _lift(self, guard: Guardrail, facts: frozenset[str], neighbours: list[str],
              stations: set[str], raised: dict[str, bool], ctx: PlanContext,
              world: WorldFacts) -> tuple[Subgoal, set[str]] | None:
        """Greedy: add the reachable fact that the most still-covering failures lacked,
        until no failure had everything (at most a few facts); then take a first step.
        ``raised``: each counter a skill raises, and whether some skill spends it.

        Candidates are facts the gate counts (not levels of counters that change by
        themselves): more of a counter some skill spends, aimed at twice the most any
        failure held (an amount needed is unknown: doubling finds it in a few tries) but
        never past the highest level a fact names; one of a counter nothing spends (a
        tool, say); a remembered kind to stand next to. On a tie a counter or a station
        (a kind made to be stood by, ``_station``) comes before another neighbour (that
        changes by itself, and the gate retries with it anyway), the fewest to gather
        first. A fact with no way to it from here is passed over for the next. A kind the
        agent stands next to, without which what is added would not be new, is kept too:
        the other is then made here rather than walked to."""
        held = ctx.state.counters
        covering = guard.trigger.covering(facts)
        levels = set()
        for name, used_up in raised.items():
            have = held.get(name, 0)
            # what nothing uses up is had or not: no amount of it to find
            level = min(max(have + 1, 2 * _most(name, covering)), FACT_MAX_COUNT) \
                if used_up else 1
            if name not in guard.trigger.ignore and level > have:
                levels.add(f"{name}>={level}")
        reachable = sorted((levels | set(neighbours)) - facts)
        added: set[str] = set()
        step = None
        for _ in range(MAX_EXPERIMENT_FACTS):
            covering = guard.trigger.covering(facts, added)
            if not covering:
                break
            gains = {f: sum(f not in w for w in covering) for f in reachable if f not in added}
            ranked = sorted((f for f in gains if gains[f]), key=lambda f: (
                -gains[f], ">=" not in f and f not in stations, _to_gather(f, held), f))
            for fact in ranked:  # the best one there is a way to
                first = self._first_of({fact}, facts, ctx, world)
                if first is not None:
                    added.add(fact)
                    step = step or first
                    break
            else:
                return None
        if step is None or guard.trigger.holds(facts, added):
            return None
        kept = {f for f in facts if f.startswith("near:")
                and guard.trigger.holds(facts - {f}, added)}
        if kept:  # walking off to what is added would lose them: make it here if it can be
            step = self._first_of(added | kept, facts, ctx, world) or step
        return step, added | kept

    def _first_of(self, wanted: set[str] | frozenset[str], facts: frozenset[str],
                  ctx: PlanContext, world: WorldFacts) -> Subgoal | None:
        """An allowed first step towards one of ``wanted`` (things to hold first; a kind
        to stand next to is made here if a wanted place is already held)."""
        stay = any(is_place(f) for f in wanted & facts)
        for fact in sorted(wanted - facts, key=holding_first):
            step = self._achieve(fact, facts, ctx, world, set(), 0, stay)
            if step is not None and self._allowed(step, facts, ctx):
                return step
        return None

    def _pursue(self, ctx: PlanContext, facts: frozenset[str],
                world: WorldFacts) -> Subgoal | None:
        """The next step of the experiment under way: a step towards what the subgoal is
        to be tried with, and the subgoal itself once all of it is at hand (or no more can
        be gathered) and the gate lets it through. None (and the pursuit ends) when it is
        done or stuck. While it lasts, goals wait: they would spend what is gathered."""
        pursuit = self.pursuit
        pursuit.left -= 1
        if pursuit.left >= 0 and not pursuit.facts <= facts:
            step = self._first_of(pursuit.facts, facts, ctx, world)
            if step is not None:
                return step
        self.pursuit = None
        if self._allowed(pursuit.subgoal, facts, ctx) \
                and not out_of_sight(pursuit.subgoal, ctx, world):
            return pursuit.subgoal
        return None


def is_place(fact: str) -> bool:
    """A fact about where the agent stands (next to or facing a kind)."""
    return fact.startswith(("near:", "facing:"))


def holding_first(fact: str) -> tuple[bool, str]:
    """Sort key: things to hold before places to stand or kinds to see (walking off to
    gather would undo them)."""
    return is_place(fact) or fact.startswith("see:"), fact


def out_of_sight(subgoal: Subgoal, ctx: PlanContext, world: WorldFacts) -> bool:
    """A subgoal that acts on a kind neither in view nor remembered."""
    return subgoal.controller in ("interact", "approach") and subgoal.target not in \
        world.known_kinds | set(ctx.state.visible)


def _most(counter: str, seen: list[set[str]]) -> int:
    """The highest level of ``counter`` in any of the fact sets."""
    prefix = f"{counter}>="
    return max((int(f[len(prefix):]) for facts in seen for f in facts if f.startswith(prefix)),
               default=0)


def _to_gather(fact: str, held: dict[str, int]) -> int:
    """How many more of a counter a level needs (0 for other facts)."""
    if ">=" not in fact:
        return 0
    name, level = fact.split(">=", 1)
    return int(level) - held.get(name, 0)
