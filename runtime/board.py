"""The board agent: plays a click-a-cell game from the screen, learning what clicks do.

Each click is one attempt at subgoal ``<action>:<row>,<col>`` (a generic controller: click a
region of the perceived grid, or a point just off it, with the config's ``board.actions``:
``click``, ``right_click``, ``middle_click``). The attempt's diagnosis lists the
relative offsets of the cells that changed look (``flip:-1,0``) or says ``no_effect``; it goes
to the experience store and the episode recording, and after every attempt the skills
(:mod:`skills.effects`) and guardrails (:mod:`guardrails.effects`) are distilled again from
every stored click, so the next choice (:mod:`runtime.board_plan`) already uses them. The goal
is read off the screen as the config states it (see :class:`runtime.config.GoalConfig`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from cairn.experience.recording import EpisodeRecorder
from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.experience.store import ExperienceStore
from cairn.guardrails.effects import no_effect_guardrails
from cairn.guardrails.store import GuardrailSet
from cairn.perception.grid import GridConfig, GridPerceiver, GridPercept, cell_features
from cairn.runtime.board_plan import Model, Region, choose, explore_kind
from cairn.runtime.config import GoalConfig, RunConfig
from cairn.skills.effects import (
    effect_name,
    general_key,
    general_skill,
    predicted_looks,
    region_skills,
    toggles_only,
)
from cairn.skills.library import SkillLibrary

log = logging.getLogger(__name__)

HISTORY = 2000
"""Newest stored clicks (per region kind) that distillation reads at start."""


@dataclass
class BoardResult:
    episode: str
    board: str
    clicks: int
    explore_clicks: int
    solved: bool
    end: str
    seconds: float


class BoardAgent:
    """Plays episodes of a board game in ``env`` (a DesktopEnv) with ``store``'s knowledge."""

    def __init__(self, config: RunConfig, store: ExperienceStore, env,
                 run_dir: Path | None = None):
        self.config, self.board, self.store, self.env = config, config.board, store, env
        self.run_dir = run_dir
        self.learn = config.learning == "learn"
        knowledge = store.knowledge if config.learning != "off" else None
        self.skills = SkillLibrary(knowledge)
        self.guardrails = GuardrailSet(knowledge)
        if not self.learn:  # frozen (or off): read what is stored, never write
            self.skills.knowledge = self.guardrails.knowledge = None
        self.perceiver = GridPerceiver(GridConfig(rows=self.board.rows, cols=self.board.cols))
        self.attempts: list[ExperienceTuple] = []
        if config.learning != "off":
            for tag in ("region:cell", "region:outside"):
                self.attempts.extend(reversed(store.by_tag(tag, limit=HISTORY)))
            self.attempts.sort(key=lambda t: t.id)

    # -- one episode -----------------------------------------------------------------------

    def board_id(self, seed: int, index: int) -> str:
        ids = self.board.ids
        return ids[index % len(ids)] if ids else f"{self.board.params}#{seed}"

    def run_episode(self, seed: int, index: int,
                    progress: Callable[[int, str], None] | None = None) -> BoardResult:
        board = self.board_id(seed, index)
        name = f"{self.config.name}-{index:03d}-{time.strftime('%H%M%S')}"
        start = time.perf_counter()
        frame, _ = self.env.reset(seed=seed, options={"format": {"board": board}})
        percept = self.perceiver.parse(frame, refind=True)
        targets = self._targets(percept)
        recorder = None
        if self.run_dir is not None:
            recorder = EpisodeRecorder(self.run_dir / f"episode-{index:03d}",
                                       {"seed": seed, "board": board, "config": self.config.name})
            recorder.record_reset(frame)
        clicks = explore = 0
        explored: dict[str, int] = {}
        tried: set[tuple[str, Region]] = set()
        end = "max_clicks"
        try:
            while clicks < self.board.max_clicks:
                shape = percept.tiles.shape
                models = self._models(percept)
                choice = choose(shape, percept.tiles, targets, models, self._blocked(percept),
                                explored, tried, self.board.explore_outside,
                                self._toggles())
                if choice.region is None:
                    end = choice.reason
                    break
                if choice.reason == "explore":
                    kind = explore_kind(choice.action, choice.region, shape)
                    explored[kind] = explored.get(kind, 0) + 1
                    explore += 1
                tried.add((choice.action, choice.region))
                frame, percept, truncated = self._attempt(
                    name, clicks, frame, percept, choice.action, choice.region, choice.plan,
                    targets, recorder, models[choice.action])
                clicks += 1
                if progress is not None:
                    progress(clicks, choice.reason)
                if truncated:
                    end = "window_closed"
                    break
        finally:
            solved = any((percept.tiles == t).all() for t in targets)
            if recorder is not None:
                recorder.close("solved" if solved else end)
        return BoardResult(name, board, clicks, explore, solved, end,
                           time.perf_counter() - start)

    def _attempt(self, episode: str, step: int, frame: np.ndarray, percept: GridPercept,
                 action: str, region: Region, plan: list | None, targets: list[np.ndarray],
                 recorder: EpisodeRecorder | None, model: Model):
        """Click one region, diagnose it, store and record it, and distil again."""
        from cairn.envs.desktop import mouse_click

        shape = percept.tiles.shape
        x, y = self._point(percept, region)
        pre = self._state(step, percept, region, action)
        after, _, _, truncated, info = self.env.step(mouse_click(action, x, y))
        if not truncated:
            # Once more: a game that pauses mid-animation (a busy machine) looks settled early,
            # and a half-drawn frame would blame this click for the next one's changes.
            after, _ = self.env.settle()
        post_percept = self.perceiver.parse(after, previous=frame)
        expected = model(region) if _on_board(region, shape) else None
        expected = set(expected) if expected is not None else None
        diagnosis = self._diagnose(percept, post_percept, region, expected, targets, info)
        t = ExperienceTuple(episode, step, step + 1, pre, Subgoal(action, f"{region[0]},"
                            f"{region[1]}"), [0], diagnosis,
                            self._state(step + 1, post_percept, region, action))
        self.store.add(t)
        self.attempts.append(t)
        solved = diagnosis.progress >= 1.0
        if recorder is not None:
            recorder.record_attempt(t)
            recorder.record_step(_action_index(region, shape), after, 0.0, solved, truncated,
                                 {"subgoal": t.subgoal.key, "point": [int(x), int(y)],
                                  "effects": diagnosis.effects, "planned": plan is not None})
        log.info("%s %s: %s %s", episode, t.subgoal.key, diagnosis.cause, diagnosis.effects)
        if self.learn:
            self._distill()
        return after, post_percept, truncated

    # -- perception, diagnosis and the goal ------------------------------------------------

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

    def _state(self, step: int, percept: GridPercept, region: Region,
               action: str = "click") -> State:
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

    def _diagnose(self, pre: GridPercept, post: GridPercept, region: Region,
                  expected: set[Region] | None, targets: list[np.ndarray], info) -> Diagnosis:
        changed = [tuple(int(v) for v in rc) for rc in np.argwhere(post.changed_cells)]
        effects = [effect_name(cr - region[0], cc - region[1]) for cr, cc in changed]
        tiles = [(cr, cc, pre.name_at(cr, cc), post.name_at(cr, cc)) for cr, cc in changed]
        progress = max(float((post.tiles == t).mean()) for t in targets)
        detail = ""
        if expected is not None and set(changed) != expected:
            detail = f"predicted {sorted(expected)}, saw {sorted(changed)}"
        if info.get("refused"):
            detail = f"refused: {info.get('reason')}"
        return Diagnosis(
            success=bool(changed), cause=Cause.SUCCESS if changed else Cause.NO_EFFECT,
            counter_deltas={}, reward=0.0, changed_tiles=tiles, progress=progress,
            distance=float(round((1 - progress) * post.tiles.size)), health_delta=0, steps=1,
            detail=detail, effects=sorted(effects))

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

    # -- knowledge -------------------------------------------------------------------------

    def _models(self, percept: GridPercept) -> dict[str, Model]:
        """Per action, what it does to a cell by the skills: translation-invariant if active
        (with the looks cells turn into), else the cell's own skill on a board this size."""
        shape = percept.tiles.shape
        board_fact = f"tag:board:{shape[0]}x{shape[1]}"
        # Every look named so far (the goal picture's too, which this frame may not show).
        ids = {name: i for i, name in enumerate(self.perceiver.clusters.names)}

        def look_at(cell: Region) -> str:
            return percept.name_at(*cell)

        def model_for(action: str) -> Model:
            general = self.skills.get(general_key(action))

            def model(cell: Region) -> dict[Region, int | None] | None:
                if general is not None and general.status == "active":
                    looks = predicted_looks(general, cell, shape, look_at)
                    return {p: ids.get(after) if after is not None else None
                            for p, after in looks.items()}
                own = self.skills.get(f"{action}:{cell[0]},{cell[1]}")
                if own is not None and own.status == "active" and own.applicable({board_fact}):
                    return dict.fromkeys(predicted_looks(own, cell, shape))
                return None
            return model
        return {action: model_for(action) for action in self.board.actions}

    def _toggles(self) -> bool:
        """Every active translation-invariant skill toggles (none sets a look) between the
        same two looks: only then is the goal a GF(2) system."""
        seen: set[str] = set()
        for action in self.board.actions:
            general = self.skills.get(general_key(action))
            if general is None or general.status != "active":
                continue
            if not toggles_only(general):
                return False
            for table in (general.procedure[0].get("looks") or {}).values():
                seen |= set(table) | set(table.values())
        return len(seen) <= 2

    def _blocked(self, percept: GridPercept) -> Callable[[str, Region], bool]:
        def blocked(action: str, region: Region) -> bool:
            state = self._state(0, percept, region, action)
            return self.guardrails.blocking_primitive("click", None, state.facts) is not None
        return blocked

    def _distill(self) -> None:
        min_evidence = self.board.min_evidence
        for skill in region_skills(self.attempts):
            self.skills.update(skill)
        for action in self.board.actions:
            general = general_skill(self.attempts, min_evidence, action)
            if general is not None:
                self.skills.update(general)
        for guard in no_effect_guardrails(self.attempts, min_evidence):
            self.guardrails.update(guard)


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
