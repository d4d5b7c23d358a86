"""Learning on the desktop: Flip and Pattern boards solved from the screen, from empty stores.

    python -m bench.desktop_learning

Starts its own Xvfb. Flip: two fixed 3x3 boards in a row from an empty store (the second
uses what the first taught: clicks and exploration side by side), then 4x4 and 5x5 boards
with the same store. Pattern: the same agent with only ``configs/pattern.yaml`` changed, on
a fresh store: its board twice, then another 5x5 and a 10x10 board with that store; each
goal picture is made here from the game's own Solve menu (the harness, not the agent, opens
that menu with xdotool), keeping only the squares it fills.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
from cairn.experience.recording import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.board import BoardAgent
from cairn.runtime.board_cli import open_env, print_board_table
from cairn.runtime.config import load_config

ROOT = Path(__file__).resolve().parent.parent
FLIP_BOARDS = ["3x3:d074191345d1644c17058,648", "3x3:d074191345d1644c17058,810"]
PATTERN_MORE = ["5x5:3/4/2/2/1.1/4/4/2/2/1",
                "10x10:8/8/3.3/2.1/2/2/3/1.3/1.1.3.2/3.4/3/1/3.4/8/9/2.1/2.2/3.1/3.2/4.2"]
"""Further Pattern boards (`sgt-pattern --generate 1 5x5`, `... 10x10`) after the first."""
GAME_MENU, SOLVE_MENU_ITEM = (67, 53), (88, 447)
"""Screen point of Game > Solve in an sgt puzzle placed at (40, 40) on Xvfb (harness only)."""


def play(config, store, boards: list[str], run_dir: Path) -> list:
    config.board.ids, config.episodes = boards, len(boards)
    env = open_env(config)
    try:
        agent = BoardAgent(config, store, env, run_dir)
        return [agent.run_episode(config.seed + i, i) for i in range(len(boards))]
    finally:
        env.close()


def pattern_goal(config, path: Path, board: str | None = None) -> None:
    """A screenshot of the start board (``board``, else the config's first) with the squares
    the game's Solve fills painted in."""
    from cairn.perception.grid import GridPerceiver

    board = board or config.board.ids[0]
    config.board.ids = [board]  # the window is sized for this board
    env = open_env(config)
    try:
        start, _ = env.reset(options={"format": {"board": board}})
        for point in (GAME_MENU, SOLVE_MENU_ITEM):
            subprocess.run(["xdotool", "mousemove", *map(str, point), "click", "1"], check=True)
            time.sleep(0.4)
        solved, _ = env.settle()
    finally:
        env.close()
    grid = GridPerceiver().parse(start).grid
    goal = start.copy()
    rows, cols = grid.shape
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = grid.cell_box(r, c)
            if solved[y0:y1, x0:x1].mean() < 80:  # a filled (dark) square
                goal[y0:y1, x0:x1] = solved[y0:y1, x0:x1]
    if (goal == start).all():
        raise SystemExit("the game's Solve menu did not fill any square: no goal picture")
    cv2.imwrite(str(path), cv2.cvtColor(goal, cv2.COLOR_RGB2BGR))


def filled_squares(frame, board: str) -> list[list[bool]]:
    """Which squares of a Pattern ``board`` are filled on a screenshot (dark inside)."""
    from cairn.perception.grid import GridConfig, GridPerceiver

    cols, rows = (int(n) for n in board.split(":")[0].split("x"))
    grid = GridPerceiver(GridConfig(rows=rows, cols=cols)).parse(frame).grid
    out = []
    for r in range(rows):
        row = []
        for c in range(cols):
            x0, y0, x1, y1 = grid.cell_box(r, c, 0.2)
            row.append(bool(frame[y0:y1, x0:x1].mean() < 80))
        out.append(row)
    return out


def clues_met(frame, board: str) -> bool:
    """The harness's own check (not the agent's): the filled squares on ``frame`` give every
    clue of the Pattern ``board`` id (``WxH:col clues/.../row clues``)."""
    filled = filled_squares(frame, board)
    clues = board.split(":")[1].split("/")
    lines = [[row[c] for row in filled] for c in range(len(filled[0]))] + filled
    return [_runs(line) for line in lines] == clues


def _runs(line: list[bool]) -> str:
    runs, n = [], 0
    for filled in [*line, False]:
        if filled:
            n += 1
        elif n:
            runs.append(str(n))
            n = 0
    return ".".join(runs) or "0"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=3, help="seed of the 4x4 and 5x5 boards")
    args = parser.parse_args(argv)
    from cairn.envs.desktop import virtual_display

    tmp = Path(tempfile.mkdtemp(prefix="cairn-desktop-"))
    with virtual_display():
        flip = load_config(ROOT / "configs" / "flip.yaml", {"board.xvfb": False})
        with ExperienceStore(tmp / "flip.sqlite") as store:
            small = play(flip, store, FLIP_BOARDS, tmp / "flip3")
            large = play(flip, store, [f"4x4#{args.seed}", f"5x5#{args.seed}"], tmp / "flip45")
        pattern = load_config(ROOT / "configs" / "pattern.yaml",
                              {"board.xvfb": False, "board.goal.image": str(tmp / "goal.png")})
        pattern_goal(pattern, tmp / "goal.png")
        with ExperienceStore(tmp / "pattern.sqlite") as store:
            other = play(pattern, store, pattern.board.ids * 2, tmp / "pattern")
            for i, board in enumerate(PATTERN_MORE):  # each board has its own goal picture
                goal = tmp / f"goal-{i + 1}.png"
                pattern_goal(pattern, goal, board)
                pattern.board.goal.image = str(goal)
                other += play(pattern, store, [board], tmp / f"pattern-{i + 1}")
    print("Flip 3x3, empty store, then the second board with what the first taught:")
    print_board_table(small, None)
    print(f"\nclicks first/second 3x3: {small[0].clicks}/{small[1].clicks} "
          f"(exploration {small[0].explore_clicks}/{small[1].explore_clicks})\n")
    print("Flip 4x4 and 5x5 with the same store:")
    print_board_table(large, None)
    print("\nPattern (configs/pattern.yaml only), fresh store: the same board twice, then "
          "another 5x5 and a 10x10 with that store:")
    print_board_table(other, None)
    dirs = [tmp / "pattern" / f"episode-{i:03d}" for i in range(2)] + [
        tmp / f"pattern-{i + 1}" / "episode-000" for i in range(len(PATTERN_MORE))]
    met = [clues_met(load_episode(d).frames[-1], r.board) for d, r in zip(dirs, other, strict=True)]
    print(f"final screen meets the puzzle's clues (harness check): {met}")
    print(f"\nstores and recordings: {tmp}")


if __name__ == "__main__":
    main()
