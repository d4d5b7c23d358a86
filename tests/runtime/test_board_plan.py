"""The board planner on hand-made boards and models (pure logic: no window, no game).

A model says what one action on a cell changes (cell -> the look it turns into, None when
unknown). Boards are arrays of look ids; the goal is one or more target arrays."""

import itertools

import numpy as np
import pytest

from cairn.runtime.board_plan import (
    choose,
    explore_kind,
    greedy,
    inside_out,
    min_weight_solution,
    ring,
    solve,
)

CROSS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def cross_model(shape):
    """Flip-like: a click toggles the cell and its four neighbours (clipped at the border)."""
    def model(cell):
        r, c = cell
        return {(r + dr, c + dc): None for dr, dc in CROSS
                if 0 <= r + dr < shape[0] and 0 <= c + dc < shape[1]}
    return model


def set_model(look):
    """Pattern-like: a click sets the cell to ``look`` (a cell that has it already stays)."""
    def model(cell):
        return {cell: look}
    return model


def never(_action, _region):
    return False


def apply_toggles(tiles, plan, models):
    """The board after toggling every cell each planned click changes (two looks: 0, 1)."""
    out = tiles.copy()
    for action, cell in plan:
        for p in models[action](cell):
            out[p] ^= 1
    return out


def brute_force_fewest(shape, tiles, target, model):
    """The fewest clicks (each cell at most once) that toggle ``tiles`` into ``target``."""
    cells = [(r, c) for r in range(shape[0]) for c in range(shape[1])]
    for k in range(len(cells) + 1):
        for chosen in itertools.combinations(cells, k):
            if (apply_toggles(tiles, [("click", c) for c in chosen],
                              {"click": model}) == target).all():
                return k
    return None


# -- GF(2) ---------------------------------------------------------------------------------

def test_min_weight_solution_solves_mod_2_with_the_fewest_ones():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(200):
        m, n = rng.integers(2, 7), rng.integers(2, 8)
        a = rng.integers(0, 2, (m, n)).astype(np.uint8)
        b = rng.integers(0, 2, m).astype(np.uint8)
        x = min_weight_solution(a, b)
        solutions = [np.array(bits) for bits in itertools.product((0, 1), repeat=n)
                     if ((a @ np.array(bits)) % 2 == b).all()]
        if not solutions:
            assert x is None
            continue
        assert x is not None and ((a @ x) % 2 == b).all()
        assert int(x.sum()) == min(int(s.sum()) for s in solutions)
        checked += 1
    assert checked > 50  # most random systems here have solutions: both branches ran


def test_an_inconsistent_system_has_no_solution():
    a = np.array([[1, 1], [1, 1]], np.uint8)
    assert min_weight_solution(a, np.array([1, 0], np.uint8)) is None
    assert min_weight_solution(a, np.array([1, 1], np.uint8)).sum() == 1


@pytest.mark.parametrize("seed", range(6))
def test_solve_finds_the_fewest_toggling_clicks_to_the_goal(seed):
    shape = (3, 3)
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 2, shape)
    target = np.zeros(shape, int)
    models = {"click": cross_model(shape)}
    plan = solve(shape, tiles, [target], models, never)
    fewest = brute_force_fewest(shape, tiles, target, models["click"])
    if fewest == 0:
        assert plan is None  # nothing to do
        return
    assert (apply_toggles(tiles, plan, models) == target).all()
    assert len(plan) == fewest
    assert len(set(plan)) == len(plan)


def test_solve_takes_the_nearer_of_several_goals_and_never_a_blocked_click():
    shape = (3, 3)
    models = {"click": cross_model(shape), "single": lambda cell: {cell: None}}
    tiles = np.zeros(shape, int)
    for dr, dc in CROSS:
        tiles[1 + dr, 1 + dc] = 1
    all_ones, all_zeros = np.ones(shape, int), np.zeros(shape, int)
    assert solve(shape, tiles, [all_ones, all_zeros], models, never) == [("click", (1, 1))]
    # Forbid that click: the same goal takes more clicks, none of them the forbidden one.
    blocked = lambda action, rc: (action, rc) == ("click", (1, 1))  # noqa: E731
    plan = solve(shape, tiles, [all_zeros], models, blocked)
    assert plan and ("click", (1, 1)) not in plan and len(plan) > 1
    assert (apply_toggles(tiles, plan, models) == all_zeros).all()
    # 3x3 crosses alone are independent: without the centre's, that goal is out of reach.
    assert solve(shape, tiles, [all_zeros], {"click": models["click"]}, blocked) is None
    # No action with a known effect: no plan.
    assert solve(shape, tiles, [all_zeros], {"click": lambda _c: None}, never) is None


# -- greedy, for actions that set a look -----------------------------------------------------

def test_greedy_takes_the_click_that_brings_the_most_cells_to_the_goal():
    shape = (2, 3)
    tiles = np.array([[0, 0, 0], [0, 2, 0]])
    target = np.array([[1, 1, 1], [0, 0, 0]])
    # "fill" sets one cell to 1; "row" sets a whole row's first two cells to 1.
    models = {"fill": set_model(1),
              "row": lambda cell: {(cell[0], 0): 1, (cell[0], 1): 1}}
    assert greedy(shape, tiles, [target], models, never)[0][0] == "row"
    assert greedy(shape, tiles, [target], models, never)[0][1][0] == 0  # on the top row
    # A "clear" setting to 0 helps only at (1, 1); an unknown look counts as wrong.
    models = {"clear": set_model(0), "unknown": lambda cell: {cell: None}}
    assert greedy(shape, tiles, [target], models, never) == [("clear", (1, 1))]
    assert greedy(shape, tiles, [target], models, lambda a, rc: rc == (1, 1)) is None


def test_greedy_prefers_the_click_that_disturbs_fewer_cells_on_a_tie():
    shape = (1, 3)
    tiles = np.array([[0, 0, 1]])
    target = np.array([[1, 0, 1]])
    models = {"wide": lambda cell: {(0, 0): 1, (0, 2): 1},  # gains 1, touches 2 cells
              "narrow": lambda cell: {(0, 0): 1}}           # gains 1, touches 1 cell
    assert greedy(shape, tiles, [target], models, never)[0][0] == "narrow"
    assert greedy(shape, target, [target], models, never) is None  # nothing left to gain


# -- choose: explore first, then plan ------------------------------------------------------

def test_explores_cells_the_goal_wants_changed_first_inside_out():
    shape = (3, 3)
    tiles = np.zeros(shape, int)
    tiles[0, 0] = 1  # the only cell the goal wants changed
    target = np.zeros(shape, int)
    unknown = {"click": lambda _c: None}
    choice = choose(shape, tiles, [target], unknown, never, {}, set(), outside=False)
    assert (choice.reason, choice.region, choice.action) == ("explore", (0, 0), "click")
    tiles[0, 0] = 0
    tiles[2, 2] = 1
    assert choose(shape, tiles, [target], unknown, never, {}, set(), False).region == (2, 2)
    # Once it is tried, the most inward of the rest (the centre) comes next.
    choice = choose(shape, tiles, [target], unknown, never, {}, {("click", (2, 2))}, False)
    assert choice.region == (1, 1)
    assert inside_out((3, 3))[0] == (1, 1)


def test_explores_the_kind_explored_least_and_off_the_board_with_the_first_action():
    shape = (2, 2)
    tiles = np.array([[0, 1], [1, 0]])
    target = np.zeros(shape, int)
    unknown = {"left": lambda _c: None, "right": lambda _c: None}
    first = choose(shape, tiles, [target], unknown, never, {}, set())
    assert (first.reason, first.action) == ("explore", "left")
    assert explore_kind(first.action, first.region, shape) == "cell:left"
    second = choose(shape, tiles, [target], unknown, never, {"cell:left": 1}, set())
    assert second.action == "right" and 0 <= second.region[0] < 2
    third = choose(shape, tiles, [target], unknown, never, {"cell:left": 1, "cell:right": 1},
                   set())
    assert third.action == "left" and third.region in ring(shape)
    assert explore_kind(third.action, third.region, shape) == "outside"
    assert len(ring(shape)) == 12 and all(not (0 <= r < 2 and 0 <= c < 2) for r, c in ring(shape))


def test_plans_once_everything_is_covered_by_a_skill_or_a_guardrail():
    shape = (3, 3)
    tiles = np.zeros(shape, int)
    for dr, dc in CROSS:
        tiles[1 + dr, 1 + dc] = 1
    target = np.zeros(shape, int)
    models = {"click": cross_model(shape)}
    off_board = lambda _a, rc: not (0 <= rc[0] < 3 and 0 <= rc[1] < 3)  # noqa: E731
    choice = choose(shape, tiles, [target], models, off_board, {}, set())
    assert (choice.reason, choice.region) == ("plan", (1, 1))
    assert choice.plan == [("click", (1, 1))]
    # Points off the board not yet forbidden are still to explore.
    choice = choose(shape, tiles, [target], models, never, {}, set())
    assert choice.reason == "explore" and choice.region in ring(shape)
    assert choose(shape, target, [target], models, never, {}, set()).reason == "goal"


def test_effects_that_set_a_look_are_planned_greedily_and_a_dead_end_is_stuck():
    shape = (1, 3)
    tiles = np.array([[0, 0, 1]])
    target = np.array([[1, 1, 1]])
    models = {"fill": set_model(1)}
    choice = choose(shape, tiles, [target], models, never, {}, set(), outside=False,
                    toggles=False)
    assert choice.reason == "plan" and choice.plan == [("fill", choice.region)]
    assert choice.region in {(0, 0), (0, 1)}
    # As a GF(2) system "fill" would also flip the cell that is already right: toggling
    # planning is only for toggles.
    models = {"clear": set_model(0)}
    choice = choose(shape, tiles, [target], models, never, {}, set(), outside=False,
                    toggles=False)
    assert (choice.reason, choice.region) == ("stuck", None)
