"""Attempts cut out of a recorded action stream, for recordings that carry none of their own
(a person's play, another agent's), and outcomes judged after the fact.

A map game's actions have roles (``config.actions``): moves, the no-op, interact, sleep; every
other action is tried by name. A person's stream of actions is cut into the subgoals the
agent's own controllers pursue, and each is judged as that controller judges itself:

- moves (and no-ops) just before a run of interact presses, with the presses, are one
  ``interact:<kind>`` attempt: the kind faced at the first press, read off the world model;
  the attempt ends at the first press that does something, after ``interact_tries`` presses,
  or when something else is pressed (as ``Controllers.interact`` walks, then presses);
- an action tried by name is a one-step ``use:<action>`` attempt;
- sleep presses, and whatever follows while perception shows the sleep tag, are one
  ``sleep`` attempt that ends when the tag goes (waking up);
- moves and no-ops not followed by a press are ``explore`` attempts of ``explore_steps``.

``Watcher`` follows an attempt step by step and gives the ``Outcome`` its controller would
have returned, from the world model alone; it also stands in for a controller whose choices
departed from a recording.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

from cairn.experience.records import Subgoal
from cairn.runtime.config import ActionsConfig, AgentConfig
from cairn.runtime.controllers import AttemptView, Outcome
from cairn.runtime.world import WorldModel


@dataclass
class Roles:
    """The generic roles of a map game's actions, from its config."""

    actions: ActionsConfig
    agent: AgentConfig

    @property
    def interact(self) -> str | None:
        return self.actions.interact

    def is_move(self, name: str) -> bool:
        return name in self.actions.moves

    def is_walk(self, name: str) -> bool:
        """A move or the no-op: what walking (or waiting) is made of."""
        return name in self.actions.moves or name == self.actions.noop

    def by_name(self, name: str) -> bool:
        a = self.actions
        return name not in a.moves and name not in (a.noop, a.interact, a.sleep)

    def asleep(self, world: WorldModel) -> bool:
        tag = self.actions.sleep_tag
        return tag is not None and world.percept is not None and tag in world.percept.tags


class Watcher:
    """What one attempt did, step by step, as the controllers would judge it afterwards.

    Call ``before(action)`` and ``after(action, reward)`` around every step (``reward``:
    the attempt's reward so far); ``outcome(subgoal)`` is the controller's Outcome.
    """

    def __init__(self, world: WorldModel, roles: Roles):
        self.world, self.roles = world, roles
        self.view = AttemptView(world, dict(world.percept.counters))
        self.seen = world.cells_seen
        self.known = world.known_kinds()
        self.start_target = world.facing_position()
        self.start_kind = world.kind_at(self.start_target)
        self.press_target: tuple[int, int] | None = None
        self.press_kind: str | None = None
        self.moves_before_press = 0
        self.effect_seen = False
        self.blocked = 0
        self.slept = self.asleep = False
        self._position = world.position

    def before(self, action: str) -> None:
        world = self.world
        if action == self.roles.interact and self.press_target is None:
            self.press_target = world.facing_position()
            self.press_kind = world.kind_at(self.press_target)
        self._position = world.position

    def after(self, action: str, reward: float) -> None:
        world = self.world
        self.view.reward = reward
        if self.roles.is_move(action):
            self.blocked += world.position == self._position
            if self.press_target is None:
                self.moves_before_press += 1
        if action == self.roles.interact and self.press_target is not None \
                and self.view.effect(self.press_target, self.press_kind):
            self.effect_seen = True
        self.asleep = self.roles.asleep(world)
        self.slept = self.slept or self.asleep

    def pressed_effect(self) -> bool:
        """Did the last press do something to the pressed tile (or the counters)?"""
        return self.press_target is not None and self.view.effect(
            self.press_target, self.press_kind)

    def outcome(self, subgoal: Subgoal) -> Outcome:
        name, kind = subgoal.controller, subgoal.target
        if name == "interact" and kind:
            return self._reached(kind, self.press_kind == kind, self.effect_seen)
        if name == "approach" and kind:
            faced = self.world.kind_at(self.world.facing_position()) == kind
            return self._reached(kind, faced, faced)
        if name == "use":
            return Outcome(target=self.start_target, target_before=self.start_kind,
                           effect=self.view.effect(self.start_target, self.start_kind))
        if name == "sleep":
            if self.slept and not self.asleep:
                return Outcome(effect=True, detail="woke up")
            return Outcome(effect=False, detail="still asleep" if self.slept
                           else "never fell asleep")
        outcome = Outcome(effect=self.world.cells_seen > self.seen)
        if self.blocked >= self.roles.agent.explore_steps // 2:
            outcome.detail = "blocked while exploring"
        return outcome

    def _reached(self, kind: str, reached: bool, effect: bool) -> Outcome:
        """An Outcome of walking to a ``kind`` tile: reached when facing one at the end."""
        if not reached:
            if kind not in self.known:
                return Outcome(target_visible=False, reached=False)
            return Outcome(path_found=False, reached=False, detail="could not end up facing it")
        target = self.press_target or self.world.facing_position()
        moves = self.moves_before_press
        return Outcome(effect=effect, target=target, target_before=kind,
                       distance_start=float(moves) if moves else None, distance_end=1.0)


class Segment:
    """The next attempt in a recorded action stream, from ``start`` on: ``run()`` is a
    controller that yields the recorded actions and returns the Outcome; ``subgoal`` is
    known once it has run (an interact attempt is named by the kind faced at its first
    press). ``budget`` caps its steps as the executor would."""

    def __init__(self, names: Sequence[str], start: int, world: WorldModel, roles: Roles,
                 watcher: Watcher):
        self.names, self.start, self.world, self.roles = names, start, world, roles
        self.watcher = watcher
        agent = roles.agent
        first = names[start]
        self.walk_end = start
        if first == roles.actions.sleep or roles.asleep(world):
            self.subgoal, self.budget = Subgoal("sleep"), agent.sleep_steps
        elif roles.by_name(first):
            self.subgoal, self.budget = Subgoal("use", first), agent.max_attempt_steps
        else:
            self.subgoal, self.budget = Subgoal("explore"), agent.max_attempt_steps
            self._cut_walk()

    def _cut_walk(self) -> None:
        """Moves followed by a press: walk then press, if the walk fits in one attempt;
        otherwise explore up to where it does."""
        names, roles, agent = self.names, self.roles, self.roles.agent
        end = self.start
        while end < len(names) and roles.is_walk(names[end]):
            end += 1
        longest = agent.max_attempt_steps - agent.interact_tries - 1
        pressed = end < len(names) and names[end] == roles.interact
        if pressed and end - self.start <= longest:
            self.subgoal, self.walk_end = Subgoal("interact"), end
            return
        span = end - self.start - (longest if pressed else 0)
        self.walk_end = self.start + max(1, min(agent.explore_steps, span))

    def run(self) -> Generator[str, None, Outcome]:
        if self.subgoal.controller == "sleep":
            return (yield from self._sleep())
        if self.subgoal.controller == "use":
            yield self.names[self.start]
            return self.watcher.outcome(self.subgoal)
        for k in range(self.start, self.walk_end):
            yield self.names[k]
        if self.subgoal.controller == "interact":
            return (yield from self._presses())
        return self.watcher.outcome(self.subgoal)

    def _presses(self) -> Generator[str, None, Outcome]:
        world, names, roles = self.world, self.names, self.roles
        target = world.facing_position()
        kind = world.kind_at(target)
        self.subgoal = Subgoal("interact", kind) if kind else Subgoal("explore")
        presses, k = 0, self.walk_end
        while k < len(names) and presses < roles.agent.interact_tries:
            nxt = k
            while nxt < len(names) and names[nxt] == roles.actions.noop:
                nxt += 1
            if nxt == len(names) or names[nxt] != roles.interact:
                break
            yield from names[k:nxt + 1]  # the no-ops between presses, then the press
            presses, k = presses + 1, nxt + 1
            if kind and self.watcher.pressed_effect():
                break
            if world.facing_position() != target:
                break
        return self.watcher.outcome(self.subgoal)

    def _sleep(self) -> Generator[str, None, Outcome]:
        names, roles, watcher = self.names, self.roles, self.watcher
        k = self.start
        while k < len(names):
            asleep = roles.asleep(self.world)
            if watcher.slept and not asleep:
                break
            if not asleep and names[k] != roles.actions.sleep:
                break
            yield names[k]
            k += 1
        return watcher.outcome(self.subgoal)
