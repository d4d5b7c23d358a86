"""Guardrails from clicks that changed nothing: forbid clicking where it never does anything.

A click attempt diagnosed ``no_effect`` is evidence against clicking regions like it with the
same action (``tag:action:<kind>``: ``click``, ``right_click``, ...). The region is described
by facts the board diagnosis writes: ``tag:region:outside`` (a point off the board) or
``tag:region:cell`` plus ``facing:<look>`` (a cell that looks like this).
Once ``min_evidence`` such failures agree and no click under the same trigger ever had an
effect, the guardrail forbids the ``click`` primitive while the trigger holds; clicks that do
have an effect under it count as contradictions and retire it.
"""

from __future__ import annotations

from collections.abc import Sequence

from cairn.experience.records import Cause, ExperienceTuple
from cairn.guardrails.model import Guardrail, Trigger

FORBIDDEN = "primitive click"


def region_trigger(t: ExperienceTuple) -> list[str]:
    """The facts that name the action and the kind of region an attempt clicked."""
    action = f"tag:action:{t.subgoal.controller}"
    if "region:outside" in t.pre.tags:
        return [action, "tag:region:outside"]
    return [action, "tag:region:cell", f"facing:{t.pre.facing_kind}"]


def no_effect_guardrails(attempts: Sequence[ExperienceTuple],
                         min_evidence: int) -> list[Guardrail]:
    """One guardrail per kind of region clicked without effect, with its evidence."""
    groups: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    for t in attempts:
        if t.id is None:
            continue
        failed, worked = groups.setdefault(tuple(region_trigger(t)), ([], []))
        if t.diagnosis.cause == Cause.NO_EFFECT:
            failed.append(t.id)
        elif t.diagnosis.success:
            worked.append(t.id)
    guards = []
    for trigger, (failed, worked) in groups.items():
        if not failed:
            continue
        status = "active" if len(failed) >= min_evidence else "candidate"
        if worked and len(worked) >= len(failed):
            status = "retired"
        guards.append(Guardrail(
            root_cause=str(Cause.NO_EFFECT),
            explanation=f"{len(failed)} click(s) on {' & '.join(trigger)} changed nothing "
                        "on the board",
            trigger=Trigger(all_of=list(trigger)), forbidden=FORBIDDEN, scope="subgoal",
            evidence=sorted(failed), contradictions=sorted(worked), status=status))
    return guards
