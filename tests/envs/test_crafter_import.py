"""Play recorded by Crafter's own recorder (``crafter.Recorder``, what ``python -m
crafter.run_gui --record DIR`` wraps around the env) is imported as a Cairn recording and
learned from offline; files it cannot use are refused in one line, leaving nothing behind."""

from pathlib import Path

import crafter
import numpy as np
import pytest

from cairn.envs.crafter import ACTIONS, CrafterGame
from cairn.envs.game import GameError
from cairn.experience.episodes import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.redistill import DistillError, distill_episodes, episodes_at, import_episode

ROOT = Path(__file__).resolve().parents[2]
SEED = 28  # a 32x32 world with a tree two tiles right and one up from the start
# Walk next to the tree and face it, strike it until wood comes, then wait for the end.
PLAY = ["move_right", "move_right", "move_up", "move_right", "do", "noop", "noop"]


def crafter_recording(directory: Path, script=PLAY, **env) -> Path:
    """An episode as Crafter's GUI records it: crafter.Recorder around crafter.Env, which
    writes the .npz when the episode ends (here: at its length)."""
    options = {"area": (32, 32), "seed": SEED, **env}
    recorder = crafter.Recorder(crafter.Env(length=len(script), **options), directory,
                                save_video=False)
    recorder.reset()
    for name in script:
        recorder.step(recorder.action_names.index(name))
    (npz,) = directory.glob("*.npz")
    return npz


def small_config():
    return load_config(ROOT / "configs" / "crafter.yaml", {"env.kwargs.area": [32, 32]})


def test_a_recorded_crafter_episode_is_imported_and_learned_from(tmp_path):
    npz = crafter_recording(tmp_path / "gui")
    folder = import_episode(npz, small_config(), tmp_path / "imported", seed=SEED)
    assert folder == tmp_path / "imported" / npz.stem
    assert [p.name for p in (tmp_path / "imported").iterdir()] == [npz.stem]

    episode = load_episode(folder)
    data = np.load(npz)
    assert np.array_equal(episode.frames, data["image"])
    assert [ACTIONS[a] for a in episode.actions] == PLAY
    assert episode.finished and episode.truncated[-1] and not episode.terminated.any()
    meta = episode.metadata["metadata"]
    assert (meta["game"], meta["seed"], meta["episode"]) == ("crafter", SEED, npz.stem)
    assert meta["action_names"] == list(ACTIONS) and meta["config"]["env"]["kwargs"]["area"]
    assert not episode.attempts

    with ExperienceStore(tmp_path / "s.sqlite") as store:
        report = distill_episodes(episodes_at(folder), store)
        first = store.get(1)
        skills = {e.key: e.body for e in store.knowledge.current("skill")}
    assert report.attempts >= 2 and report.lines[0].source == "segmented"
    assert (first.subgoal.key, first.step_start, first.step_end) == ("interact:tree", 0, 5)
    assert first.diagnosis.success and "wood+1" in first.diagnosis.effects
    assert "wood+1" in skills["interact:tree"]["verification"]
    assert skills["interact:tree"]["provenance"] == [first.id]


def test_frames_of_another_size_or_view_are_refused(tmp_path):
    config = small_config()
    bigger = crafter_recording(tmp_path / "big", size=(96, 96))
    with pytest.raises(DistillError) as err:
        import_episode(bigger, config, tmp_path / "out")
    assert "96x96 pixels, but the config's env.kwargs.size is 64" in str(err.value)
    narrower = crafter_recording(tmp_path / "narrow", view=(7, 7))
    with pytest.raises(DistillError, match="record with run_gui's default --view 9 9"):
        import_episode(narrower, config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_files_that_are_not_crafter_episodes_are_refused(tmp_path):
    game = CrafterGame({"size": 64})
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(GameError, match="junk.npz: not a readable .npz file"):
        game.import_episode(junk)
    other = tmp_path / "other.npz"
    np.savez(other, frames=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(GameError, match="not an episode saved by crafter.Recorder .no image"):
        game.import_episode(other)
    board = load_config(ROOT / "configs" / "flip.yaml")
    with pytest.raises(DistillError, match="game 'board' has no importer for recordings made "
                                           "outside Cairn"):
        import_episode(other, board, tmp_path / "out")


def test_an_episode_is_imported_once(tmp_path):
    npz = crafter_recording(tmp_path / "gui", ["noop"])
    import_episode(npz, small_config(), tmp_path / "out")
    with pytest.raises(DistillError, match="already exists: it was imported before"):
        import_episode(npz, small_config(), tmp_path / "out")
