"""Generic controllers: the only ways the agent acts, none of them knowing a game's rules.

A controller is a generator: it yields action *names*, the executor steps the env and
updates the world model, and the controller reads the world before yielding the next one.
Its return value is an ``Outcome`` saying how far it got and whether it saw an effect.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from cairn.experience.judging import ControllerTraits
from cairn.experience.records import Subgoal
from cairn.runtime.config import ActionsConfig, AgentConfig
from cairn.runtime.world import Direction, WorldModel


@dataclass
class Outcome:
    """How a controller's attempt went, in its own terms (the diagnosis judges it)."""

    effect: bool = False
    target_visible: bool = True
    path_found: bool = True
    reached: bool = True
    distance_start: float | None = None
    distance_end: float | None = None
    target: tuple[int, int] | None = None
    target_before: str | None = None
    removed: bool = False
    """The target, a kind that wanders, was struck from the world (see AttemptView.removed)."""
    detail: str = ""


@dataclass
class AttemptView:
    """What a controller may read while it runs: the world and what changed so far."""

    world: WorldModel
    counters_start: dict[str, int]
    reward: float = 0.0
    events: list[str] = field(default_factory=list)

    def effect(self, target: tuple[int, int] | None, kind_before: str | None) -> bool:
        """Did the action do something: a reward, a counter rising that does not rise on
        its own, or the target tile turning into something else (unless the target is a
        kind that wanders off by itself)? A loss alone is a cost or a blow, not an effect."""
        if self.reward > 0:
            return True
        changes = self.world.unexplained_changes(self.counters_start, self.world.percept.counters)
        if any(change > 0 for change in changes.values()):
            return True
        if target is None or self.world.mobile(kind_before):
            return False
        after = self.world.kind_at(target)
        return after != kind_before and not self.world.mobile(after)

    def removed(self, target: tuple[int, int], kind: str, in_view_before: int) -> bool:
        """Is ``kind`` gone from ``target`` with one fewer of it in view than before the
        action? One that stepped aside is still in view; one struck down is not. This is
        how the agent sees a blow land on something that wanders and carries nothing off."""
        world = self.world
        return world.kind_at(target) != kind and world.percept.count(kind) < in_view_before


Controller = Generator[str, None, Outcome]

#: What distillation must know of these controllers (it knows none by name).
TRAITS = ControllerTraits(
    walking=frozenset({"interact", "approach"}),
    unlearned=frozenset({"explore", "approach"}),
    by_effect=frozenset({"interact", "use"}),
)
MAX_PLANS = 4


class Controllers:
    """Builds the controller for a subgoal from the action roles in the config."""

    def __init__(self, actions: ActionsConfig, agent: AgentConfig, rng: np.random.Generator):
        self.actions = actions
        self.agent = agent
        self.rng = rng
        self.move_names = {tuple(d): name for name, d in actions.moves.items()}

    def start(self, subgoal: Subgoal, view: AttemptView) -> Controller:
        if subgoal.controller == "interact" and subgoal.target:
            return self.interact(view, subgoal.target)
        if subgoal.controller == "approach" and subgoal.target:
            return self.approach(view, subgoal.target)
        if subgoal.controller == "use" and subgoal.target:
            return self.use(view, subgoal.target)
        if subgoal.controller == "explore":
            return self.explore(view)
        if subgoal.controller == "sleep" and self.actions.sleep:
            return self.sleep(view)
        raise ValueError(f"no controller for subgoal '{subgoal.key}'")

    def move(self, direction: Direction) -> str:
        return self.move_names[direction]

    def go_next_to(self, view: AttemptView, kind: str) -> Controller:
        """Walk until facing a remembered ``kind`` tile, planning a fresh path whenever a
        step is blocked or the path ends without facing one (a walkable kind is stepped
        onto rather than faced); gives up after a few plans."""
        world = view.world
        outcome = Outcome()
        if world_lacks(world, kind):
            outcome.target_visible = False
            outcome.reached = False
            return outcome
        for plans in range(MAX_PLANS + 1):
            if world.kind_at(world.facing_position()) == kind:
                outcome.target = world.facing_position()
                outcome.distance_end = 1.0
                return outcome
            if plans == MAX_PLANS:
                break
            route = world.path_to(kind)
            if route is None:
                outcome.path_found = False
                outcome.reached = False
                return outcome
            moves, _ = route
            if outcome.distance_start is None:
                outcome.distance_start = float(len(moves))
            outcome.distance_end = float(len(moves))
            for d in moves:
                before = world.position
                yield self.move(d)
                if world.position == before:
                    break  # blocked, or turned to face the target: look again from here
        outcome.path_found = False
        outcome.reached = False
        outcome.detail = "could not end up facing it"
        return outcome

    def interact(self, view: AttemptView, kind: str) -> Controller:
        """Go next to the nearest remembered ``kind`` tile, then press interact until
        something happens (or a few presses did nothing)."""
        outcome = yield from self.go_next_to(view, kind)
        if not outcome.reached:
            return outcome
        world, target = view.world, outcome.target
        outcome.target_before = kind
        mobile = world.mobile(kind)
        strikable = mobile and not world.vanishes(kind)  # gone may be struck down
        for _ in range(self.agent.interact_tries):
            # A target that walked off is out of reach; pressing on would act on what is left.
            if mobile and world.kind_at(target) != kind:
                outcome.reached, outcome.detail = False, "it moved away"
                break
            in_view = world.percept.count(kind)
            yield self.actions.interact
            outcome.removed = strikable and view.removed(target, kind, in_view)
            if outcome.removed or view.effect(target, kind):
                outcome.effect = True
                return outcome
            if world.facing_position() != target:
                break
        return outcome

    def approach(self, view: AttemptView, kind: str) -> Controller:
        """Go next to the nearest remembered ``kind`` tile and face it."""
        outcome = yield from self.go_next_to(view, kind)
        outcome.effect = outcome.reached
        return outcome

    def use(self, view: AttemptView, action: str) -> Controller:
        world = view.world
        target = world.facing_position()
        before = world.kind_at(target)
        yield action
        return Outcome(target=target, target_before=before, effect=view.effect(target, before))

    def explore(self, view: AttemptView) -> Controller:
        """Walk towards the least-seen side, turning when blocked or facing a kind to avoid."""
        world = view.world
        seen = world.cells_seen
        direction = world.frontier_direction(self.rng)
        blocked = 0
        for _ in range(self.agent.explore_steps):
            if not self._safe(world, direction):
                options = [d for d in self.move_names if self._safe(world, d)]
                if not options:
                    break
                direction = options[int(self.rng.integers(len(options)))]
            before = world.position
            yield self.move(direction)
            if world.position == before:
                blocked += 1
                options = [d for d in self.move_names if d != direction]
                direction = options[int(self.rng.integers(len(options)))]
        outcome = Outcome(effect=world.cells_seen > seen)
        if blocked >= self.agent.explore_steps // 2:
            outcome.detail = "blocked while exploring"
        return outcome

    @staticmethod
    def _safe(world: WorldModel, direction: Direction) -> bool:
        kind = world.kind_at((world.position[0] + direction[0], world.position[1] + direction[1]))
        return kind not in world.avoid

    def sleep(self, view: AttemptView) -> Controller:
        slept = False
        for _ in range(self.agent.sleep_steps):
            yield self.actions.sleep
            asleep = self.actions.sleep_tag in view.world.percept.tags
            slept = slept or asleep
            if slept and not asleep:
                return Outcome(effect=True, detail="woke up")
        return Outcome(effect=False, detail="still asleep" if slept else "never fell asleep")


def world_lacks(world: WorldModel, kind: str) -> bool:
    """True if no tile of ``kind`` is remembered near the agent."""
    if kind not in world.classes:
        return True
    grid, _ = world.window(12)
    return not np.any(grid == world.classes.index(kind))
