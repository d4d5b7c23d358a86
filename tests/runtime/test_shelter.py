"""Digging in, on a tiny grid game played through percepts (pure logic: no env needed)."""

import numpy as np

from cairn.perception.percept import UNKNOWN, Percept
from cairn.runtime.config import ActionsConfig, AgentConfig
from cairn.runtime.controllers import AttemptView, Controllers
from cairn.runtime.shelter import pocket_site, sealed
from cairn.runtime.world import WalkStats, WorldModel

CLASSES = ("grass", "rock", "path", "player")
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
HILL = ["ggggggggg",
        "ggrrrrggg",
        "ggrrrrggg",
        "ggrrrrggg",
        "ggggggggg"]


class Grid:
    """Walk on grass and path; ``do`` digs the faced rock into path; ``put`` turns the
    faced grass or path into rock. Moving turns the player, and steps if the cell is free."""

    def __init__(self, rows: list[str], player: tuple[int, int]):
        self.cells = [list(row) for row in rows]
        self.player, self.facing = player, (1, 0)

    def kind(self, r: int, c: int) -> str:
        inside = 0 <= r < len(self.cells) and 0 <= c < len(self.cells[0])
        return self.cells[r][c] if inside else "g"

    def step(self, action: str) -> None:
        r, c = self.player
        if action in MOVES:
            self.facing = MOVES[action]
            ahead = (r + self.facing[0], c + self.facing[1])
            if self.kind(*ahead) in "gt":
                self.player = ahead
            return
        fr, fc = r + self.facing[0], c + self.facing[1]
        if action == "do" and self.kind(fr, fc) == "r":
            self.cells[fr][fc] = "t"
        elif action == "put" and self.kind(fr, fc) in "gt":
            self.cells[fr][fc] = "r"

    def percept(self) -> Percept:
        letters = {"g": 0, "r": 1, "t": 2}
        r0, c0 = self.player
        tiles = np.array([[letters[self.kind(r0 + dr, c0 + dc)] for dc in range(-4, 5)]
                          for dr in range(-3, 4)], np.int16)
        tiles[3, 4] = CLASSES.index("player")
        return Percept(tiles, (tiles != UNKNOWN).astype(float), CLASSES, (3, 4), self.facing,
                       {"stone": 3})


def world_of(grid: Grid) -> WorldModel:
    world = WorldModel()
    world.walk["rock"] = WalkStats(blocked=5)  # learned by bumping into it
    world.observe(grid.percept())
    return world


def burrow(grid: Grid, world: WorldModel):
    controllers = Controllers(ActionsConfig(noop="noop", interact="do",
                                            moves={k: list(v) for k, v in MOVES.items()}),
                              AgentConfig(), np.random.default_rng(0))
    run = controllers.burrow(AttemptView(world, {"stone": 3}), {"rock"}, "put")
    actions = []
    try:
        while True:
            action = run.send(None)
            actions.append(action)
            grid.step(action)
            move = MOVES.get(action)
            world.observe(grid.percept(), move, passive=move is not None)
            assert len(actions) < 60
    except StopIteration as stop:
        return actions, stop.value


def test_out_in_the_open_the_agent_is_not_sealed_and_finds_the_nearest_hill():
    grid = Grid(HILL, (4, 0))
    world = world_of(grid)
    assert not sealed(world)
    moves, ahead = pocket_site(world, {"rock"})
    assert len(moves) == 3 and ahead in ((-1, 0), (0, 1))  # up to the hill, either face
    assert pocket_site(world, {"sand"}) is None  # nothing of that kind to dig


def test_the_agent_digs_two_cells_in_and_closes_the_way_behind_it():
    grid = Grid(HILL, (4, 0))
    world = world_of(grid)
    actions, outcome = burrow(grid, world)
    assert outcome.effect and outcome.detail == "shut in"
    assert actions.count("do") == 2 and actions[-1] == "put"
    assert sealed(world)
    r, c = grid.player
    around = {(r + dr, c + dc): grid.kind(r + dr, c + dc) for dr, dc in MOVES.values()}
    (inner,) = [cell for cell, kind in around.items() if kind != "r"]  # the way in: rock
    assert grid.kind(*inner) == "t"  # the far cell dug
    pocket = {grid.player, inner}
    for pr, pc in pocket:
        for dr, dc in MOVES.values():
            if (pr + dr, pc + dc) not in pocket:
                assert grid.kind(pr + dr, pc + dc) == "r"  # nothing walkable around it


def test_a_hill_too_thin_to_hide_in_is_no_site():
    grid = Grid(["ggggg", "ggrgg", "ggrgg", "ggggg"], (3, 0))
    world = world_of(grid)
    assert pocket_site(world, {"rock"}) is None
    actions, outcome = burrow(grid, world)
    assert actions == [] and not outcome.effect and outcome.detail == "nowhere to dig in"
