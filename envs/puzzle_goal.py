"""A goal picture for a puzzle board, made with the game's own Solve menu (harness, not agent).

A board config with ``goal: {kind: image}`` needs a screenshot of the finished board; for Simon
Tatham's puzzles the game can solve its own board. :func:`solved_picture` resets the env to the
board, chooses Game > Solve from the keyboard (F10 opens the menu bar's first menu, Game, with
nothing selected; Up wraps to its last item, Exit, and Up again is Solve, the item above it in
sgt-puzzles' GTK menu), and returns the start frame with only the squares Solve filled painted
in: the squares it marks empty stay unknown, as the agent's own start frame shows them.

Keys, not clicks: the Game menu drops below a small window, so its Solve item lies outside the
window, and keys need no screen coordinates (no window manager, any font). Every key goes
through the env's own ``key`` action, so it reaches the game window only.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from cairn.envs.desktop import DesktopEnv, DesktopError, key
from cairn.perception.grid import Grid, GridConfig, find_grid

SOLVE_KEYS: tuple[str, ...] = ("f10", "up", "up", "return")
"""Game > Solve in sgt-puzzles' GTK menu bar (checked on Debian's 20230122 build)."""
DARK = 80
"""A square whose inner mean grey level is below this is filled (Pattern draws it black)."""


def board_grid(frame: np.ndarray, board: str) -> Grid:
    """The board's grid on ``frame``; a ``WxH:...`` id fixes the cell count (no guessing)."""
    size = re.match(r"(\d+)x(\d+)", board)
    cols, rows = (int(size[1]), int(size[2])) if size else (None, None)
    return find_grid(frame, GridConfig(rows=rows, cols=cols))


def filled_squares(frame: np.ndarray, board: str, grid: Grid | None = None) -> np.ndarray:
    """(rows, cols) bools: which squares are filled (dark inside, grid lines left out)."""
    grid = grid or board_grid(frame, board)
    rows, cols = grid.shape
    out = np.zeros((rows, cols), bool)
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = grid.cell_box(r, c, 0.2)
            out[r, c] = frame[y0:y1, x0:x1].mean() < DARK
    return out


def solved_picture(env: DesktopEnv, board: str) -> np.ndarray:
    """The start frame of ``board`` with the squares the game's Solve fills painted in (RGB).

    ``env`` must be open and sized for ``board``; it is reset to it and left showing the
    solved board (its next ``reset`` relaunches the game). Raises :class:`DesktopError` if
    the window goes away or Solve fills nothing.
    """
    start, _ = env.reset(options={"format": {"board": board}})
    grid = board_grid(start, board)
    settle_after_step = env.settle_after_step
    env.settle_after_step = True  # each key's menu must be up before the next key goes
    try:
        for name in SOLVE_KEYS:
            _, _, _, truncated, info = env.step(key(name))
            if info["refused"] or info["window_closed"] or info["window_resized"]:
                why = info.get("reason") or "the game window closed or was resized"
                raise DesktopError(f"choosing Game > Solve for {board} failed at key {name!r}: "
                                   f"{why}")
            if truncated and name != SOLVE_KEYS[-1]:
                raise DesktopError(f"the env's max_steps ended the episode while choosing "
                                   f"Game > Solve for {board}")
        solved, _ = env.settle()
    finally:
        env.settle_after_step = settle_after_step
    filled = filled_squares(solved, board, grid) & ~filled_squares(start, board, grid)
    if not filled.any():
        raise DesktopError(f"Game > Solve (keys {' '.join(SOLVE_KEYS)}) filled no square of "
                           f"{board}: no goal picture")
    goal = start.copy()
    for r, c in zip(*np.nonzero(filled), strict=True):
        x0, y0, x1, y1 = grid.cell_box(int(r), int(c))
        goal[y0:y1, x0:x1] = solved[y0:y1, x0:x1]
    return goal


def ensure_goal_picture(path: str | os.PathLike, env: DesktopEnv, board: str) -> Path:
    """Write :func:`solved_picture` of ``board`` to ``path`` (PNG) unless it already exists.

    Written to a temporary file beside it and renamed, so a run that dies midway never leaves
    a half-written picture that the next run would take for the goal. Returns the path.
    """
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = solved_picture(env, board)
    ok, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DesktopError(f"cannot encode the goal picture of {board} as PNG")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
