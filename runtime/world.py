"""The agent's own model of a grid world, built from Percepts alone.

It keeps a map of every tile seen (so tiles perception is unsure of are filled from
memory), estimates the agent's position by odometry (did the view shift after a move?),
and learns which tile kinds can be walked onto from what happened when it tried.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from cairn.perception.percept import UNKNOWN, Percept

Direction = tuple[int, int]
DIRECTIONS: tuple[Direction, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
VANISHING = 0.2


@dataclass
class WalkStats:
    moved: int = 0
    blocked: int = 0

    @property
    def walkable(self) -> bool:
        """Optimistic: a kind is walkable until trying has mostly failed."""
        return self.blocked < 2 or self.moved > self.blocked


@dataclass
class WorldModel:
    """Map memory, odometry and learned walkability, in the agent's own coordinates."""

    radius: int = 256
    position: tuple[int, int] = (0, 0)
    facing: Direction = (1, 0)
    walk: dict[str, WalkStats] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    percept: Percept | None = None
    cells_seen: int = 0
    highest: dict[str, int] = field(default_factory=dict)
    """The highest value each counter has shown."""
    avoid: set[str] = field(default_factory=set)
    """Kinds never to step onto (from guardrails)."""
    drift: dict[str, set[int]] = field(default_factory=dict)
    """Counter -> directions (+1/-1) it has moved in on its own, while the agent only walked."""
    kind_seen: dict[str, int] = field(default_factory=dict)
    kind_changed: dict[str, int] = field(default_factory=dict)
    kind_still: dict[str, int] = field(default_factory=dict)
    """Kind -> frames it was in view while the agent stood and did nothing else."""
    kind_vanished: dict[str, int] = field(default_factory=dict)
    """Kind -> how many of it left the view in those frames."""

    def __post_init__(self) -> None:
        size = 2 * self.radius
        self._map = np.full((size, size), UNKNOWN, np.int16)

    def fresh(self) -> WorldModel:
        """A new map for a new world, keeping what was learned about how worlds behave
        (walkability, drifting counters, wandering kinds, counter ranges)."""
        return WorldModel(radius=self.radius, walk=self.walk, drift=self.drift,
                          kind_seen=self.kind_seen, kind_changed=self.kind_changed,
                          kind_still=self.kind_still, kind_vanished=self.kind_vanished,
                          highest=self.highest, avoid=self.avoid)

    def lessons(self) -> dict[str, list]:
        """What ``fresh`` keeps, as JSON lists in the order it was learned (a resumed run
        must iterate it as the uninterrupted one would)."""
        return {"walk": [[k, s.moved, s.blocked] for k, s in self.walk.items()],
                "drift": [[k, sorted(signs)] for k, signs in self.drift.items()],
                "kind_seen": list(self.kind_seen.items()),
                "kind_changed": list(self.kind_changed.items()),
                "kind_still": list(self.kind_still.items()),
                "kind_vanished": list(self.kind_vanished.items()),
                "highest": list(self.highest.items())}

    def learn_from(self, lessons: dict[str, list]) -> None:
        """Take back what ``lessons`` returned (a run going on from a store)."""
        self.walk.update((k, WalkStats(moved, blocked)) for k, moved, blocked in
                         lessons.get("walk", []))
        self.drift.update((k, set(signs)) for k, signs in lessons.get("drift", []))
        for name in ("kind_seen", "kind_changed", "kind_still", "kind_vanished", "highest"):
            getattr(self, name).update((k, v) for k, v in lessons.get(name, []))

    def depleting(self) -> set[str]:
        """Counters seen to fall on their own."""
        return {name for name, signs in self.drift.items() if -1 in signs}

    def entries(self) -> dict[str, int]:
        """How often the agent stepped onto each kind of tile."""
        return {kind: stats.moved for kind, stats in self.walk.items()}

    # -- updating -------------------------------------------------------------------------

    def observe(
        self, percept: Percept, move: Direction | None = None, passive: bool = False
    ) -> bool:
        """Take in a new percept after an action; ``move`` is the direction if it was a move.

        ``passive`` says the action was a move or a no-op, so any counter change in this
        step happened on its own (hunger, thirst...). Returns whether the agent moved.
        """
        if passive and self.percept is not None:
            self._learn_drift(self.percept.counters, percept.counters)
        moved = False
        if move is not None and self.percept is not None:
            moved = self._did_move(self.percept, percept, move)
            faced = self.percept.name_at(
                self.percept.player[0] + move[0], self.percept.player[1] + move[1])
            if faced is not None:
                stats = self.walk.setdefault(faced, WalkStats())
                if moved:
                    stats.moved += 1
                else:
                    stats.blocked += 1
            if moved:
                self.position = (self.position[0] + move[0], self.position[1] + move[1])
        if passive and self.percept is not None:
            self._learn_mobility(self.percept, percept, move if moved else (0, 0))
        for name, value in percept.counters.items():
            if value > self.highest.get(name, 0):
                self.highest[name] = value
        self.classes = percept.classes
        self.facing = percept.facing
        self.percept = percept
        self._remember(percept)
        return moved

    def _learn_drift(self, before: dict[str, int], after: dict[str, int]) -> None:
        for name, value in after.items():
            change = value - before.get(name, 0)
            if change:
                self.drift.setdefault(name, set()).add(1 if change > 0 else -1)

    def _learn_mobility(self, before: Percept, after: Percept, shift: Direction) -> None:
        """Count, per kind, how often one of its tiles changed while the agent only walked."""
        a, b = _overlap(_without_player(before), _without_player(after), shift)
        known = (a != UNKNOWN) & (b != UNKNOWN)
        seen = np.bincount(a[known], minlength=len(before.classes)).tolist()
        changed = np.bincount(a[known & (a != b)], minlength=len(before.classes)).tolist()
        for i, count in enumerate(seen):
            if not count:
                continue
            name = before.classes[i]
            self.kind_seen[name] = self.kind_seen.get(name, 0) + count
            if changed[i]:
                self.kind_changed[name] = self.kind_changed.get(name, 0) + changed[i]
        if shift == (0, 0):
            self._learn_vanishing(before, after)

    def _learn_vanishing(self, before: Percept, after: Percept) -> None:
        """Count, per kind in view while the agent stood, how many of it left the view."""
        size = len(before.classes)
        was = np.bincount(before.tiles[before.tiles != UNKNOWN], minlength=size)
        now = np.bincount(after.tiles[after.tiles != UNKNOWN], minlength=size)[:size]
        for i in np.flatnonzero(was):
            name, gone = before.classes[i], int(was[i] - now[i])
            self.kind_still[name] = self.kind_still.get(name, 0) + 1
            if gone > 0:
                self.kind_vanished[name] = self.kind_vanished.get(name, 0) + gone

    def mobile(self, kind: str | None) -> bool:
        """Kinds whose tiles often change on their own (things that wander)."""
        changed = self.kind_changed.get(kind, 0)
        return changed >= 3 and changed > 0.2 * self.kind_seen.get(kind, 1)

    def vanishes(self, kind: str) -> bool:
        """Kinds that often leave the view by themselves (one in five frames it was seen in
        while the agent stood): their leaving says nothing about a blow."""
        vanished = self.kind_vanished.get(kind, 0)
        return vanished >= 3 and vanished > VANISHING * self.kind_still.get(kind, 1)

    def unexplained_changes(self, before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        """Counter changes the agent has never seen happen on their own: an action's effect."""
        changes = {}
        for name in set(before) | set(after):
            change = after.get(name, 0) - before.get(name, 0)
            if change and (1 if change > 0 else -1) not in self.drift.get(name, ()):
                changes[name] = change
        return changes

    def _did_move(self, before: Percept, after: Percept, move: Direction) -> bool:
        """Compare the views: a move shifts every static tile by one against the motion.

        The hypothesis with the smaller share of mismatched tiles wins; the player's own
        tile is left out of both. A tie (a uniform field) is decided by walkability.
        """
        a, b = _without_player(before), _without_player(after)
        moved_miss = _mismatch(*_overlap(a, b, move))
        still_miss = _mismatch(a, b)
        if moved_miss != still_miss:
            return moved_miss < still_miss
        faced = before.name_at(before.player[0] + move[0], before.player[1] + move[1])
        return faced is not None and self.walkable(faced)

    def _remember(self, percept: Percept) -> None:
        rows, cols = percept.tiles.shape
        top = self.position[0] - percept.player[0] + self.radius
        left = self.position[1] - percept.player[1] + self.radius
        if not (top >= 0 and top + rows <= self._map.shape[0]
                and left >= 0 and left + cols <= self._map.shape[1]):
            return
        window = self._map[top: top + rows, left: left + cols]
        known = percept.tiles != UNKNOWN
        self.cells_seen += int(np.count_nonzero(window[known] == UNKNOWN))
        window[known] = percept.tiles[known]

    # -- queries --------------------------------------------------------------------------

    def walkable(self, kind: str) -> bool:
        stats = self.walk.get(kind)
        return stats is None or stats.walkable

    def kind_at(self, position: tuple[int, int]) -> str | None:
        index = int(self._map[position[0] + self.radius, position[1] + self.radius])
        return None if index == UNKNOWN else self.classes[index]

    def facing_position(self) -> tuple[int, int]:
        return (self.position[0] + self.facing[0], self.position[1] + self.facing[1])

    def window(self, half: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The remembered map within ``half`` cells of the agent, and its top-left position."""
        row, col = self.position[0] + self.radius, self.position[1] + self.radius
        top, left = max(row - half, 0), max(col - half, 0)
        view = self._map[top: row + half + 1, left: col + half + 1]
        return view, (top - self.radius, left - self.radius)

    def known_kinds(self, half: int = 12) -> set[str]:
        """Kinds remembered within ``half`` cells."""
        view, _ = self.window(half)
        return {self.classes[i] for i in np.unique(view) if i != UNKNOWN}

    def region(self, center: tuple[int, int], half: int) -> np.ndarray:
        """A copy of the remembered class indices within ``half`` cells of ``center``."""
        r, c = center[0] + self.radius, center[1] + self.radius
        return self._map[r - half: r + half + 1, c - half: c + half + 1].copy()

    def near(self, half: int = 1) -> list[list[str | None]]:
        """Names of the remembered tiles in the (2*half+1)^2 square around the agent."""
        view, _ = self.window(half)
        return [[None if i == UNKNOWN else self.classes[i] for i in row] for row in view]

    def path_to(self, kind: str, half: int = 12) -> tuple[list[Direction], tuple[int, int]] | None:
        """Shortest walk to a cell next to the nearest remembered ``kind`` tile.

        Returns the moves and the target tile's position, or None if no tile of that kind
        is known within ``half`` cells or none can be reached.
        """
        if kind not in self.classes:
            return None
        view, (top, left) = self.window(half)
        target_index = self.classes.index(kind)
        if not np.any(view == target_index):
            return None
        passable = self._passable(view)
        start = (self.position[0] - top, self.position[1] - left)
        previous: dict[tuple[int, int], tuple[tuple[int, int], Direction] | None] = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            for d in DIRECTIONS:
                nxt = (cell[0] + d[0], cell[1] + d[1])
                if not (0 <= nxt[0] < view.shape[0] and 0 <= nxt[1] < view.shape[1]):
                    continue
                if nxt in previous:
                    continue
                if view[nxt] == target_index:
                    moves = _unwind(previous, cell) + [d]
                    return moves, (nxt[0] + top, nxt[1] + left)
                if passable[nxt]:
                    previous[nxt] = (cell, d)
                    queue.append(nxt)
        return None

    def _passable(self, view: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(self.classes) + 1, bool)
        for i, name in enumerate(self.classes):
            ok[i] = self.walkable(name) and name not in self.avoid
        return ok[view]  # UNKNOWN (-1) indexes the trailing False

    def frontier_direction(self, rng: np.random.Generator, half: int = 12) -> Direction:
        """The direction with the most never-seen cells ahead; ties broken at random."""
        view, (top, left) = self.window(half)
        row, col = self.position[0] - top, self.position[1] - left
        unknown = view == UNKNOWN
        counts = np.array([
            unknown[:row].sum(), unknown[row + 1:].sum(),
            unknown[:, :col].sum(), unknown[:, col + 1:].sum(),
        ], float)
        counts += rng.random(4) * (counts.max() * 0.5 + 1)
        return DIRECTIONS[int(np.argmax(counts))]


def _without_player(percept: Percept) -> np.ndarray:
    tiles = percept.tiles.copy()
    tiles[percept.player] = UNKNOWN
    return tiles


def _overlap(before: np.ndarray, after: np.ndarray, shift: Direction):
    """The parts of two views that show the same cells after the agent moved by ``shift``."""
    dr, dc = shift
    rows, cols = before.shape
    return (before[max(dr, 0): rows + min(dr, 0), max(dc, 0): cols + min(dc, 0)],
            after[max(-dr, 0): rows + min(-dr, 0), max(-dc, 0): cols + min(-dc, 0)])


def _mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """Share of tiles known in both views that differ."""
    known = (a != UNKNOWN) & (b != UNKNOWN)
    count = int(np.count_nonzero(known))
    return 1.0 if count == 0 else int(np.count_nonzero((a != b) & known)) / count


def _unwind(previous: dict, cell: tuple[int, int]) -> list[Direction]:
    moves: list[Direction] = []
    while previous[cell] is not None:
        cell, d = previous[cell]
        moves.append(d)
    return moves[::-1]

