"""The board family: click-a-cell games, seen as a grid of cells found on the screen.

Each click is one attempt at subgoal ``<action>:<row>,<col>`` (a cell of the perceived grid,
or a point just off it) with one of the config's ``board.actions`` (``click``,
``right_click``, ``middle_click``). Its target is the clicked region; the diagnosis lists the
offsets from it of the cells that changed look (``changed:-1,0``) or says ``no_effect``.
Distillation (``EffectRules``) learns what each action does around its target and where it
does nothing; the planner (``cairn.runtime.board_plan``) explores, then solves. The goal is
read off the screen as the config states it (see :class:`cairn.runtime.config.GoalConfig`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import cv2
import gymnasium as gym
import numpy as np

from cairn.envs.game import Game
from cairn.experience.records import (
    Cause,
    Diagnosis,
    State,
    Subgoal,
    change_effect,
    condition_signature,
)
from cairn.perception.grid import GridPercept, cell_features
from cairn.runtime.board_plan import BoardPlanner, Model, Region
from cairn.runtime.config import GoalConfig
from cairn.runtime.controllers import Outcome
from cairn.runtime.diagnosis import Trace
from cairn.runtime.learning import EffectRules
from cairn.runtime.planner import PlanContext, Planner
from cairn.skills.effects import general_key, predicted_looks, toggles_only

if TYPE_CHECKING:
    from cairn.runtime.config import RunConfig
    from cairn.runtime.executor import EpisodeState
    from cairn.runtime.learning import Learner

REGION_TAGS = ("region:cell", "region:outside")


class BoardKit:
    def __init__(self, game: Game, env: gym.Env, config: RunConfig, learner: Learner,
                 rng: np.random.Generator):
        self.env, self.board, self.learner = env, config.board, learner
        self.perceiver = game.perceiver(env)
        self.rules = board_rules(config, learner)
        self.max_attempts: int | None = self.board.max_clicks
        self.frame: np.ndarray | None = None
        self.percept: GridPercept | None = None
        self.targets: list[np.ndarray] = []

    def planner(self) -> Planner:
        return BoardPlanner(self)

    # -- the loop's side ----------------------------------------------------------------

    def begin(self, frame: np.ndarray, ep: EpisodeState) -> None:
        self.frame = frame
        self.percept = self.perceiver.parse(frame, refind=True)
        self.targets = self._targets(self.percept)

    def memory(self) -> dict[str, Any]:
        return {}  # what a board game teaches is all in skills and guardrails

    def recall(self, memory: dict[str, Any]) -> None:
        pass

    def context(self, ep: EpisodeState) -> PlanContext:
        state = self._state(ep.step, (0, 0))
        return PlanContext(state=state, condition=condition_signature(state.predicates()),
                           by_name=list(self.board.actions), can_sleep=False,
                           stats=lambda subgoal, condition: (0, 0),
                           skills=self.learner.skills, guardrails=self.learner.guardrails)

    def may_lack_requirement(self, subgoal: Subgoal, ctx: PlanContext) -> bool:
        return False

    def solved(self) -> bool:
        return any((self.percept.tiles == t).all() for t in self.targets)

    # -- the executor's side ------------------------------------------------------------

    def start_attempt(self, subgoal: Subgoal, ep: EpisodeState) -> State:
        self._region = _region(subgoal)
        self._action = subgoal.controller
        self._before = self.percept
        shape = self.percept.tiles.shape
        expected = self.models()[self._action](self._region) \
            if _on_board(self._region, shape) else None
        self._expected = set(expected) if expected is not None else None
        self._info: dict[str, Any] = {}
        return self._state(ep.step, self._region, self._action)

    def budget(self, subgoal: Subgoal) -> int:
        return 1

    def controller(self, subgoal: Subgoal) -> Generator[Any, None, Outcome]:
        """Click the region once; the diagnosis judges what it did."""
        x, y = self._point(self.percept, self._region)
        yield (self._action, x, y)
        return Outcome(target=self._region)

    def guard(self, action: Any, ep: EpisodeState) -> str | None:
        state = self._state(ep.step, self._region, self._action)
        guard = self.learner.guardrails.blocking_primitive("click", None, state.facts)
        return None if guard is None else guard.id

    def encode(self, action: tuple[str, int, int]) -> tuple[dict[str, Any], int]:
        from cairn.envs.desktop import mouse_click

        kind, x, y = action
        return mouse_click(kind, x, y), _action_index(self._region, self.percept.tiles.shape)

    def settled(self, frame: np.ndarray, truncated: bool) -> np.ndarray:
        if truncated:
            return frame
        # Once more: a game that pauses mid-animation (a busy machine) looks settled early,
        # and a half-drawn frame would blame this click for the next one's changes.
        return self.env.settle()[0]

    def observe(self, frame: np.ndarray, action: Any, ep: EpisodeState, trace: Trace,
                info: dict[str, Any]) -> None:
        self._info = info
        if info.get("window_closed"):
            ep.end = "window_closed"
            return
        self.percept = self.perceiver.parse(frame, previous=self.frame)
        self.frame = frame
        trace.positions.append(self._region)

    def finish_attempt(self, subgoal: Subgoal, pre: State, ep: EpisodeState, trace: Trace,
                       outcome: Outcome, may_lack_requirement: bool) -> tuple[State, Diagnosis]:
        post = self._state(ep.step, self._region, self._action)
        if trace.blocked_by is not None:
            return post, Diagnosis(False, Cause.GUARDRAIL_BLOCKED, {}, 0.0, [], 0.0, None, 0,
                                   0, detail=trace.blocked_by, target=self._region)
        diagnosis = self._diagnose(self._before, self.percept, trace)
        return post, diagnosis

    def learning_facts(self) -> dict[str, Any]:
        return {}  # the effect rules read the attempts alone

    def _diagnose(self, pre: GridPercept, post: GridPercept, trace: Trace) -> Diagnosis:
        region = self._region
        changed = [tuple(int(v) for v in rc) for rc in np.argwhere(post.changed_cells)] \
            if post is not pre else []
        effects = [change_effect(cr - region[0], cc - region[1]) for cr, cc in changed]
        tiles = [(cr - region[0], cc - region[1], pre.name_at(cr, cc), post.name_at(cr, cc))
                 for cr, cc in changed]
        progress = max(float((post.tiles == t).mean()) for t in self.targets)
        detail = ""
        if self._expected is not None and set(changed) != self._expected:
            detail = f"predicted {sorted(self._expected)}, saw {sorted(changed)}"
        if self._info.get("refused"):
            detail = f"refused: {self._info.get('reason')}"
        return Diagnosis(
            success=bool(changed), cause=Cause.SUCCESS if changed else Cause.NO_EFFECT,
            counter_deltas={}, reward=0.0, changed_tiles=tiles, progress=progress,
            distance=float(round((1 - progress) * post.tiles.size)), health_delta=0,
            steps=trace.steps, detail=detail, effects=sorted(effects), target=region)

    # -- perception and the goal --------------------------------------------------------

    def _point(self, percept: GridPercept, region: Region) -> tuple[int, int]:
        """Pixel to click: a cell's centre, or a point ``outside_margin`` cells off the board."""
        grid, (rows, cols) = percept.grid, percept.tiles.shape
        r, c = region
        cw = (grid.xs[-1] - grid.xs[0]) / cols
        ch = (grid.ys[-1] - grid.ys[0]) / rows
        m = self.board.outside_margin
        x = (grid.xs[0] - m * cw if c < 0 else grid.xs[-1] + m * cw if c >= cols
             else percept.centers[0, c][0])
        y = (grid.ys[0] - m * ch if r < 0 else grid.ys[-1] + m * ch if r >= rows
             else percept.centers[r, 0][1])
        return int(round(x)), int(round(y))

    def _state(self, step: int, region: Region, action: str = "click") -> State:
        percept = self.percept
        rows, cols = percept.tiles.shape
        r, c = region
        inside = _on_board(region, (rows, cols))
        near = [[percept.name_at(r + dr, c + dc) if _on_board((r + dr, c + dc), (rows, cols))
                 else None for dc in (-1, 0, 1)] for dr in (-1, 0, 1)]
        tags = [f"action:{action}", f"board:{rows}x{cols}",
                f"region:{'cell' if inside else 'outside'}",
                f"row:{_side(r, rows)}", f"col:{_side(c, cols)}"]
        return State(step, (r, c), (0, 0), {}, percept.name_at(r, c) if inside else None,
                     near, sorted(percept.visible()), tags)

    def _targets(self, percept: GridPercept) -> list[np.ndarray]:
        """Class grids that count as the goal, from the config's goal and the first frame."""
        goal: GoalConfig = self.board.goal
        shape = percept.tiles.shape
        if goal.kind == "image":
            image = _load_goal(goal.image, percept)
            ids, _ = self.perceiver.clusters.assign(
                cell_features(image, percept.grid, self.perceiver.config), learn=False)
            return [ids.reshape(shape)]
        classes = np.unique(percept.tiles)
        if goal.colour is not None:
            centroids = self.perceiver.clusters.centroids
            colour = np.asarray(goal.colour, np.float32)
            classes = [min(classes, key=lambda k: float(
                np.abs(centroids[k].reshape(-1, 3).mean(axis=0) - colour).sum()))]
        return [np.full(shape, k) for k in classes]

    # -- knowledge, as the planner uses it ----------------------------------------------

    def models(self) -> dict[str, Model]:
        """Per action, what it does to a cell by the skills: translation-invariant if active
        (with the looks cells turn into), else the cell's own skill on a board this size."""
        percept = self.percept
        shape = percept.tiles.shape
        board_fact = f"tag:board:{shape[0]}x{shape[1]}"
        skills = self.learner.skills
        # Every look named so far (the goal picture's too, which this frame may not show).
        ids = {name: i for i, name in enumerate(self.perceiver.clusters.names)}

        def look_at(cell: Region) -> str:
            return percept.name_at(*cell)

        def model_for(action: str) -> Model:
            general = skills.get(general_key(action))

            def model(cell: Region) -> dict[Region, int | None] | None:
                if general is not None and general.status == "active":
                    looks = predicted_looks(general, cell, shape, look_at)
                    return {p: ids.get(after) if after is not None else None
                            for p, after in looks.items()}
                own = skills.get(f"{action}:{cell[0]},{cell[1]}")
                if own is not None and own.status == "active" and own.applicable({board_fact}):
                    return dict.fromkeys(predicted_looks(own, cell, shape))
                return None
            return model
        return {action: model_for(action) for action in self.board.actions}

    def toggles(self) -> bool:
        """Every active translation-invariant skill toggles (none sets a look) between the
        same two looks: only then is the goal a GF(2) system."""
        seen: set[str] = set()
        for action in self.board.actions:
            general = self.learner.skills.get(general_key(action))
            if general is None or general.status != "active":
                continue
            if not toggles_only(general):
                return False
            for table in (general.procedure[0].get("looks") or {}).values():
                seen |= set(table) | set(table.values())
        return len(seen) <= 2

    def blocked(self) -> Callable[[str, Region], bool]:
        def blocked(action: str, region: Region) -> bool:
            state = self._state(0, region, action)
            guardrails = self.learner.guardrails
            return guardrails.blocking_primitive("click", None, state.facts) is not None
        return blocked


def board_rules(config: RunConfig, learner: Learner) -> EffectRules:
    board = config.board
    return EffectRules(learner.store, board.actions, board.min_evidence, REGION_TAGS,
                       load=learner.mode != "off")


def _region(subgoal: Subgoal) -> Region:
    row, col = (subgoal.target or "").split(",")
    return int(row), int(col)


def _on_board(region: Region, shape: tuple[int, int]) -> bool:
    return 0 <= region[0] < shape[0] and 0 <= region[1] < shape[1]


def _side(i: int, n: int) -> str:
    return "outside" if i < 0 or i >= n else "first" if i == 0 else "last" if i == n - 1 \
        else "middle"


def _action_index(region: Region, shape: tuple[int, int]) -> int:
    """Regions numbered in raster order over the board and its ring (-1..R, -1..C)."""
    return (region[0] + 1) * (shape[1] + 2) + region[1] + 1


def _load_goal(path: str | None, percept: GridPercept) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path else None
    if image is None:
        raise ValueError(f"goal image {path!r} cannot be read (a PNG screenshot of the window)")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    x1, y1 = percept.grid.box[2:]
    if image.shape[0] < y1 or image.shape[1] < x1:
        raise ValueError(f"goal image {path} is {image.shape[1]}x{image.shape[0]}: smaller than "
                         "the game window; use a screenshot of the whole window")
    return image
