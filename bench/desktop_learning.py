"""Learning on the desktop: Flip and Pattern boards solved from the screen, from empty stores.

    python -m bench.desktop_learning

Starts its own Xvfb. Flip: two fixed 3x3 boards in a row from an empty store (the second
uses what the first taught: clicks and exploration side by side), then 4x4 and 5x5 boards
with the same store. Pattern: the same agent with only ``configs/pattern.yaml`` changed, on
a fresh store: its board twice, then another 5x5 and a 10x10 board with that store; each
goal picture is made here from the game's own Solve menu (the harness, not the agent, opens
that menu from the keyboard), keeping only the squares it fills.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cairn.envs import puzzle_goal
from cairn.envs.puzzle_goal import ensure_goal_picture
from cairn.experience.episodes import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.cli import print_table
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parent.parent
FLIP_BOARDS = ["3x3:d074191345d1644c17058,648", "3x3:d074191345d1644c17058,810"]
PATTERN_MORE = ["5x5:3/4/2/2/1.1/4/4/2/2/1",
                "10x10:8/8/3.3/2.1/2/2/3/1.3/1.1.3.2/3.4/3/1/3.4/8/9/2.1/2.2/3.1/3.2/4.2"]
"""Further Pattern boards (`sgt-pattern --generate 1 5x5`, `... 10x10`) after the first."""


def play(config, store, boards: list[str], run_dir: Path) -> list:
    config.board.ids, config.episodes = boards, len(boards)
    with Agent(config, store, run_dir) as agent:
        return [agent.run_episode(config.seed + i, i) for i in range(len(boards))]


def solved_score(results):
    from cairn.envs.board_game import BoardGame

    return BoardGame({}).score([r.reached for r in results])


def pattern_goal(config, path: Path, board: str | None = None) -> None:
    """Write the goal picture of ``board`` (else the config's first) to a new ``path``: the
    start board with the squares the game's own Solve fills (:mod:`cairn.envs.puzzle_goal`)."""
    board = board or config.board.ids[0]
    config.board.ids = [board]  # the window is sized for this board
    with config.game_adapter().open() as env:
        ensure_goal_picture(path, env, board)


def filled_squares(frame, board: str) -> list[list[bool]]:
    """Which squares of a Pattern ``board`` are filled on a screenshot (dark inside)."""
    return puzzle_goal.filled_squares(frame, board).tolist()


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
            first = pattern.board.ids[0]
            other = play(pattern, store, [first] * 2, tmp / "pattern")
            for i, board in enumerate(PATTERN_MORE):  # each board has its own goal picture
                goal = tmp / f"goal-{i + 1}.png"
                pattern_goal(pattern, goal, board)
                pattern.board.goal.image = str(goal)
                other += play(pattern, store, [board], tmp / f"pattern-{i + 1}")
    print("Flip 3x3, empty store, then the second board with what the first taught:")
    print_table(small, solved_score(small), None)
    print(f"\nclicks first/second 3x3: {small[0].attempts}/{small[1].attempts} "
          f"(exploration {small[0].explored}/{small[1].explored})\n")
    print("Flip 4x4 and 5x5 with the same store:")
    print_table(large, solved_score(large), None)
    print("\nPattern (configs/pattern.yaml only), fresh store: the same board twice, then "
          "another 5x5 and a 10x10 with that store:")
    print_table(other, solved_score(other), None)
    dirs = [tmp / "pattern" / f"episode-{i:03d}" for i in range(2)] + [
        tmp / f"pattern-{i + 1}" / "episode-000" for i in range(len(PATTERN_MORE))]
    boards = [first] * 2 + PATTERN_MORE
    met = [clues_met(load_episode(d).frames[-1], b) for d, b in zip(dirs, boards, strict=True)]
    print(f"final screen meets the puzzle's clues (harness check): {met}")
    print(f"\nstores and recordings: {tmp}")


if __name__ == "__main__":
    main()
