"""The guardrail set: current guardrails in memory, all versions in the store's tier 3,
and the checks the planner and the executor run against them."""

from __future__ import annotations

from collections.abc import Callable

from cairn.experience.knowledge import Knowledge
from cairn.experience.records import ExperienceTuple
from cairn.guardrails.model import Guardrail

KIND = "guardrail"
#: What a guardrail is; more evidence or contradictions alone is no new version.
IDENTITY = ("root_cause", "trigger", "forbidden", "scope", "status")
CONFIRMATIONS = 2
"""Harm events a guardrail about a non-fatal loss needs before it is enforced."""
HARM_ROOTS = frozenset({"damage_taken", "died"})
UNCONFIRMED = 4
"""Harm guardrails seen once and never tested that a subgoal keeps (see ``forget``)."""
CONFIRMED_KEPT = 4
"""Active harm guardrails with more evidence that a subgoal keeps (see ``forget``)."""


class GuardrailSet:
    def __init__(self, knowledge: Knowledge | None = None):
        self.knowledge = knowledge
        self.guardrails: dict[str, Guardrail] = {}
        self._updates = 0  # update() calls, which may replace a guardrail in place
        self._index: tuple[dict[str, Guardrail], int, int, tuple[
            dict[str, list[Guardrail]], list[Guardrail], set[str]]] | None = None
        if knowledge is not None:
            for entry in knowledge.current(KIND):
                self.guardrails[entry.key] = Guardrail.from_dict(entry.body, entry.version)

    def update(self, guard: Guardrail) -> Guardrail:
        """Merge a freshly distilled guardrail into the one with the same id, if any.

        Evidence accumulates; a guardrail a person disabled stays disabled; a candidate
        (one non-fatal harm) becomes active once the harm is seen again.
        """
        old = self.guardrails.get(guard.id)
        if old is not None:
            guard.evidence = sorted(set(old.evidence) | set(guard.evidence))
            guard.contradictions = sorted(set(old.contradictions) | set(guard.contradictions))
            if old.status == "disabled":
                guard.status = "disabled"
            elif guard.status == "candidate" and len(guard.evidence) >= CONFIRMATIONS:
                guard.status = "active"  # the same harm seen again: confirmed
            elif old.status == "retired" and guard.status == "active" and \
                    len(guard.contradictions) >= len(guard.evidence):
                guard.status = "retired"
        if self.knowledge is not None:
            subgoal = guard.forbidden.split(" ", 1)[1] if guard.forbidden.startswith(
                "subgoal ") else ""
            guard.version = self.knowledge.put(
                KIND, guard.id, guard.status, guard.to_dict(), subgoal=subgoal,
                trigger=guard.trigger.describe(), identity=IDENTITY)
        new = guard.id not in self.guardrails
        self.guardrails[guard.id] = guard
        if new:  # in key order, as the store gives them back: a resumed run sees the same
            self.guardrails = dict(sorted(self.guardrails.items()))
        self._updates += 1
        return guard

    def supersede(self, forbidden: str, roots: frozenset[str], keep: set[str]) -> None:
        """Retire the active guardrails on ``forbidden`` with one of ``roots`` as root cause
        that the latest distillation no longer produces (``keep``): the evidence has moved
        on, e.g. from "nothing new at hand" to the one requirement it now points to."""
        for guard in list(self.guardrails.values()):
            if guard.forbidden == forbidden and guard.root_cause in roots \
                    and guard.status == "active" and guard.id not in keep:
                guard.status = "retired"
                self.update(guard)

    def forget(self, forbidden: str) -> None:
        """Retire the oldest harm guardrails on ``forbidden`` that rest on one harm and
        were never tested, beyond the newest ``UNCONFIRMED``, and the weakest of the others
        (fewest harms beyond their contradictions, then the least recently hurt), beyond
        ``CONFIRMED_KEPT``. Most harms seen once were chance (the companion facts of a
        danger met once), and over a long run chance also brings the same companions
        twice: both would pile up for ever. One that comes back is distilled again, finds
        its retired self with the evidence it had, and competes for a place again."""
        unconfirmed, confirmed = [], []
        for g in self._by_forbidden().get(forbidden, ()):
            if g.root_cause not in HARM_ROOTS or g.status not in ("active", "candidate"):
                continue
            if len(g.evidence) == 1 and not g.contradictions:
                unconfirmed.append(g)
            elif g.status == "active":
                confirmed.append(g)
        unconfirmed.sort(key=lambda g: (g.evidence[0], g.id))
        confirmed.sort(key=lambda g: (len(g.evidence) - len(g.contradictions), g.evidence[-1],
                                      g.id))
        for guard in unconfirmed[:-UNCONFIRMED] + confirmed[:-CONFIRMED_KEPT]:
            guard.status = "retired"
            self.update(guard)

    def weigh_harm(self, attempt: ExperienceTuple) -> None:
        """An attempt at a subgoal a harm guardrail forbids, made while its trigger held
        (on probation, see ``on_probation``, or not yet enforced: a candidate) and unharmed,
        contradicts it; as many contradictions as harms retire it. A harm seen once and
        then not again in the same situation was chance, and is not kept waiting."""
        d = attempt.diagnosis
        if d.health_delta < 0 or d.cause == "died":
            return
        facts = attempt.pre.facts()
        for guard in list(self._by_forbidden().get(f"subgoal {attempt.subgoal.key}", ())):
            if guard.root_cause not in HARM_ROOTS or guard.status not in ("active", "candidate") \
                    or not guard.trigger.holds(facts) or attempt.id in guard.contradictions:
                continue
            guard.contradictions = sorted({*guard.contradictions, attempt.id})
            if len(guard.contradictions) >= len(guard.evidence):
                guard.status = "retired"
            self.update(guard)

    @staticmethod
    def on_probation(guard: Guardrail) -> bool:
        """Harm guardrails on subgoals may be broken now and then to test them: a harm
        seen a couple of times may have been chance, and a guardrail that is never broken
        can never be contradicted."""
        return guard.root_cause in HARM_ROOTS and guard.forbidden.startswith("subgoal ")

    def active(self) -> list[Guardrail]:
        return list(self._indexes()[1])

    def blocking_subgoal(self, subgoal: str, facts: frozenset[str]) -> Guardrail | None:
        """The first active guardrail that forbids ``subgoal`` in a state with ``facts``."""
        blocking = self.blocking_subgoal_all(subgoal, facts)
        return blocking[0] if blocking else None

    def blocking_subgoal_all(self, subgoal: str, facts: frozenset[str]) -> list[Guardrail]:
        """Every active guardrail that forbids ``subgoal`` in a state with ``facts``."""
        # Guardrail.blocks_subgoal over the guardrails on this subgoal only: the planner
        # asks this of every candidate subgoal, every time it plans.
        return [g for g in self._by_forbidden().get(f"subgoal {subgoal}", ())
                if g.status == "active" and g.trigger.holds(facts)]

    def _by_forbidden(self) -> dict[str, list[Guardrail]]:
        """The guardrails by what they forbid, each list in ``guardrails`` order."""
        return self._indexes()[0]

    def _indexes(self) -> tuple[dict[str, list[Guardrail]], list[Guardrail], set[str]]:
        """What the planner asks of the whole set every time it plans (the guardrails by
        what they forbid, the active ones, the harmful kinds), worked out once per change:
        again when ``guardrails`` is another dict, changes size or went through
        ``update()``, which every change of status here goes through."""
        guardrails, cached = self.guardrails, self._index
        if cached is None or cached[0] is not guardrails or cached[1] != len(guardrails) \
                or cached[2] != self._updates:
            index: dict[str, list[Guardrail]] = {}
            active: list[Guardrail] = []
            kinds: set[str] = set()
            for guard in guardrails.values():
                index.setdefault(guard.forbidden, []).append(guard)
                if guard.status == "active":
                    active.append(guard)
                if guard.root_cause in HARM_ROOTS and guard.status != "retired":
                    kinds.update(f.split(":", 1)[1] for f in guard.trigger.all_of
                                 if f.startswith(("near:", "see:")))
            cached = self._index = (guardrails, len(guardrails), self._updates,
                                    (index, active, kinds))
        return cached[3]

    def harmful_kinds(self) -> set[str]:
        """Kinds named by guardrails about harm (``near:K`` / ``see:K`` in their triggers)."""
        return set(self._indexes()[2])

    def forbidden_entries(self) -> set[str]:
        """Tile kinds the agent must not step onto."""
        return {g.forbidden.split(" ", 1)[1] for g in self.active()
                if g.forbidden.startswith("enter ") and not g.trigger.all_of}

    def primitive_rules(self) -> list[Guardrail]:
        """Active guardrails the executor checks before each action."""
        return [g for g in self.active() if g.forbidden.startswith(("primitive ", "enter "))]

    def blocking_primitive(self, action: str, entering: str | None,
                           facts: Callable[[], frozenset[str]]) -> Guardrail | None:
        """The first active guardrail that forbids sending ``action`` now (``entering`` is
        the kind of tile a move would step onto; ``facts`` is called only if needed)."""
        known: frozenset[str] | None = None
        for guard in self.primitive_rules():
            if guard.forbidden not in (f"primitive {action}", f"enter {entering}"):
                continue
            if guard.trigger.unconditional():
                return guard
            known = facts() if known is None else known
            if guard.trigger.holds(known):
                return guard
        return None
