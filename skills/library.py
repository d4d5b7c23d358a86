"""The skill library: current skills in memory, every version in the store's tier 3."""

from __future__ import annotations

from collections.abc import Iterable

from cairn.experience.knowledge import Knowledge
from cairn.skills.model import Skill

KIND = "skill"
#: What a skill is; a change elsewhere (its statistics, provenance) is no new version.
IDENTITY = ("preconditions", "verification", "status")


class SkillLibrary:
    def __init__(self, knowledge: Knowledge | None = None):
        self.knowledge = knowledge
        self.skills: dict[str, Skill] = {}
        if knowledge is not None:
            for entry in knowledge.current(KIND):
                self.skills[entry.key] = Skill.from_dict(entry.body, entry.version)

    def update(self, skill: Skill) -> Skill:
        """Keep ``skill`` as the current version for its subgoal (a new version if changed)."""
        if self.knowledge is not None:
            skill.version = self.knowledge.put(
                KIND, skill.subgoal, skill.status, skill.to_dict(), subgoal=skill.subgoal,
                trigger=" & ".join(skill.preconditions), identity=IDENTITY)
        new = skill.subgoal not in self.skills
        self.skills[skill.subgoal] = skill
        if new:  # in key order, as the store gives them back: a resumed run sees the same
            self.skills = dict(sorted(self.skills.items()))
        return skill

    def active(self) -> list[Skill]:
        return [s for s in self.skills.values() if s.status == "active"]

    def get(self, subgoal: str) -> Skill | None:
        return self.skills.get(subgoal)

    def raising(self, counter: str) -> list[Skill]:
        """Active skills whose verified effect raises ``counter``, most reliable first."""
        found = [s for s in self.active() if counter in s.raises()]
        return sorted(found, key=lambda s: -s.success_rate)

    def creating(self, kind: str) -> list[Skill]:
        return [s for s in self.active() if kind in s.creates()]

    def rewarding(self) -> Iterable[Skill]:
        return [s for s in self.active() if s.rewarded > 0]
