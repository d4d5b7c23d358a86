"""Skills about where an action changes things: relative effect patterns learned from attempts.

An attempt at ``click:<row>,<col>`` whose diagnosis lists ``changed:<dr>,<dc>`` effects says
which cells, relative to the clicked one, changed look. Two kinds of skill come out of them:

- **per-region**: ``click:<row>,<col>`` does exactly what it did (newest attempt wins if they
  disagree), valid on boards of the same size (precondition ``tag:board:<R>x<C>``);
- **translation-invariant**: ``click:cell`` does the same relative pattern wherever it
  applies, clipped at the board's border. It is kept active only while every attempt on a
  cell agrees with one pattern (the union of what was seen) cut to that attempt's board, and
  only once ``min_evidence`` attempts back it; one that stops agreeing is demoted, and the
  per-region skills take over.

The translation-invariant skill also keeps, per offset, what look a cell of each look turned
into (``procedure[0]["looks"]``, read off the 3x3 neighbourhood before and after; a cell that
kept its look is recorded too). A click that sets a cell (one look whatever it was, and no
change on a cell that already had it) and a click that toggles it are then both predicted,
and an attempt that changed nothing because the cell already had the look it sets agrees.

One skill of each kind is learned per action (``click``, ``right_click``, ...): the subgoal's
controller names the action.

Nothing here knows a game: the effect names and facts come from the board diagnosis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cairn.experience.records import ExperienceTuple, change_effect, parse_change
from cairn.skills.model import Skill

GENERAL = "click:cell"
"""Subgoal key of the translation-invariant skill."""


def effect_name(dr: int, dc: int) -> str:
    return change_effect(dr, dc)


def offsets(effects: Iterable[str]) -> set[tuple[int, int]]:
    """Change effects as (dr, dc) offsets from the target; other effects are ignored."""
    changes = (parse_change(e) for e in effects)
    return {(c[0], c[1]) for c in changes if c is not None}


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
            subgoal=subgoal, procedure=[{"controller": newest.subgoal.controller,
                        "target": newest.subgoal.target}],
            preconditions=[f"tag:board:{shape[0]}x{shape[1]}"] if shape else [],
            verification=sorted(newest.diagnosis.effects), successes=len(agree),
            attempts=len(done), rewarded=0, provenance=[t.id for t in agree]))
    return skills


def general_key(action: str = "click") -> str:
    """Subgoal key of an action's translation-invariant skill (``click:cell``)."""
    return f"{action}:cell"


def _near(state, dr: int, dc: int) -> str | None:
    """The look at offset (dr, dc) in a state's 3x3 neighbourhood (None beyond it)."""
    if abs(dr) > 1 or abs(dc) > 1 or not state.near:
        return None
    return state.near[dr + 1][dc + 1]


def _offset_key(o: tuple[int, int]) -> str:
    return f"{o[0]},{o[1]}"


def general_skill(attempts: Sequence[ExperienceTuple], min_evidence: int,
                  action: str = "click") -> Skill | None:
    """``action``'s translation-invariant skill, or None while fewer than ``min_evidence``
    attempts back it.

    Its status is ``demoted`` when some attempt on a cell disagrees with the union pattern
    clipped to where it was made and the looks learned (the effect then depends on more than
    the offset and the look), or when one look turned into two different ones.
    """
    tried = [t for t in attempts if on_cell(t) and t.id is not None and board_shape(t)
             and t.subgoal.controller == action]
    if len(tried) < min_evidence:
        return None
    pattern: set[tuple[int, int]] = set()
    for t in tried:
        pattern |= offsets(t.diagnosis.effects)
    if not pattern:
        return None
    looks: dict[str, dict[str, str]] = {}
    conflict = False
    for t in tried:
        for o in clip(pattern, t.pre.position, board_shape(t)):
            before, after = _near(t.pre, *o), _near(t.post, *o)
            if before is None or after is None:
                continue
            seen = looks.setdefault(_offset_key(o), {})
            conflict |= seen.setdefault(before, after) != after
    agree = [t for t in tried if offsets(t.diagnosis.effects)
             == _expected(pattern, looks, t.pre, board_shape(t))]
    status = "active" if len(agree) == len(tried) and not conflict else "demoted"
    return Skill(
        subgoal=general_key(action),
        procedure=[{"controller": action, "target": "cell", "looks": looks}],
        preconditions=["tag:region:cell"],
        verification=sorted(effect_name(*o) for o in pattern), successes=len(agree),
        attempts=len(tried), rewarded=0, provenance=[t.id for t in agree], status=status)


def _expected(pattern, looks, pre, shape) -> set[tuple[int, int]]:
    """Offsets a click at ``pre.position`` should change: those whose look is not known to
    stay as it is."""
    out = set()
    for o in clip(pattern, pre.position, shape):
        before = _near(pre, *o)
        if before is None or looks.get(_offset_key(o), {}).get(before, "") != before:
            out.add(o)
    return out


def predicted(skill: Skill, cell: tuple[int, int], shape: tuple[int, int],
              look_at=None) -> set[tuple[int, int]]:
    """Absolute cells a skill says a click on ``cell`` changes on a ``shape`` board
    (``look_at(cell)`` names a cell's look: cells known to keep it are left out)."""
    return set(predicted_looks(skill, cell, shape, look_at))


def predicted_looks(skill: Skill, cell: tuple[int, int], shape: tuple[int, int],
                    look_at=None) -> dict[tuple[int, int], str | None]:
    """Absolute cells a click on ``cell`` changes -> the look each turns into (None:
    unknown)."""
    r, c = cell
    looks = (skill.procedure[0].get("looks") or {}) if skill.procedure else {}
    out: dict[tuple[int, int], str | None] = {}
    for dr, dc in clip(offsets(skill.verification), cell, shape):
        table = looks.get(_offset_key((dr, dc)), {})
        before = look_at((r + dr, c + dc)) if look_at is not None else None
        after = table.get(before) if before is not None else None
        if after is not None and after == before:
            continue
        out[(r + dr, c + dc)] = after
    return out


def toggles_only(skill: Skill) -> bool:
    """No look learned to stay as it is, and looks swap in pairs: effects are toggles."""
    looks = (skill.procedure[0].get("looks") or {}) if skill.procedure else {}
    for table in looks.values():
        for before, after in table.items():
            if after == before or table.get(after, before) != before:
                return False
    return True
