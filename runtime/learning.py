"""Online distillation: after every attempt, the rules that fit the game's attempts distil
skills and guardrails again, so knowledge applies at the next step.

Two sets of rules exist, one per controller family:

- ``SubgoalRules`` (map games): one skill per subgoal (``cairn.skills.distill``), requirement
  guardrails per subgoal and harm guardrails about what hurt (``cairn.guardrails.distill``);
- ``EffectRules`` (board games): what each action does relative to its target, per cell and
  translation-invariant (``cairn.skills.effects``), and guardrails against acting on kinds
  of target where it never did anything (``cairn.guardrails.effects``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from cairn.experience.records import ExperienceTuple
from cairn.experience.store import ExperienceStore
from cairn.guardrails.distill import harm_guardrails, requirement_guardrails
from cairn.guardrails.effects import no_effect_guardrails
from cairn.guardrails.store import GuardrailSet
from cairn.runtime.controllers import TRAITS
from cairn.skills.distill import distill_skill
from cairn.skills.effects import general_skill, region_skills
from cairn.skills.library import SkillLibrary

if TYPE_CHECKING:
    from cairn.runtime.kits import Kit

REQUIREMENT_ROOTS = frozenset({"no_effect", "missing_requirement"})
WINDOW = 150
"""Attempts per subgoal that distillation looks at (the newest)."""
HISTORY = 2000
"""Newest stored attempts (per kind of target) that effect rules read at start."""
MODES = ("learn", "frozen", "off")


class Rules(Protocol):
    def observe(self, attempt: ExperienceTuple, learner: Learner, facts: dict[str, Any]
                ) -> None:
        """Distil again with ``attempt``; ``facts`` is the kit's ``learning_facts()`` as
        they stood right after it (they may have travelled from a worker process)."""

    def end_episode(self, learner: Learner) -> None: ...


class Learner:
    """Owns the skill library and the guardrail set of a run.

    ``mode``: ``"learn"`` distils and saves; ``"frozen"`` uses the stored knowledge as it is;
    ``"off"`` has no knowledge at all (the learning-disabled baseline). ``rules`` are set by
    the game's kit. ``outbox``, when a list, collects every attempt with its learning facts
    for a distiller elsewhere (a worker's attempts go to the run's one knowledge owner).
    """

    def __init__(self, store: ExperienceStore, mode: str = "learn", rules: Rules | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown learning mode '{mode}' (learn, frozen, off)")
        self.mode = mode
        self.skills = SkillLibrary()
        self.guardrails = GuardrailSet()
        self.use_store(store)
        self.rules = rules or SubgoalRules()
        self.outbox: list[tuple[ExperienceTuple, dict[str, Any]]] | None = None

    def use_store(self, store: ExperienceStore) -> None:
        """Read knowledge from ``store`` from now on (a worker takes a fresh snapshot per
        episode); the skill library and guardrail set are refilled in place, so planners
        keep them. Only ``learn`` writes back."""
        self.store = store
        if self.mode == "off":
            return
        knowledge = store.knowledge
        self.skills.skills = SkillLibrary(knowledge).skills
        self.guardrails.guardrails = GuardrailSet(knowledge).guardrails
        save = knowledge if self.mode == "learn" else None
        self.skills.knowledge = self.guardrails.knowledge = save

    def known(self) -> tuple[int, int]:
        """How many skills and guardrails it holds now."""
        return len(self.skills.skills), len(self.guardrails.guardrails)

    def observe(self, attempt: ExperienceTuple, kit: Kit | None = None) -> None:
        """Take in a stored (id-bearing) attempt and update knowledge at once."""
        if self.mode != "learn" and self.outbox is None:
            return
        facts = kit.learning_facts() if kit is not None else {}
        if self.outbox is not None:
            self.outbox.append((attempt, facts))
        self.observe_facts(attempt, facts)

    def observe_facts(self, attempt: ExperienceTuple, facts: dict[str, Any]) -> None:
        """Distil with an attempt played elsewhere, with the facts its kit had then."""
        if self.mode == "learn":
            self.rules.observe(attempt, self, facts)

    def end_episode(self) -> None:
        if self.mode == "learn":
            self.rules.end_episode(self)


class SubgoalRules:
    """Skills and requirement guardrails per subgoal, harm guardrails from what hurt.

    Its learning facts (``MapKit.learning_facts``) are the kinds entered before harm
    (``entries``) and the counters that drift by themselves (``drift``); see
    ``harm_guardrails`` and ``distill_skill``.
    """

    def __init__(self) -> None:
        self._windows: dict[str, deque[ExperienceTuple]] | None = None
        self._recent: deque[ExperienceTuple] = deque(maxlen=WINDOW * 4)
        self._drift: dict[str, set[int]] = {}

    def observe(self, attempt: ExperienceTuple, learner: Learner, facts: dict[str, Any]
                ) -> None:
        self.observe_with(attempt, learner, facts["entries"], facts["drift"])

    def observe_with(self, attempt: ExperienceTuple, learner: Learner, entries: dict[str, int],
                     drift: dict[str, set[int]]) -> None:
        key = attempt.subgoal.key
        windows = self._load(learner.store)  # maybe with this attempt
        window = windows.setdefault(key, deque(maxlen=WINDOW))
        if not window or window[-1].id != attempt.id:
            window.append(attempt)
        if not self._recent or self._recent[-1].id != attempt.id:
            self._recent.append(attempt)
        self._drift = drift
        self._distill(key, window, learner)
        depleting = {name for name, signs in drift.items() if -1 in signs}
        for guard in harm_guardrails(attempt, self._recent, entries, depleting, TRAITS):
            learner.guardrails.update(guard)
            learner.guardrails.forget(guard.forbidden)
        learner.guardrails.weigh_harm(attempt)

    def end_episode(self, learner: Learner) -> None:
        """Re-distil every subgoal seen, so the stored knowledge reflects the whole episode."""
        for key, window in (self._windows or {}).items():
            self._distill(key, window, learner)

    def _distill(self, key: str, window: deque[ExperienceTuple], learner: Learner) -> None:
        skill = distill_skill(key, window, self._drift, TRAITS)
        if skill is not None:
            learner.skills.update(skill)
        preconditions = skill.preconditions if skill is not None else None
        fresh = requirement_guardrails(key, window, preconditions, self._drift, TRAITS)
        for guard in fresh:
            learner.guardrails.update(guard)
        learner.guardrails.supersede(f"subgoal {key}", REQUIREMENT_ROOTS,
                                     {g.id for g in fresh})

    def _load(self, store: ExperienceStore) -> dict[str, deque[ExperienceTuple]]:
        """The newest attempts at every subgoal, and of all, read from the store the first
        time: earlier runs count, and a run that goes on from a store distils as the
        uninterrupted run would have."""
        if self._windows is None:
            self._windows = {key: deque(reversed(store.by_subgoal(key, limit=WINDOW)),
                                        maxlen=WINDOW) for key in store.subgoals()}
            self._recent.extend(reversed(store.newest(self._recent.maxlen)))
        return self._windows


class EffectRules:
    """What each action does around its target, and where it does nothing, from every
    attempt so far (this run's and the store's newest ``HISTORY`` per kind of target)."""

    def __init__(self, store: ExperienceStore, actions: list[str], min_evidence: int,
                 tags: tuple[str, ...], load: bool = True):
        self.actions, self.min_evidence = actions, min_evidence
        self.attempts: list[ExperienceTuple] = []
        if load:
            for tag in tags:
                self.attempts.extend(reversed(store.by_tag(tag, limit=HISTORY)))
            self.attempts.sort(key=lambda t: t.id)

    def observe(self, attempt: ExperienceTuple, learner: Learner, facts: dict[str, Any]
                ) -> None:
        self.attempts.append(attempt)
        for skill in region_skills(self.attempts):
            learner.skills.update(skill)
        for action in self.actions:
            general = general_skill(self.attempts, self.min_evidence, action)
            if general is not None:
                learner.skills.update(general)
        for guard in no_effect_guardrails(self.attempts, self.min_evidence):
            learner.guardrails.update(guard)

    def end_episode(self, learner: Learner) -> None:
        pass
