"""The board agent on the real sgt-flip under Xvfb, from an empty store: it learns what a
click does from the screen, solves a fixed 3x3 board, and solves a second one with fewer
clicks from the knowledge it stored. Then the same code on sgt-pattern (a nonogram) with only
``configs/pattern.yaml``: three mouse buttons that *set* a square's look, learned and used to
reach the goal picture."""

import shutil
from pathlib import Path

import pytest

from cairn.experience.episodes import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from tests.desktop_fixtures import desktop_display  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parents[2]
# Two fixed 3x3 boards (`sgt-flip --generate 2 3x3`): the same cross moves, other states.
BOARDS = ["3x3:d074191345d1644c17058,648", "3x3:d074191345d1644c17058,810"]

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or not Path("/usr/games/sgt-flip").exists()
    or not Path("/usr/games/sgt-pattern").exists(),
    reason="needs Xvfb and sgt-puzzles (apt-get install xvfb xdotool sgt-puzzles)")


@pytest.fixture(scope="module")
def played(tmp_path_factory, desktop_display):  # noqa: F811
    """Two episodes from an empty store: (results, store path, run dir)."""
    from cairn.runtime.loop import Agent

    tmp = tmp_path_factory.mktemp("board")
    config = load_config(ROOT / "configs" / "flip.yaml",
                         {"board.ids": BOARDS, "board.xvfb": False, "episodes": 2})
    with ExperienceStore(tmp / "exp.sqlite") as store, \
            Agent(config, store, tmp / "runs") as agent:
        results = [agent.run_episode(config.seed + i, i) for i in range(2)]
    return results, tmp / "exp.sqlite", tmp / "runs"


def solved(result) -> bool:
    return "solved" in result.reached


def test_first_board_is_solved_from_an_empty_store(played):
    first = played[0][0]
    assert solved(first) and first.end == "goal"
    assert first.explored > 0


def test_second_board_needs_fewer_clicks_and_no_exploration(played):
    first, second = played[0]
    assert solved(second)
    assert second.explored == 0
    assert second.attempts < first.attempts


def test_knowledge_links_to_stored_attempts(played):
    _, path, _ = played
    with ExperienceStore(path) as store:
        skills = {e.key: e for e in store.knowledge.current("skill")}
        general = skills["click:cell"]
        assert general.status == "active"
        assert set(general.body["verification"]) == {
            "changed:0,0", "changed:-1,0", "changed:1,0", "changed:0,-1", "changed:0,1"}
        guards = store.knowledge.current("guardrail")
        assert guards and all(g.status == "active" for g in guards)
        for entry in [general, *guards]:
            ids = entry.body.get("provenance") or entry.body.get("evidence")
            assert ids
            for attempt_id in ids:
                t = store.get(attempt_id)
                assert t is not None and t.subgoal.controller == "click"
        outside = store.get(guards[0].body["evidence"][0])
        assert outside.diagnosis.cause == "no_effect" and "region:outside" in outside.pre.tags


def test_episode_is_recorded_and_loads(played):
    results, _, runs = played
    episode = load_episode(runs / "episode-000")
    assert episode.finished and episode.end_reason == "goal"
    assert len(episode.attempts) == results[0].attempts == episode.num_steps
    assert len(episode.frames) == episode.num_steps + 1
    assert episode.attempts[0].subgoal.key.startswith("click:")


@pytest.fixture(scope="module")
def pattern(tmp_path_factory, desktop_display):  # noqa: F811
    """The Pattern board of configs/pattern.yaml twice from an empty store, as from a fresh
    checkout: the goal picture does not exist, and the game adapter makes it with the game's
    own Solve menu before the first episode."""
    import importlib.util

    # bench/ is not an installed package: load the benchmark's harness from its file.
    spec = importlib.util.spec_from_file_location(
        "desktop_learning", ROOT / "bench" / "desktop_learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tmp = tmp_path_factory.mktemp("pattern")
    config = load_config(ROOT / "configs" / "pattern.yaml",
                         {"board.xvfb": False, "board.goal.image": str(tmp / "goal.png")})
    assert not (tmp / "goal.png").exists()
    board = config.board.ids[0]
    with ExperienceStore(tmp / "exp.sqlite") as store:
        results = bench.play(config, store, [board] * 2, tmp / "runs")
    assert (tmp / "goal.png").exists()
    return bench, results, tmp / "exp.sqlite", tmp / "runs", board


def test_pattern_is_solved_from_an_empty_store_with_three_buttons(pattern):
    _, (first, second), _, runs, board = pattern
    assert solved(first) and first.end == "goal" and first.explored > 0
    # What the first board taught: the second needs no exploration and one click per square.
    assert solved(second) and second.explored == 0 and second.attempts < first.attempts
    # The final screen satisfies the puzzle's own clues (the harness checks, not the agent).
    bench = pattern[0]
    assert bench.clues_met(load_episode(runs / "episode-000").frames[-1], board)
    final = load_episode(runs / "episode-001").frames[-1]
    assert bench.clues_met(final, board)
    assert second.attempts == sum(map(sum, bench.filled_squares(final, board)))


def test_pattern_buttons_are_learned_as_set_looks(pattern):
    _, _, path, _, _ = pattern
    with ExperienceStore(path) as store:
        skills = {e.key: e for e in store.knowledge.current("skill")}
        sets = {}
        for action in ("click", "right_click", "middle_click"):
            general = skills[f"{action}:cell"]
            assert general.status == "active"
            assert general.body["verification"] == ["changed:0,0"]
            sets[action] = general.body["procedure"][0]["looks"]["0,0"]
        # Left fills the unknown square, right marks it empty, middle clears a mark.
        unknown, full = next(iter(sets["click"].items()))
        assert sets["right_click"][unknown] not in (unknown, full)
        assert set(sets["middle_click"].values()) == {unknown}


def test_game_killed_mid_episode_ends_it_cleanly_with_its_steps_recorded(
        tmp_path, desktop_display):  # noqa: F811
    import os
    import signal

    from cairn.runtime.loop import Agent

    config = load_config(ROOT / "configs" / "flip.yaml",
                         {"board.ids": BOARDS[:1], "board.xvfb": False})
    with ExperienceStore(tmp_path / "exp.sqlite") as store, \
            Agent(config, store, tmp_path / "runs") as agent:

        def kill_after_two(ep):
            if ep.step == 2:
                os.kill(agent.env._proc.pid, signal.SIGKILL)

        result = agent.run_episode(config.seed, 0, on_step=kill_after_two)
        stored = store.count()
    assert result.end == "window_closed" and not solved(result)
    assert result.attempts == 3  # the click after the kill found no window
    episode = load_episode(tmp_path / "runs" / "episode-000")
    assert episode.finished and len(episode.actions) == result.attempts
    assert episode.truncated[-1]
    assert len(episode.attempts) == stored == result.attempts
