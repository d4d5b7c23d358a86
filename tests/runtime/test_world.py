"""The agent's world model on hand-made percepts (pure logic: no env needed)."""

import numpy as np

from cairn.perception.percept import UNKNOWN, Percept
from cairn.runtime.world import WorldModel

CLASSES = ("grass", "rock", "tree", "player", "cow")
G, R, T, P, C = range(5)


def percept(rows: list[str], counters=None) -> Percept:
    letters = {"g": G, "r": R, "t": T, "p": P, "c": C, "?": UNKNOWN}
    tiles = np.array([[letters[ch] for ch in row] for row in rows], np.int16)
    (pr,), (pc,) = np.nonzero(tiles == P)
    return Percept(tiles, (tiles != UNKNOWN).astype(float), CLASSES, (int(pr), int(pc)),
                   (1, 0), counters or {"hp": 5})


def test_path_to_walks_around_what_blocks_and_ends_facing_the_target():
    world = WorldModel()
    view = percept(["ggrgg", "gprrt", "rgggc"])
    world.observe(view)
    for _ in range(2):  # bump into the rock twice: it blocks
        world.observe(view, move=(0, 1), passive=True)
    moves, target = world.path_to("tree")
    assert world.position == (0, 0) and not world.walkable("rock")
    assert target == (0, 3)
    position = (0, 0)
    for d in moves[:-1]:
        position = (position[0] + d[0], position[1] + d[1])
        assert world.kind_at(position) != "rock"
    last = moves[-1]
    assert (position[0] + last[0], position[1] + last[1]) == target


def test_a_move_that_shifts_the_view_moves_the_agent():
    world = WorldModel()
    world.observe(percept(["gtggg", "ggpgg", "ggggr"]))
    moved = world.observe(percept(["tgggg", "ggpgg", "gggrg"]), move=(0, 1), passive=True)
    assert moved and world.position == (0, 1)
    stayed = world.observe(percept(["tgggg", "ggpgg", "gggrg"]), move=(0, 1), passive=True)
    assert not stayed and world.position == (0, 1)


def test_blocked_moves_teach_that_a_kind_is_not_walkable():
    world = WorldModel()
    view = percept(["tgr", "rpg", "ggt"])
    world.observe(view)
    assert world.walkable("rock")
    world.observe(view, move=(0, -1), passive=True)
    world.observe(view, move=(0, -1), passive=True)
    assert not world.walkable("rock") and world.walkable("grass")


def test_unknown_tiles_keep_what_was_seen_before():
    world = WorldModel()
    world.observe(percept(["tgg", "gpg", "ggg"]))
    world.observe(percept(["??g", "gpg", "gg?"]))
    assert world.kind_at((-1, -1)) == "tree"


def test_counters_that_change_on_their_own_are_not_effects():
    world = WorldModel()
    world.observe(percept(["ggg", "gpg", "ggg"], {"hp": 5, "food": 5}))
    world.observe(percept(["ggg", "gpg", "ggg"], {"hp": 5, "food": 4}), move=(1, 0),
                  passive=True)
    assert world.unexplained_changes({"food": 5}, {"food": 4}) == {}
    assert world.unexplained_changes({"food": 4}, {"food": 6}) == {"food": 2}


def test_kinds_whose_tiles_change_while_the_agent_stands_are_mobile():
    world = WorldModel()
    frames = [["cggg", "gpgg", "gggg"], ["gcgg", "gpgg", "gggg"], ["ggcg", "gpgg", "gggg"],
              ["gggc", "gpgg", "gggg"]]
    world.observe(percept(frames[0]))
    for rows in frames[1:]:
        world.observe(percept(rows), passive=True)
    assert world.mobile("cow") and not world.mobile("grass")


def test_a_wandering_kind_struck_from_view_is_removed_one_that_stepped_aside_is_not():
    from cairn.runtime.controllers import AttemptView

    world = WorldModel()
    world.observe(percept(["ggg", "gpg", "gcg"]))  # the cow below, where the agent faces
    view, before = AttemptView(world, {"hp": 5}), 1
    target = (world.position[0] + 1, world.position[1])
    assert world.kind_at(target) == "cow"
    world.observe(percept(["ggg", "gpg", "ggc"]), passive=True)  # stepped aside
    assert not view.removed(target, "cow", before)
    world.observe(percept(["ggg", "gpg", "ggg"]), passive=True)  # gone
    assert view.removed(target, "cow", before)


def test_kinds_that_leave_the_view_by_themselves_are_learned_as_vanishing():
    world = WorldModel()
    world.observe(percept(["tgg", "gpg", "ggg"]))
    for _ in range(4):  # a cow shows up and is gone the next frame while the agent stands
        world.observe(percept(["tgc", "gpg", "ggg"]), passive=True)
        world.observe(percept(["tgg", "gpg", "ggg"]), passive=True)
    assert world.vanishes("cow") and not world.vanishes("tree")
    kept = WorldModel()
    kept.learn_from(world.lessons())  # a resumed run knows it too
    assert kept.vanishes("cow")
