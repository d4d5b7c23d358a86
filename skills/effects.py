"""Skills about where an action changes things: relative effect patterns learned from attempts.

An attempt at ``click:<row>,<col>`` whose diagnosis lists ``flip:<dr>,<dc>`` effects says
which cells, relative to the clicked one, changed look. Two kinds of skill come out of them:

- **per-region**: ``click:<row>,<col>`` does exactly what it did (newest attempt wins if they
  disagree), valid on boards of the same size (precondition ``tag:board:<R>x<C>``);
- **translation-invariant**: ``click:cell`` does the same relative pattern wherever it
  applies, clipped at the board's border. It is kept active only while every attempt on a
  cell agrees with one pattern (the union of what was seen) cut to that attempt's board, and
  only once ``min_evidence`` attempts back it; one that stops agreeing is demoted, and the
  per-region skills take over.

Nothing here knows a game: the effect names and facts come from the board diagnosis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from runtime.records import ExperienceTuple
from skills.model import Skill

GENERAL = "click:cell"
"""Subgoal key of the translation-invariant skill."""
EFFECT_PREFIX = "flip:"


def effect_name(dr: int, dc: int) -> str:
    return f"{EFFECT_PREFIX}{dr},{dc}"


def offsets(effects: Iterable[str]) -> set[tuple[int, int]]:
    """``flip:dr,dc`` effects as (dr, dc) offsets; other effects are ignored."""
    out = set()
    for e in effects:
        if e.startswith(EFFECT_PREFIX):
            dr, dc = e[len(EFFECT_PREFIX):].split(",")
            out.add((int(dr), int(dc)))
    return out


def board_shape(t: ExperienceTuple) -> tuple[int, int] | None:
    """The board size an attempt was made on, from its ``board:RxC`` tag."""
    for tag in t.pre.tags:
        if tag.startswith("board:"):
            rows, cols = tag[len("board:"):].split("x")
            return int(rows), int(cols)
    return None


def clip(pattern: Iterable[tuple[int, int]], cell: tuple[int, int],
         shape: tuple[int, int]) -> set[tuple[int, int]]:
    """The offsets of ``pattern`` that stay on a ``shape`` board when applied at ``cell``."""
    r, c = cell
    return {(dr, dc) for dr, dc in pattern if 0 <= r + dr < shape[0] and 0 <= c + dc < shape[1]}


def on_cell(t: ExperienceTuple) -> bool:
    return "region:cell" in t.pre.tags


def region_skills(attempts: Sequence[ExperienceTuple]) -> list[Skill]:
    """One skill per clicked cell that changed something (attempts oldest first)."""
    by_subgoal: dict[str, list[ExperienceTuple]] = {}
    for t in attempts:
        if on_cell(t) and t.diagnosis.success and t.id is not None:
            by_subgoal.setdefault(t.subgoal.key, []).append(t)
    skills = []
    for subgoal, done in by_subgoal.items():
        newest = done[-1]
        seen = offsets(newest.diagnosis.effects)
        agree = [t for t in done if offsets(t.diagnosis.effects) == seen]
        shape = board_shape(newest)
        skills.append(Skill(
            subgoal=subgoal, procedure=[{"controller": "click", "target": newest.subgoal.target}],
            preconditions=[f"tag:board:{shape[0]}x{shape[1]}"] if shape else [],
            verification=sorted(newest.diagnosis.effects), successes=len(agree),
            attempts=len(done), rewarded=0, provenance=[t.id for t in agree]))
    return skills


def general_skill(attempts: Sequence[ExperienceTuple], min_evidence: int) -> Skill | None:
    """The translation-invariant skill, or None while fewer than ``min_evidence`` back it.

    Its status is ``demoted`` when some attempt on a cell disagrees with the union pattern
    clipped to where it was made (the effect then depends on more than the offset).
    """
    tried = [t for t in attempts if on_cell(t) and t.id is not None and board_shape(t)]
    if len(tried) < min_evidence:
        return None
    pattern: set[tuple[int, int]] = set()
    for t in tried:
        pattern |= offsets(t.diagnosis.effects)
    if not pattern:
        return None
    agree = [t for t in tried if offsets(t.diagnosis.effects)
             == clip(pattern, t.pre.position, board_shape(t))]
    status = "active" if len(agree) == len(tried) else "demoted"
    return Skill(
        subgoal=GENERAL, procedure=[{"controller": "click", "target": "cell"}],
        preconditions=["tag:region:cell"],
        verification=sorted(effect_name(*o) for o in pattern), successes=len(agree),
        attempts=len(tried), rewarded=0, provenance=[t.id for t in agree], status=status)


def predicted(skill: Skill, cell: tuple[int, int], shape: tuple[int, int]) -> set[tuple[int, int]]:
    """Absolute cells a skill says a click on ``cell`` changes on a ``shape`` board."""
    r, c = cell
    return {(r + dr, c + dc) for dr, dc in clip(offsets(skill.verification), cell, shape)}
