"""The goal picture of configs/pattern.yaml's board, made by the real sgt-pattern's Solve menu
on a private Xvfb: its filled squares meet the puzzle's clues, and an existing file is kept."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from cairn.envs.desktop import DesktopEnv, DesktopError
from cairn.envs.puzzle_goal import ensure_goal_picture, filled_squares, solved_picture
from tests.desktop_fixtures import desktop_display  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parents[2]
PATTERN = "/usr/games/sgt-pattern"

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xdotool") is None
    or not Path(PATTERN).exists(),
    reason="needs Xvfb, xdotool and sgt-puzzles (apt-get install xvfb xdotool sgt-puzzles)")


@pytest.fixture(scope="module")
def board() -> str:
    """The board the shipped config plays (read from the YAML, not through the runtime)."""
    config = yaml.safe_load((ROOT / "configs" / "pattern.yaml").read_text())
    return config["board"]["ids"][0]


@pytest.fixture(scope="module")
def env(board, desktop_display):  # noqa: F811
    env = DesktopEnv([PATTERN, "{board}"], size=_window_size(board), settle_quiet=0.2,
                     settle_timeout=3.0)
    yield env
    env.close()


def _window_size(board: str) -> tuple[int, int]:
    probe = DesktopEnv([PATTERN, board])
    try:
        return probe.size
    finally:
        probe.close()


def clue_lines(filled: np.ndarray) -> list[str]:
    """Pattern's clue text of every column, then every row: runs of filled squares."""
    lines = [*filled.T, *filled]
    return [".".join(str(len(run)) for run in "".join("#" if f else " " for f in line).split())
            or "0" for line in lines]


def test_picture_meets_the_clues_and_an_existing_file_is_kept(env, board, tmp_path):
    path = tmp_path / "runs" / "goal.png"
    assert ensure_goal_picture(path, env, board) == path
    picture = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert picture.shape == (env.size[1], env.size[0], 3)
    filled = filled_squares(picture, board)
    assert filled.shape == (5, 5) and filled.any()
    assert clue_lines(filled) == board.split(":")[1].split("/")
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed, not left

    # Present: never rewritten (not even reopened), whatever the file holds.
    path.write_bytes(b"kept")
    mtime = path.stat().st_mtime_ns
    assert ensure_goal_picture(path, env, board) == path
    assert path.read_bytes() == b"kept" and path.stat().st_mtime_ns == mtime


def test_only_filled_squares_differ_from_the_start_frame(env, board):
    picture = solved_picture(env, board)
    start, _ = env.reset(options={"format": {"board": board}})
    changed = (picture != start).any(axis=-1)
    assert changed.any() and not changed[: changed.shape[0] // 4].any()  # clues, menu untouched
    assert not filled_squares(start, board).any()


def test_solve_that_fills_nothing_is_an_error(env, board, monkeypatch):
    import cairn.envs.puzzle_goal as puzzle_goal

    monkeypatch.setattr(puzzle_goal, "SOLVE_KEYS", ("f10", "escape"))  # opens, closes, no Solve
    with pytest.raises(DesktopError, match="filled no square"):
        solved_picture(env, board)
