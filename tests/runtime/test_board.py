"""The board agent on the real sgt-flip under Xvfb, from an empty store: it learns what a
click does from the screen, solves a fixed 3x3 board, and solves a second one with fewer
clicks from the knowledge it stored."""

import shutil
from pathlib import Path

import pytest

from runtime.config import load_config
from runtime.recording import load_episode
from runtime.store import ExperienceStore
from tests.desktop_fixtures import desktop_display  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parents[2]
# Two fixed 3x3 boards (`sgt-flip --generate 2 3x3`): the same cross moves, other states.
BOARDS = ["3x3:d074191345d1644c17058,648", "3x3:d074191345d1644c17058,810"]

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or not Path("/usr/games/sgt-flip").exists(),
    reason="needs Xvfb and sgt-puzzles (apt-get install xvfb xdotool sgt-puzzles)")


@pytest.fixture(scope="module")
def played(tmp_path_factory, desktop_display):  # noqa: F811
    """Two episodes from an empty store: (results, store path, run dir)."""
    from runtime.board import BoardAgent
    from runtime.board_cli import open_env

    tmp = tmp_path_factory.mktemp("board")
    config = load_config(ROOT / "configs" / "flip.yaml",
                         {"board.ids": BOARDS, "board.xvfb": False, "episodes": 2})
    with ExperienceStore(tmp / "exp.sqlite") as store:
        env = open_env(config)
        try:
            agent = BoardAgent(config, store, env, tmp / "runs")
            results = [agent.run_episode(config.seed + i, i) for i in range(2)]
        finally:
            env.close()
    return results, tmp / "exp.sqlite", tmp / "runs"


def test_first_board_is_solved_from_an_empty_store(played):
    first = played[0][0]
    assert first.solved and first.end == "goal"
    assert first.explore_clicks > 0


def test_second_board_needs_fewer_clicks_and_no_exploration(played):
    first, second = played[0]
    assert second.solved
    assert second.explore_clicks == 0
    assert second.clicks < first.clicks


def test_knowledge_links_to_stored_attempts(played):
    _, path, _ = played
    with ExperienceStore(path) as store:
        skills = {e.key: e for e in store.knowledge.current("skill")}
        general = skills["click:cell"]
        assert general.status == "active"
        assert set(general.body["verification"]) == {
            "flip:0,0", "flip:-1,0", "flip:1,0", "flip:0,-1", "flip:0,1"}
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
    assert episode.finished and episode.end_reason == "solved"
    assert len(episode.attempts) == results[0].clicks == episode.num_steps
    assert len(episode.frames) == episode.num_steps + 1
    assert episode.attempts[0].subgoal.key.startswith("click:")
