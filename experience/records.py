"""The records every attempt leaves behind: state summaries, subgoals, diagnoses, tuples.

They are plain dataclasses that turn into JSON-ready dicts and back, so the store, the
recording and the inspection commands share one schema.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any

FACT_MAX_COUNT = 9


class Cause(StrEnum):
    """Why an attempt ended the way it did; a closed vocabulary decided by rules."""

    SUCCESS = "success"
    TARGET_NOT_VISIBLE = "target_not_visible"
    PATH_BLOCKED = "path_blocked"
    NO_EFFECT = "no_effect"
    MISSING_REQUIREMENT = "missing_requirement"
    DAMAGE_TAKEN = "damage_taken"
    DIED = "died"
    TIMEOUT = "timeout"
    STAGNATION = "stagnation"
    LOOP = "loop"
    DEADLOCK = "deadlock"
    GUARDRAIL_BLOCKED = "guardrail_blocked"


@dataclass(frozen=True)
class Subgoal:
    """One thing to try: a controller name and its target (a tile kind or an action name)."""

    controller: str
    target: str | None = None

    @property
    def key(self) -> str:
        return self.controller if self.target is None else f"{self.controller}:{self.target}"

    @classmethod
    def parse(cls, key: str) -> Subgoal:
        controller, _, target = key.partition(":")
        return cls(controller, target or None)


@lru_cache(maxsize=1024)
def _thresholds(name: str, top: int) -> tuple[str, ...]:
    """``name>=1`` .. ``name>=top``, the facts a counter at ``top`` holds."""
    return tuple(f"{name}>={n}" for n in range(1, top + 1))


@dataclass
class State:
    """What the agent believed at one step: its own estimates, never the env's state."""

    step: int
    position: tuple[int, int]
    facing: tuple[int, int]
    counters: dict[str, int]
    facing_kind: str | None
    near: list[list[str | None]]
    visible: list[str]
    tags: list[str] = field(default_factory=list)

    def predicates(self) -> frozenset[str]:
        """Discretized facts a decision may hinge on; the basis of condition signatures."""
        preds = {f"has:{name}" for name, count in self.counters.items() if count > 0}
        preds.add(f"facing:{self.facing_kind}")
        preds.update(f"near:{kind}" for row in self.near for kind in row if kind)
        preds.update(f"tag:{tag}" for tag in self.tags)
        return frozenset(preds)

    def facts(self) -> frozenset[str]:
        return self._facts

    @cached_property
    def _facts(self) -> frozenset[str]:
        """Finer facts for learning requirements and dangers: counter thresholds
        (``wood>=2``), zero counters (``food=0``), what is faced, near and in view."""
        facts = {f"facing:{self.facing_kind}"}
        for name, count in self.counters.items():
            if count <= 0:
                facts.add(f"{name}=0")
            facts.update(_thresholds(name, int(min(count, FACT_MAX_COUNT))))
        facts.update(f"near:{kind}" for row in self.near for kind in row if kind)
        facts.update(f"see:{kind}" for kind in self.visible)
        facts.update(f"tag:{tag}" for tag in self.tags)
        return frozenset(facts)

    def unplaced_facts(self) -> frozenset[str]:
        """``facts()`` without what is faced, near or in view (what the agent would leave
        behind by walking off)."""
        return self._unplaced_facts

    @cached_property
    def _unplaced_facts(self) -> frozenset[str]:
        return frozenset(f for f in self.facts() if not f.startswith(("facing:", "near:", "see:")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "position": list(self.position), "facing": list(self.facing),
            "counters": self.counters, "facing_kind": self.facing_kind, "near": self.near,
            "visible": self.visible, "tags": self.tags,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        return cls(
            d["step"], tuple(d["position"]), tuple(d["facing"]), dict(d["counters"]),
            d["facing_kind"], d["near"], list(d["visible"]), list(d.get("tags", [])),
        )


@dataclass
class Diagnosis:
    """How an attempt went: the cause, what changed, and continuous indicators."""

    success: bool
    cause: Cause
    counter_deltas: dict[str, int]
    reward: float
    changed_tiles: list[tuple[int, int, str | None, str | None]]
    """(drow, dcol, kind before, kind after) of every tile or cell whose kind changed, as
    offsets from ``target`` (from where the attempt started when it had none)."""
    progress: float
    distance: float | None
    health_delta: int
    steps: int
    stagnation: bool = False
    loop: bool = False
    detail: str = ""
    effects: list[str] = field(default_factory=list)
    """What the agent caused, in one vocabulary for every game (see ``counter_effect`` and
    ``change_effect``): ``wood+1`` (a counter change that never happens on its own),
    ``changed:0,0:grass>table`` (the target turned into another kind), ``changed:-1,0``
    (the thing just above the target changed), ``reward``."""
    entered: str | None = None
    """The kind of tile the last step moved onto, if it was a move."""
    target: tuple[int, int] | None = None
    """Where the attempt acted (a struck tile, a clicked cell); effects are relative to it."""
    planner: str = ""
    """How a planner other than the kit's own chose the subgoal: ``llm`` (the model's
    choice was followed) or ``fallback:<reason> (<detail>)``; empty for the kit's planner,
    and then left out of the dict, so such records are as they always were."""

    def to_dict(self) -> dict[str, Any]:
        planner = {"planner": self.planner} if self.planner else {}
        return {
            "success": self.success, "cause": str(self.cause),
            "counter_deltas": self.counter_deltas, "reward": self.reward,
            "changed_tiles": [list(t) for t in self.changed_tiles],
            "progress": self.progress, "distance": self.distance,
            "health_delta": self.health_delta, "steps": self.steps,
            "stagnation": self.stagnation, "loop": self.loop, "detail": self.detail,
            "effects": self.effects, "entered": self.entered,
            "target": list(self.target) if self.target is not None else None,
            **planner,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        return cls(
            d["success"], Cause(d["cause"]), dict(d["counter_deltas"]), d["reward"],
            [tuple(t) for t in d["changed_tiles"]], d["progress"], d["distance"],
            d["health_delta"], d["steps"], d["stagnation"], d["loop"], d.get("detail", ""),
            [upgrade_effect(e) for e in d.get("effects", [])], d.get("entered"),
            tuple(d["target"]) if d.get("target") is not None else None,
            d.get("planner", ""),
        )


@dataclass
class ExperienceTuple:
    """One subgoal attempt: (pre-state, action, diagnosis, post-state) plus its keys."""

    episode: str
    step_start: int
    step_end: int
    pre: State
    subgoal: Subgoal
    primitives: list[int]
    diagnosis: Diagnosis
    post: State
    id: int | None = None

    @property
    def condition(self) -> int:
        return condition_signature(self.pre.predicates())

    @property
    def spatial(self) -> int:
        return spatial_hash(self.pre.position)

    @property
    def tags(self) -> list[str]:
        """Semantic tags: what was faced and near, the cause, and the state's own tags."""
        tags = {f"cause:{self.diagnosis.cause}", f"subgoal:{self.subgoal.key}"}
        if self.pre.facing_kind:
            tags.add(f"facing:{self.pre.facing_kind}")
        tags.update(self.pre.tags)
        return sorted(tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "episode": self.episode, "step_start": self.step_start,
            "step_end": self.step_end, "pre": self.pre.to_dict(), "subgoal": self.subgoal.key,
            "primitives": self.primitives, "diagnosis": self.diagnosis.to_dict(),
            "post": self.post.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperienceTuple:
        return cls(
            d["episode"], d["step_start"], d["step_end"], State.from_dict(d["pre"]),
            Subgoal.parse(d["subgoal"]), list(d["primitives"]),
            Diagnosis.from_dict(d["diagnosis"]), State.from_dict(d["post"]), d.get("id"),
        )


CHANGE = "changed:"


def counter_effect(name: str, delta: int) -> str:
    """A counter the agent changed: ``wood+1``."""
    return f"{name}{delta:+d}"


@lru_cache(maxsize=4096)  # a small vocabulary, split again by every distillation
def split_counter_effect(effect: str) -> tuple[str | None, str, int]:
    """``wood+1`` -> ("wood", "+", 1); anything else -> (None, "", 0)."""
    for i, ch in enumerate(effect):
        if ch in "+-" and i > 0 and effect[i + 1:].isdigit() and ":" not in effect:
            return effect[:i], ch, int(effect[i + 1:])
    return None, "", 0


def change_effect(dr: int, dc: int, before: str | None = None, after: str | None = None) -> str:
    """A change of kind at offset (dr, dc) from the attempt's target: ``changed:0,0:a>b``,
    or ``changed:-1,0`` when only where it happened matters."""
    kinds = f":{before}>{after}" if before is not None or after is not None else ""
    return f"{CHANGE}{dr},{dc}{kinds}"


def parse_change(effect: str) -> tuple[int, int, str | None, str | None] | None:
    """``changed:dr,dc[:a>b]`` -> (dr, dc, a, b); None for any other effect."""
    if not effect.startswith(CHANGE):
        return None
    offset, _, kinds = effect[len(CHANGE):].partition(":")
    dr, dc = (int(v) for v in offset.split(","))
    before, _, after = kinds.partition(">")
    return dr, dc, before or None, after or None


_LEGACY_OFFSET = re.compile(r"^[a-z_]+:(-?\d+,-?\d+)$")


def upgrade_effect(effect: str) -> str:
    """An effect as written by Cairn before effects had one vocabulary: ``tile:a>b`` was
    the target's change of kind, ``<name>:dr,dc`` a change at an offset from it."""
    if effect.startswith("tile:"):
        before, _, after = effect[len("tile:"):].partition(">")
        return change_effect(0, 0, before, after)
    legacy = _LEGACY_OFFSET.match(effect)
    if legacy and not effect.startswith(CHANGE):
        return CHANGE + legacy.group(1)
    return effect


def condition_signature(predicates: frozenset[str] | set[str]) -> int:
    """A stable signed 64-bit hash of a predicate set (the same in every process and run)."""
    digest = hashlib.blake2b("\n".join(sorted(predicates)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


SPATIAL_CELL = 8


def spatial_hash(position: tuple[int, int], cell: int = SPATIAL_CELL) -> int:
    """Bucket a position into a ``cell`` x ``cell`` square, packed into one 32-bit integer."""
    row, col = position[0] // cell, position[1] // cell
    return (row & 0xFFFF) << 16 | (col & 0xFFFF)
