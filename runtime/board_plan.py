"""Planning on a board of cells: explore where nothing is known, then solve with learned effects.

The planner knows no game. A *region* is a cell ``(row, col)`` of the perceived grid or a point
just off it (rows/cols -1 and R/C); a region is *covered* when a skill predicts what clicking
it changes or a guardrail forbids clicking it. While some region kind (cells, points off the
board) has uncovered regions it explores them (the kind explored least so far first; cells
from the inside out, where an effect is least cut off by the border). Once every region is
covered, and while every learned effect toggles cells, it solves ``A x = b`` over GF(2) for
the goal (fewest clicks among all solutions); where effects are not toggles (a click *sets* a
cell's look, and a cell that has it already stays) it picks greedily the click whose
predicted looks bring the most cells to the goal. Either way it replans from the screen after
every click, so a wrong prediction costs one click, not the episode. A game may have several
actions (mouse buttons): each is explored and learned on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cairn.experience.records import ExperienceTuple, Subgoal
from cairn.runtime.planner import PlanContext

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


Model = Callable[[Region], "dict[Region, int | None] | None"]
"""What one action on a cell does: changed cells -> the look each turns into (None: unknown),
or None while it is not known."""


@dataclass
class Choice:
    region: Region | None
    reason: str
    """``explore``, ``plan``, ``goal`` (already reached) or ``stuck`` (no plan reaches it)."""
    plan: list[tuple[str, Region]] | None = None
    action: str = "click"
    """The action (mouse button) to use on ``region``."""


def choose(shape: tuple[int, int], tiles: np.ndarray, targets: Sequence[np.ndarray],
           models: dict[str, Model], blocked: Callable[[str, Region], bool],
           explored: dict[str, int], tried: set[tuple[str, Region]], outside: bool = True,
           toggles: bool = True) -> Choice:
    """The next action and region. ``models[action](cell)`` gives what the action changes
    (None if unknown; the first action is the primary one, which also explores points off
    the board when ``outside``); ``explored`` counts explorations by kind in this episode.
    ``toggles``: every known effect toggles cells, so the goal is solved over GF(2); else
    the planner is greedy over the predicted looks."""
    if any((tiles == t).all() for t in targets):
        return Choice(None, "goal")
    # Cells the goal wants changed first: a click there is informative and, where its effect
    # cannot be undone, does no harm.
    nearest = max(targets, key=lambda t: int((tiles == t).sum()))
    cells = sorted(inside_out(shape), key=lambda rc: bool(tiles[rc] == nearest[rc]))
    actions = list(models)
    kinds: dict[str, tuple[str, list[Region]]] = {}
    for action, model in models.items():
        kinds[f"cell:{action}"] = (action, [c for c in cells if model(c) is None
                                            and not blocked(action, c)
                                            and (action, c) not in tried])
    if outside:
        kinds["outside"] = (actions[0], [r for r in ring(shape) if not blocked(actions[0], r)
                                         and (actions[0], r) not in tried])
    open_kinds = [k for k, (_, regions) in kinds.items() if regions]
    if open_kinds:
        order = list(kinds)
        kind = min(open_kinds, key=lambda k: (explored.get(k, 0), k == "outside",
                                              order.index(k)))
        action, regions = kinds[kind]
        return Choice(regions[0], "explore", action=action)
    plan = solve(shape, tiles, targets, models, blocked) if toggles else None
    if plan is None:
        plan = greedy(shape, tiles, targets, models, blocked)
    if plan is None:
        return Choice(None, "stuck")
    return Choice(plan[0][1], "plan", plan, action=plan[0][0])


def explore_kind(action: str, region: Region, shape: tuple[int, int]) -> str:
    """The exploration kind an action on a region counts for (see :func:`choose`)."""
    inside = 0 <= region[0] < shape[0] and 0 <= region[1] < shape[1]
    return f"cell:{action}" if inside else "outside"


def solve(shape: tuple[int, int], tiles: np.ndarray, targets: Sequence[np.ndarray],
          models: dict[str, Model],
          blocked: Callable[[str, Region], bool]) -> list[tuple[str, Region]] | None:
    """Fewest clicks (actions with a known effect) that toggle ``tiles`` into some target."""
    rows, cols = shape
    actions = [(a, (r, c)) for a, model in models.items() for r in range(rows)
               for c in range(cols) if not blocked(a, (r, c)) and model((r, c))]
    if not actions:
        return None
    a = np.zeros((rows * cols, len(actions)), np.uint8)
    for j, (kind, cell) in enumerate(actions):
        for r, c in models[kind](cell):
            a[r * cols + c, j] = 1
    best: list[tuple[str, Region]] | None = None
    for target in targets:
        b = (tiles != target).reshape(-1).astype(np.uint8)
        x = min_weight_solution(a, b)
        if x is not None and (best is None or int(x.sum()) < len(best)):
            best = [actions[j] for j in np.flatnonzero(x)]
    return best or None


def greedy(shape: tuple[int, int], tiles: np.ndarray, targets: Sequence[np.ndarray],
           models: dict[str, Model],
           blocked: Callable[[str, Region], bool]) -> list[tuple[str, Region]] | None:
    """The one action that brings the most cells to their goal look by the predicted looks
    (an unknown look counts as wrong), fewest cells disturbed on a tie; None if none gains.
    Replanned after every click, so it is a one-step lookahead on the screen's state."""
    rows, cols = shape
    best, best_key = None, None
    for target in targets:
        for kind, model in models.items():
            for r in range(rows):
                for c in range(cols):
                    if blocked(kind, (r, c)):
                        continue
                    change = model((r, c))
                    if not change:
                        continue
                    gain = sum(int(after is not None and after == target[p])
                               - int(tiles[p] == target[p]) for p, after in change.items())
                    key = (gain, -len(change))
                    if gain > 0 and (best_key is None or key > best_key):
                        best, best_key = [(kind, (r, c))], key
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


class BoardPlanner:
    """``choose`` behind the Planner interface: the kit (``cairn.runtime.board_kit``) gives
    the board on the screen, the goal and what the skills and guardrails say."""

    def __init__(self, kit: Any, outside: bool | None = None):
        self.kit = kit
        self.outside = kit.board.explore_outside if outside is None else outside
        self.explored: dict[str, int] = {}
        self.tried: set[tuple[str, Region]] = set()
        self.last_reason = ""

    def reset(self) -> None:
        self.explored.clear()
        self.tried.clear()
        self.last_reason = ""

    def memory(self) -> dict[str, Any]:
        return {}

    def recall(self, memory: dict[str, Any]) -> None:
        pass

    def next_subgoal(self, ctx: PlanContext) -> Subgoal | None:
        kit = self.kit
        tiles = kit.percept.tiles
        shape = tiles.shape
        choice = choose(shape, tiles, kit.targets, kit.models(), kit.blocked(), self.explored,
                        self.tried, self.outside, kit.toggles())
        self.last_reason = choice.reason
        if choice.region is None:
            return None
        if choice.reason == "explore":
            kind = explore_kind(choice.action, choice.region, shape)
            self.explored[kind] = self.explored.get(kind, 0) + 1
        self.tried.add((choice.action, choice.region))
        return Subgoal(choice.action, f"{choice.region[0]},{choice.region[1]}")

    def on_attempt(self, attempt: ExperienceTuple, ctx: PlanContext) -> None:
        pass
