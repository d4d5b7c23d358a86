"""A run's CLIP encoder at work: the situation index, zero-shot tags and a goal in words.

One embedding per frame serves all three; the last one is kept, since the frame a kit
perceives after a step is the next attempt's first frame. Built only when the config has a
``clip`` section, so a run without it never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cairn.experience.records import ExperienceTuple
from cairn.experience.situations import SituationIndex
from cairn.experience.store import ExperienceStore
from cairn.perception.clip import ClipConfig, ClipEncoder
from cairn.perception.percept import Percept

TAG_PREFIX = "clip:"


class Sight:
    def __init__(self, config: ClipConfig, store: ExperienceStore,
                 encoder: ClipEncoder | None = None):
        self.config = config
        self.encoder = encoder or config.encoder()
        self.index: SituationIndex | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self.use_store(store)

    def use_store(self, store: ExperienceStore) -> None:
        """Index into ``store`` from now on (a mismatched encoder is a StoreError)."""
        self.close()
        if self.config.index:
            self.index = SituationIndex.open(store, self.encoder.name, self.encoder.dim)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """The frame's embedding, computed once per frame."""
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        vector = self.encoder.embed(frame)
        self._last = (frame, vector)
        return vector

    def tagging(self, parse: Callable[[np.ndarray], Percept]) -> Callable[[np.ndarray], Percept]:
        """``parse`` with the frame's zero-shot tags (``clip:<label>``) added to the percept's
        tags; ``parse`` itself when the config lists no labels. Tags are predicates, like
        perception's own, so they take part in conditions and guardrail triggers."""
        labels = self.config.labels
        if not labels:
            return parse

        def parse_and_tag(frame: np.ndarray) -> Percept:
            percept = parse(frame)
            found = self.encoder.tags(self.embed(frame), labels, self.config.tag_top_k,
                                      self.config.tag_min_score)
            percept.tags = frozenset(percept.tags) | {TAG_PREFIX + label for label in found}
            return percept
        return parse_and_tag

    def similar(self, frame: np.ndarray, k: int = 10) -> list[tuple[ExperienceTuple, float]]:
        """Past attempts that started in the situations most like ``frame``, most alike first."""
        if self.index is None:
            return []
        return self.index.similar(self.embed(frame), k)

    def remember(self, attempt: ExperienceTuple, frame: np.ndarray) -> None:
        """Index a stored attempt by its first frame."""
        if self.index is not None and attempt.id is not None:
            self.index.add([attempt.id], self.embed(frame)[None, :])

    def goal_seen(self, frame: np.ndarray) -> bool:
        """Does the screen match the goal described in words (never, without one)?"""
        if not self.config.goal_text:
            return False
        return self.encoder.matches(self.embed(frame), self.config.goal_text,
                                    self.config.goal_threshold)[0]

    def close(self) -> None:
        if self.index is not None:
            index, self.index = self.index, None
            index.close()
