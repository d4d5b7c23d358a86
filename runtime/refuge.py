"""When the symbolic planner digs in, rests and digs out (the controller is ``burrow``).

Where a guardrail says harm comes whatever the agent does (``exposed``), staying within
reach is what is forbidden: the agent digs in and closes the way behind it. Shut in, it
rests while any fact of that danger lasts, for at most ``STAY`` steps, then digs out. A
pressing need comes before digging in, and one near its end cuts the rest short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn.experience.records import Subgoal
from cairn.guardrails.model import Guardrail
from cairn.runtime.planner import PlanContext

if TYPE_CHECKING:
    from cairn.runtime.symbolic import WorldFacts

STAY = 150
"""Most steps the agent stays shut in once the danger that sent it there has partly passed."""
RETRY = 5
"""Plans before digging in is tried again after it failed."""


class Refuge:
    """One episode's refuge: the danger that sent the agent in, and since when."""

    def __init__(self) -> None:
        self.entered: tuple[frozenset[str], int] | None = None
        self.wait = 0

    def failed(self) -> None:
        """Digging in failed (nowhere to dig, say): leave it a few plans."""
        self.wait = RETRY

    def choose(self, ctx: PlanContext, facts: frozenset[str], world: WorldFacts,
               danger: Guardrail | None, rest: Subgoal, needy: bool, parched: bool
               ) -> tuple[Subgoal, str] | None:
        """The subgoal and its reason, or None to plan as usual. ``rest``: sleep where the
        guardrails allow it, else wait; ``needy``: a need is pressing; ``parched``: one is
        near its end."""
        if world.sealed:
            if danger is not None and self.entered is None:
                self.entered = (frozenset(danger.trigger.all_of), ctx.state.step)
            if self.entered is not None and not parched:
                because, since = self.entered
                if because & facts and ctx.state.step - since < STAY:
                    return rest, f"refuge: rest while {' & '.join(sorted(because & facts))}"
            self.entered = None
            facing = ctx.state.facing_kind
            if facing in world.dig:
                return Subgoal("interact", facing), "refuge: dig out"
            return None
        self.entered = None
        if danger is None or needy or not world.dig or not world.place or self.wait:
            self.wait = max(self.wait - 1, 0)
            return None
        placers = sorted(world.place, key=lambda a: (-_laplace(ctx.stats(f"burrow:{a}", None)),
                                                     a))
        return (Subgoal("burrow", placers[0]),
                f"refuge: dig in, harm comes while {danger.trigger.describe()}")


def _laplace(stats: tuple[int, int]) -> float:
    """(attempts, successes) -> the success rate with one of each assumed (untried: 0.5)."""
    attempts, successes = stats
    return (successes + 1) / (attempts + 2)
