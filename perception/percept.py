"""The symbolic state perception hands to the rest of Cairn."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN = -1


@dataclass
class Percept:
    """What one frame shows, in names the agent learned nothing about yet.

    ``tiles[row, col]`` indexes ``classes`` (``UNKNOWN`` where perception is not confident);
    ``confidence`` has the same shape, in [0, 1]. The player stands at ``player`` (row, col)
    and faces ``facing`` (drow, dcol). ``counters`` are the numbers read off the screen
    (inventory and vitals alike); ``tags`` are free-form labels (e.g. ``"sleeping"``).
    """

    tiles: np.ndarray
    confidence: np.ndarray
    classes: tuple[str, ...]
    player: tuple[int, int]
    facing: tuple[int, int]
    counters: dict[str, int]
    tags: frozenset[str] = frozenset()
    changed_region: tuple[int, int, int, int] | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)

    def name_at(self, row: int, col: int) -> str | None:
        index = int(self.tiles[row, col])
        return None if index == UNKNOWN else self.classes[index]

    def visible(self) -> set[str]:
        return {self.classes[i] for i in np.unique(self.tiles) if i != UNKNOWN}

    def count(self, name: str) -> int:
        """How many tiles show ``name``."""
        if name not in self.classes:
            return 0
        return int(np.count_nonzero(self.tiles == self.classes.index(name)))
