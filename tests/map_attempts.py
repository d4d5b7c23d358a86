"""Attempts in a map game, written as the map kit writes them (``cairn.runtime.map_kit``), for
tests of distillation and learning that need exact, hand-made evidence."""

from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.runtime.controllers import TRAITS  # noqa: F401  (what distillation is told)


def situation(counters, facing="grass", near=("grass",), visible=("grass", "tree"),
              tags=(), step=0):
    return State(step, (0, 0), (1, 0), dict(counters), facing,
                 [[None, kind, None] for kind in near], sorted(visible), sorted(tags))


class Attempts:
    """Numbered attempts (ids from 1, as a store would give them; ``ids=False``: none)."""

    def __init__(self, episode="map-e0", ids=True):
        self.episode, self.ids, self.n = episode, ids, 0

    def __call__(self, subgoal, counters=None, effects=(), *, cause=None, health_delta=0,
                 after=None, entered=None, **where):
        """One attempt at ``subgoal`` from a state with ``counters`` (and ``where``: facing,
        near, visible, tags). ``effects`` given: a success with them, unless ``cause``;
        none: it acted and changed nothing (``no_effect``). ``after``: the post-state's
        counters (default: the same)."""
        self.n += 1
        counters = dict(counters or {})
        effects = list(effects)
        success = bool(effects) and cause is None
        if cause is None:
            cause = Cause.SUCCESS if success else Cause.NO_EFFECT
        diagnosis = Diagnosis(
            success=success, cause=Cause(cause), counter_deltas={}, reward=0.0,
            changed_tiles=[], progress=1.0 if success else 0.0, distance=None,
            health_delta=health_delta, steps=1, effects=effects, entered=entered)
        pre = situation(counters, step=self.n, **where)
        post = situation(after if after is not None else counters, step=self.n + 1, **where)
        return ExperienceTuple(self.episode, self.n, self.n + 1, pre, Subgoal.parse(subgoal),
                               [1], diagnosis, post, self.n if self.ids else None)
