"""Online distillation: after every attempt, re-distil the skill and guardrails of its
subgoal (and, on harm, guardrails about the cause), so knowledge applies at the next step."""

from __future__ import annotations

from collections import deque

from cairn.experience.records import ExperienceTuple
from cairn.experience.store import ExperienceStore
from cairn.guardrails.distill import harm_guardrails, requirement_guardrails
from cairn.guardrails.store import GuardrailSet
from cairn.skills.distill import distill_skill
from cairn.skills.library import SkillLibrary

REQUIREMENT_ROOTS = frozenset({"no_effect", "missing_requirement"})
WINDOW = 150
"""Attempts per subgoal that distillation looks at (the newest)."""


class Learner:
    """Owns the skill library and the guardrail set of a run.

    ``mode``: ``"learn"`` distils and saves; ``"frozen"`` uses the stored knowledge as it is;
    ``"off"`` has no knowledge at all (the learning-disabled baseline).
    """

    def __init__(self, store: ExperienceStore, mode: str = "learn"):
        if mode not in ("learn", "frozen", "off"):
            raise ValueError(f"unknown learning mode '{mode}' (learn, frozen, off)")
        self.store = store
        self.mode = mode
        knowledge = store.knowledge if mode != "off" else None
        save = knowledge if mode == "learn" else None
        self.skills = SkillLibrary(knowledge)
        self.guardrails = GuardrailSet(knowledge)
        self.skills.knowledge = save
        self.guardrails.knowledge = save
        self._windows: dict[str, deque[ExperienceTuple]] = {}
        self._recent: deque[ExperienceTuple] = deque(maxlen=WINDOW * 4)
        self._drift: dict[str, set[int]] = {}

    def observe(self, attempt: ExperienceTuple, entries: dict[str, int],
                drift: dict[str, set[int]]) -> None:
        """Take in a stored (id-bearing) attempt and update knowledge at once.

        ``entries`` and ``drift`` come from the world model (see ``harm_guardrails`` and
        ``distill_skill``).
        """
        if self.mode != "learn":
            return
        key = attempt.subgoal.key
        window = self._window(key)  # loads from the store, maybe this attempt included
        if not window or window[-1].id != attempt.id:
            window.append(attempt)
        self._recent.append(attempt)
        self._drift = drift
        self._distill(key, window)
        depleting = {name for name, signs in drift.items() if -1 in signs}
        for guard in harm_guardrails(attempt, self._recent, entries, depleting):
            self.guardrails.update(guard)
        self.guardrails.weigh_harm(attempt)

    def end_episode(self) -> None:
        """Re-distil every subgoal seen, so the stored knowledge reflects the whole episode."""
        if self.mode != "learn":
            return
        for key, window in self._windows.items():
            self._distill(key, window)

    def _distill(self, key: str, window: deque[ExperienceTuple]) -> None:
        skill = distill_skill(key, window, self._drift)
        if skill is not None:
            self.skills.update(skill)
        fresh = requirement_guardrails(key, window, skill, self._drift)
        for guard in fresh:
            self.guardrails.update(guard)
        self.guardrails.supersede(f"subgoal {key}", REQUIREMENT_ROOTS, {g.id for g in fresh})

    def _window(self, key: str) -> deque[ExperienceTuple]:
        """Attempts at ``key``: loaded from the store the first time (earlier runs count)."""
        if key not in self._windows:
            stored = list(self.store.by_subgoal(key, limit=WINDOW))[::-1]
            self._windows[key] = deque(stored, maxlen=WINDOW)
        return self._windows[key]
