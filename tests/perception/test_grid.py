"""Generic grid perception: synthetic boards first, then a real sgt-flip frame on Xvfb."""

import shutil

import cv2
import numpy as np
import pytest

from cairn.perception.grid import (
    CellClusters,
    GridConfig,
    GridNotFound,
    GridPerceiver,
    changes,
    find_grid,
)
from cairn.perception.percept import Percept

COLOURS = np.array([[240, 240, 240], [60, 60, 60], [200, 40, 40]], np.uint8)


def board(cells: np.ndarray, cell: int = 30, origin=(50, 70), lines: bool = True,
          noise: int = 0, seed: int = 0) -> np.ndarray:
    """A grey screen with a menu bar, a caption and a board of coloured cells."""
    rng = np.random.default_rng(seed)
    frame = np.full((300, 400, 3), 225, np.uint8)
    cv2.line(frame, (0, 20), (399, 20), (120, 120, 120), 1)  # full-width menu separator
    cv2.putText(frame, "Moves: 3", (10, 290), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (30, 30, 30), 1)
    x0, y0 = origin
    for (r, c), k in np.ndenumerate(cells):
        frame[y0 + r * cell:y0 + (r + 1) * cell, x0 + c * cell:x0 + (c + 1) * cell] = COLOURS[k]
    if lines:
        rows, cols = cells.shape
        for i in range(cols + 1):
            frame[y0:y0 + rows * cell + 1, x0 + i * cell] = 128
        for i in range(rows + 1):
            frame[y0 + i * cell, x0:x0 + cols * cell + 1] = 128
    if noise:
        frame = np.clip(frame + rng.integers(-noise, noise + 1, frame.shape), 0, 255)
    return frame.astype(np.uint8)


@pytest.mark.parametrize("lines", [True, False])
def test_find_grid_on_a_synthetic_board(lines):
    cells = np.random.default_rng(1).integers(0, 3, (4, 5))
    cells[0, :] = [0, 1, 0, 1, 0]  # no two equal neighbours on the outer rows, for line-less
    cells[-1, :] = [1, 0, 1, 0, 1]
    cells[:, 0] = [0, 1, 0, 1]
    cells[:, -1] = [0, 1, 0, 1]
    grid = find_grid(board(cells, lines=lines, noise=6))
    assert grid.shape == (4, 5)
    assert np.abs(grid.xs - (50 + 30 * np.arange(6))).max() <= 1
    assert np.abs(grid.ys - (70 + 30 * np.arange(5))).max() <= 1
    assert tuple(grid.centers()[2, 3]) == pytest.approx((50 + 3 * 30 + 15, 70 + 2 * 30 + 15), abs=1)
    assert grid.cell_at(50 + 95, 70 + 65) == (2, 3)
    assert grid.cell_at(10, 10) is None


def test_known_region_and_count_split_evenly():
    grid = find_grid(np.zeros((100, 100, 3), np.uint8), GridConfig(rows=2, cols=4,
                                                                   region=(10, 20, 90, 60)))
    assert list(grid.xs) == [10, 30, 50, 70, 90] and list(grid.ys) == [20, 40, 60]


def test_known_count_picks_that_many_lines():
    cells = np.zeros((4, 4), int)
    grid = find_grid(board(cells), GridConfig(rows=3, cols=2))
    assert grid.shape == (3, 2)


def test_blank_frame_has_no_grid():
    with pytest.raises(GridNotFound, match="GridConfig"):
        find_grid(np.full((120, 160, 3), 90, np.uint8))


def test_cell_classes_are_learned_online_and_stay_stable():
    cells = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    perceiver = GridPerceiver()
    first = perceiver.parse(board(cells, noise=8, seed=1))
    assert isinstance(first, Percept) and first.classes == ("a0", "a1")
    assert (first.tiles == cells).all() and (first.confidence > 0.7).all()
    assert first.player == (0, 0) and first.counters == {} and first.changed_region is None
    cells2 = cells.copy()
    cells2[1, 1] = 2  # a look never seen opens a new class; the old ids keep their meaning
    second = perceiver.parse(board(cells2, noise=8, seed=2))
    assert second.classes == ("a0", "a1", "a2")
    assert (second.tiles == cells2).all()


def test_changed_cells_and_region():
    cells = np.zeros((3, 3), int)
    before = board(cells)
    cells[0, 1] = cells[1, 1] = 1
    after = board(cells)
    perceiver = GridPerceiver()
    perceiver.parse(before)
    percept = perceiver.parse(after, previous=before)
    assert percept.changed_cells.tolist() == [[False, True, False], [False, True, False],
                                              [False, False, False]]
    x0, y0, x1, y1 = percept.changed_region
    assert (x0, y0) == (81, 71) and (x1, y1) == (110, 130)
    mask, region = changes(before, before)
    assert mask is None and region is None


def test_max_classes_caps_new_classes():
    clusters = CellClusters(threshold=5.0, max_classes=2)
    ids, conf = clusters.assign(np.array([[0.0], [100.0], [200.0]], np.float32))
    assert ids.tolist() == [0, 1, 1] and conf[2] == 0.0 and len(clusters.centroids) == 2


@pytest.fixture(scope="session")
def display():
    # Session-wide, like tests/envs/test_desktop.py's: pyautogui binds to the first display.
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    from cairn.envs.desktop import virtual_display

    with virtual_display() as name:
        yield name


def test_real_flip_board_at_800x600(display):
    from cairn.envs.desktop import DesktopEnv

    env = DesktopEnv(["/usr/games/sgt-flip", "3x3:d074191345d1644c17058,628"], size=(800, 600))
    try:
        obs, _ = env.reset()
    finally:
        env.close()
    percept = GridPerceiver().parse(obs)
    assert percept.tiles.shape == (3, 3) and len(percept.classes) == 2
    # The board is square and sits in the middle of the window.
    x0, y0, x1, y1 = percept.grid.box
    assert abs((x1 - x0) - (y1 - y0)) <= 2 and abs((x0 + x1) / 2 - 400) < 10
