"""Which knowledge an attempt produced or was blocked by, and which attempts a piece of
knowledge rests on: the links between a recording's timeline and the store's knowledge."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from cairn.experience.records import Cause, ExperienceTuple
from cairn.experience.store import ExperienceStore
from cairn.guardrails.store import KIND as GUARDRAIL
from cairn.skills.library import KIND as SKILL


@dataclass(frozen=True)
class Link:
    kind: str
    """``skill`` or ``guardrail``."""
    key: str
    """The skill's subgoal or the guardrail's id."""
    role: str
    """``produced`` (the attempt is in its provenance or evidence), ``contradicts`` (an
    attempt that went well while a guardrail's trigger held) or ``blocked`` (the guardrail
    stopped the attempt)."""


def store_ids(store: ExperienceStore, attempts: list[ExperienceTuple]) -> list[int | None]:
    """Each attempt's id in ``store`` (None where the store does not hold it). A recording
    made in-process carries the ids; one made by a worker does not, so the attempt is
    found by its episode and first step."""
    by_episode: dict[str, dict[int, int]] = {}
    found = []
    for t in attempts:
        if t.episode not in by_episode:
            hits = store.by_episode(t.episode)
            by_episode[t.episode] = {h.step_start: i for h, i in zip(hits, hits.ids, strict=True)}
        stored = by_episode[t.episode].get(t.step_start)
        found.append(stored if stored is not None and (t.id is None or t.id == stored) else
                     None)
    return found


def knowledge_by_attempt(store: ExperienceStore) -> dict[int, list[Link]]:
    """Attempt id -> the current skills and guardrails that name it as evidence."""
    links: dict[int, list[Link]] = defaultdict(list)
    for entry in store.knowledge.current(SKILL):
        for attempt_id in entry.body.get("provenance", []):
            links[attempt_id].append(Link(SKILL, entry.key, "produced"))
    for entry in store.knowledge.current(GUARDRAIL):
        for attempt_id in entry.body.get("evidence", []):
            links[attempt_id].append(Link(GUARDRAIL, entry.key, "produced"))
        for attempt_id in entry.body.get("contradictions", []):
            links[attempt_id].append(Link(GUARDRAIL, entry.key, "contradicts"))
    return links


def links_for(t: ExperienceTuple, attempt_id: int | None,
              index: dict[int, list[Link]]) -> list[Link]:
    """What ``t`` produced, contradicted or was blocked by."""
    found = list(index.get(attempt_id, [])) if attempt_id is not None else []
    if t.diagnosis.cause == Cause.GUARDRAIL_BLOCKED and t.diagnosis.detail:
        found.append(Link(GUARDRAIL, t.diagnosis.detail, "blocked"))
    return found
