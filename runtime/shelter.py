"""Where a map-game agent can shut itself in: geometry on the remembered map, no game rules.

A refuge is a pocket of two cells dug into a mass of some kind the agent can dig, closed
behind it with a kind it can place. Things that walk cannot reach a cell whose every
neighbour is a kind nothing walks on. Which kinds dig into walkable ground and which can be
placed comes from the agent's skills; whether hiding helps comes from its guardrails (see
``SymbolicPlanner``).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from cairn.perception.percept import UNKNOWN
from cairn.runtime.world import DIRECTIONS, Direction, WorldModel, unwind

MAX_POCKET = 6
"""A walkable region larger than this around the agent is not a shut room."""


def open_kinds(world: WorldModel) -> np.ndarray:
    """Per class index (UNKNOWN last): could something walk there? Unknown cells and kinds
    that wander (they stand on walkable ground) count as open."""
    ok = np.ones(len(world.classes) + 1, bool)
    for i, name in enumerate(world.classes):
        ok[i] = world.walkable(name) or world.mobile(name)
    return ok


def sealed(world: WorldModel) -> bool:
    """Is the agent in a small walkable region every way out of which is blocked?"""
    if world.percept is None:
        return False
    view, (top, left) = world.window(MAX_POCKET + 1)
    ok = open_kinds(world)[view]
    start = (world.position[0] - top, world.position[1] - left)
    seen, queue = {start}, deque([start])
    while queue:
        cell = queue.popleft()
        for d in DIRECTIONS:
            nxt = (cell[0] + d[0], cell[1] + d[1])
            if not (0 <= nxt[0] < view.shape[0] and 0 <= nxt[1] < view.shape[1]):
                return False
            if nxt in seen or not ok[nxt]:
                continue
            seen.add(nxt)
            if len(seen) > MAX_POCKET:
                return False
            queue.append(nxt)
    return True


def pocket_site(world: WorldModel, dig: set[str], half: int = 10
                ) -> tuple[list[Direction], Direction] | None:
    """The nearest place to dig a two-cell pocket in: a walkable cell P from which two cells
    of a ``dig`` kind lie straight ahead (direction d), with every other neighbour of those
    two cells a known kind nothing walks on. Returns the walk to P and d, or None."""
    view, (top, left) = world.window(half)
    dig_index = [world.classes.index(k) for k in dig if k in world.classes]
    if not dig_index:
        return None
    diggable = np.isin(view, dig_index)
    wall = ~open_kinds(world)[view] & (view != UNKNOWN)
    passable = _passable(world, view)
    start = (world.position[0] - top, world.position[1] - left)
    previous: dict[tuple[int, int], tuple[tuple[int, int], Direction] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for d in DIRECTIONS:
            if _pocket(cell, d, diggable, wall):
                return unwind(previous, cell), d
        for d in DIRECTIONS:
            nxt = (cell[0] + d[0], cell[1] + d[1])
            if _inside(nxt, view.shape) and nxt not in previous and passable[nxt]:
                previous[nxt] = (cell, d)
                queue.append(nxt)
    return None


def _pocket(cell: tuple[int, int], d: Direction, diggable: np.ndarray, wall: np.ndarray) -> bool:
    r, c = cell
    first, second, end = ((r + k * d[0], c + k * d[1]) for k in (1, 2, 3))
    side = (d[1], d[0])
    sides = [(p[0] + s * side[0], p[1] + s * side[1]) for p in (first, second) for s in (1, -1)]
    cells = [first, second, end, *sides]
    if not all(_inside(p, wall.shape) for p in cells):
        return False
    return bool(diggable[first] and diggable[second] and all(wall[p] for p in [end, *sides]))


def _passable(world: WorldModel, view: np.ndarray) -> np.ndarray:
    ok = np.zeros(len(world.classes) + 1, bool)
    for i, name in enumerate(world.classes):
        ok[i] = world.walkable(name) and name not in world.avoid and not world.mobile(name)
    return ok[view]


def _inside(cell: tuple[int, int], shape: tuple[int, ...]) -> bool:
    return 0 <= cell[0] < shape[0] and 0 <= cell[1] < shape[1]
