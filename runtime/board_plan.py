"""Planning on a board of cells: explore where nothing is known, then solve with learned effects.

The planner knows no game. A *region* is a cell ``(row, col)`` of the perceived grid or a point
just off it (rows/cols -1 and R/C); a region is *covered* when a skill predicts what clicking
it changes or a guardrail forbids clicking it. While some region kind (cells, points off the
board) has uncovered regions it explores them (the kind explored least so far first; cells
from the inside out, where an effect is least cut off by the border). Once every region is
covered it treats each click as toggling the cells its skill predicts and solves
``A x = b`` over GF(2) for the goal (fewest clicks among all solutions), replanning from the
screen after every click so a wrong prediction costs one click, not the episode.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Region = tuple[int, int]
MAX_NULLITY = 14
"""Solutions are enumerated (for the fewest clicks) up to 2**MAX_NULLITY of them."""


def ring(shape: tuple[int, int]) -> list[Region]:
    """The regions just off a ``shape`` board, in raster order."""
    rows, cols = shape
    return [(r, c) for r in range(-1, rows + 1) for c in range(-1, cols + 1)
            if not (0 <= r < rows and 0 <= c < cols)]


def inside_out(shape: tuple[int, int]) -> list[Region]:
    """Cells ordered by distance to the border, largest first (ties in raster order)."""
    rows, cols = shape
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    return sorted(cells, key=lambda rc: -min(rc[0], rc[1], rows - 1 - rc[0], cols - 1 - rc[1]))


@dataclass
class Choice:
    region: Region | None
    reason: str
    """``explore``, ``plan``, ``goal`` (already reached) or ``stuck`` (no plan reaches it)."""
    plan: list[Region] | None = None


def choose(shape: tuple[int, int], tiles: np.ndarray, targets: Sequence[np.ndarray],
           model: Callable[[Region], set[Region] | None], blocked: Callable[[Region], bool],
           explored: dict[str, int], tried: set[Region]) -> Choice:
    """The next region to click. ``model(cell)`` gives the cells a click changes (None if
    unknown); ``explored`` counts explorations by region kind in this episode."""
    if any((tiles == t).all() for t in targets):
        return Choice(None, "goal")
    # Cells the goal wants changed first: a click there is informative and, where its effect
    # cannot be undone, does no harm.
    nearest = max(targets, key=lambda t: int((tiles == t).sum()))
    cells = sorted(inside_out(shape), key=lambda rc: bool(tiles[rc] == nearest[rc]))
    kinds = {
        "cell": [c for c in cells if model(c) is None and not blocked(c) and c not in tried],
        "outside": [r for r in ring(shape) if not blocked(r) and r not in tried],
    }
    open_kinds = [k for k, regions in kinds.items() if regions]
    if open_kinds:
        kind = min(open_kinds, key=lambda k: (explored.get(k, 0), k != "cell"))
        return Choice(kinds[kind][0], "explore")
    plan = solve(shape, tiles, targets, model, blocked)
    if plan is None:
        return Choice(None, "stuck")
    return Choice(plan[0], "plan", plan)


def solve(shape: tuple[int, int], tiles: np.ndarray, targets: Sequence[np.ndarray],
          model: Callable[[Region], set[Region] | None],
          blocked: Callable[[Region], bool]) -> list[Region] | None:
    """Fewest clicks (cells with a known effect) that toggle ``tiles`` into some target."""
    rows, cols = shape
    actions = [(r, c) for r in range(rows) for c in range(cols)
               if not blocked((r, c)) and model((r, c))]
    if not actions:
        return None
    a = np.zeros((rows * cols, len(actions)), np.uint8)
    for j, action in enumerate(actions):
        for r, c in model(action):
            a[r * cols + c, j] = 1
    best: list[Region] | None = None
    for target in targets:
        b = (tiles != target).reshape(-1).astype(np.uint8)
        x = min_weight_solution(a, b)
        if x is not None and (best is None or int(x.sum()) < len(best)):
            best = [actions[j] for j in np.flatnonzero(x)]
    return best


def min_weight_solution(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """A fewest-ones x with ``a @ x = b`` (mod 2), or None if there is none."""
    m, n = a.shape
    aug = np.concatenate([a % 2, (b % 2)[:, None]], axis=1).astype(np.uint8)
    pivots: list[int] = []
    row = 0
    for col in range(n):
        hit = np.flatnonzero(aug[row:, col]) + row if row < m else []
        if len(hit) == 0:
            continue
        aug[[row, hit[0]]] = aug[[hit[0], row]]
        others = np.flatnonzero(aug[:, col])
        others = others[others != row]
        aug[others] ^= aug[row]
        pivots.append(col)
        row += 1
    if aug[row:, n].any():
        return None  # an all-zero row of a equals 1: inconsistent
    free = [c for c in range(n) if c not in pivots]
    base = np.zeros(n, np.uint8)
    for i, col in enumerate(pivots):
        base[col] = aug[i, n]
    if len(free) > MAX_NULLITY:
        return base
    best = base
    for bits in itertools.product((0, 1), repeat=len(free)):
        x = np.zeros(n, np.uint8)
        x[free] = bits
        for i, col in enumerate(pivots):
            x[col] = (aug[i, n] + int(aug[i, free] @ x[free])) % 2
        if x.sum() < best.sum():
            best = x
    return best
