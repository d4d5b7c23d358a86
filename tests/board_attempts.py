"""Click attempts on hand-made boards, written as the board kit writes them
(``cairn.runtime.board_kit``: ``_state`` and ``_diagnose``), for the effect skill and
guardrail tests. A board is a list of rows of looks (strings); an action is a function
``(board, (row, col)) -> new board``."""

from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal
from cairn.skills.effects import effect_name


def on_board(shape, r, c):
    return 0 <= r < shape[0] and 0 <= c < shape[1]


def side(i, n):
    return "outside" if i < 0 or i >= n else "first" if i == 0 else "last" if i == n - 1 \
        else "middle"


def state(board, region, action, step=0):
    shape = (len(board), len(board[0]))
    r, c = region
    inside = on_board(shape, r, c)
    near = [[board[r + dr][c + dc] if on_board(shape, r + dr, c + dc) else None
             for dc in (-1, 0, 1)] for dr in (-1, 0, 1)]
    tags = [f"action:{action}", f"board:{shape[0]}x{shape[1]}",
            f"region:{'cell' if inside else 'outside'}",
            f"row:{side(r, shape[0])}", f"col:{side(c, shape[1])}"]
    visible = sorted({look for row in board for look in row})
    return State(step, (r, c), (0, 0), {}, board[r][c] if inside else None, near, visible, tags)


class Clicks:
    """Makes numbered click attempts (ids from 1, as a store would give them)."""

    def __init__(self):
        self.next_id = 1

    def __call__(self, board, region, do, action="click"):
        """The attempt of ``action`` (doing ``do``) on ``region``; returns (attempt, board)."""
        shape = (len(board), len(board[0]))
        after = do(board, region) if on_board(shape, *region) else [list(r) for r in board]
        changed = [(r, c) for r in range(shape[0]) for c in range(shape[1])
                   if board[r][c] != after[r][c]]
        effects = sorted(effect_name(r - region[0], c - region[1]) for r, c in changed)
        diagnosis = Diagnosis(
            success=bool(changed), cause=Cause.SUCCESS if changed else Cause.NO_EFFECT,
            counter_deltas={}, reward=0.0,
            changed_tiles=[(r - region[0], c - region[1], board[r][c], after[r][c])
                           for r, c in changed],
            progress=0.0, distance=0.0, health_delta=0, steps=1, effects=effects,
            target=region)
        t = ExperienceTuple("board-e0", self.next_id, self.next_id + 1,
                            state(board, region, action, self.next_id),
                            Subgoal(action, f"{region[0]},{region[1]}"), [0], diagnosis,
                            state(after, region, action, self.next_id + 1), self.next_id)
        self.next_id += 1
        return t, after


def board(text):
    """``"ab/ba"`` -> [["a", "b"], ["b", "a"]]."""
    return [list(row) for row in text.split("/")]


def toggle_cross(b, cell):
    """Flip: the cell and its four neighbours swap a <-> b."""
    out = [list(r) for r in b]
    for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        r, c = cell[0] + dr, cell[1] + dc
        if on_board((len(b), len(b[0])), r, c):
            out[r][c] = {"a": "b", "b": "a"}[out[r][c]]
    return out


def setter(look):
    """Pattern: the cell is set to ``look`` whatever it was."""
    def do(b, cell):
        out = [list(r) for r in b]
        out[cell[0]][cell[1]] = look
        return out
    return do
