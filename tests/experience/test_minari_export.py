"""Recordings exported as a Minari dataset and read back through Minari itself."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from cairn.experience.episodes import load_episode
from cairn.experience.minari_export import (
    MinariMissingError,
    check_dataset_id,
    export_minari,
)
from cairn.experience.recording import EpisodeRecorder

minari = pytest.importorskip("minari")


def _load(root: Path, dataset_id: str, monkeypatch):
    """The dataset as a Minari user opens it: by id, with Minari's root set."""
    with monkeypatch.context() as m:
        m.setenv("MINARI_DATASETS_PATH", str(root))
        return minari.load_dataset(dataset_id)


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def _empty_recording(directory: Path, frame: np.ndarray | None) -> Path:
    with EpisodeRecorder(directory, {"episode": directory.name, "seed": 9}) as rec:
        if frame is not None:
            rec.record_reset(frame)
    return directory


def test_export_reads_back_through_minari_exactly(recorded_run, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    elsewhere = tmp_path / "users-own-root"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(elsewhere))
    folder = export_minari(recorded_run.episodes, "cairn/run-v0", root, author="tester")

    assert os.environ["MINARI_DATASETS_PATH"] == str(elsewhere)  # put back as it was
    assert not elsewhere.exists()
    assert folder == root / "cairn" / "run-v0" and (folder / "data").is_dir()
    assert _leftovers(root) == []

    dataset = _load(root, "cairn/run-v0", monkeypatch)
    recorded = [load_episode(p) for p in recorded_run.episodes]
    assert len(recorded) == 3
    assert dataset.total_episodes == 3
    assert dataset.total_steps == sum(e.num_steps for e in recorded)
    assert dataset.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)
    names = recorded[0].metadata["metadata"]["action_names"]
    assert dataset.action_space == spaces.Discrete(len(names))
    assert dataset.storage.metadata["cairn"]["action_names"] == names
    assert dataset.storage.metadata["author"] == {"tester"}
    assert dataset.spec.env_spec is None

    for data, episode in zip(dataset.iterate_episodes(), recorded, strict=True):
        assert data.observations.dtype == np.uint8
        assert len(data.observations) == len(data.actions) + 1  # the reset frame first
        assert np.array_equal(data.observations, episode.frames)  # lossless, no JPEG
        assert np.array_equal(data.actions, episode.actions)
        assert np.array_equal(data.rewards, episode.rewards)
        assert np.array_equal(data.terminations, episode.terminated)
        assert np.array_equal(data.truncations, episode.truncated)

    metas = list(dataset.storage.get_episode_metadata(range(3)))
    for meta, episode in zip(metas, recorded, strict=True):
        inner = episode.metadata["metadata"]
        assert meta["seed"] == episode.seed == inner["seed"]
        assert meta["cairn"]["episode"] == inner["episode"]
        assert meta["cairn"]["game"] == inner["game"]
        assert meta["cairn"]["end_reason"] == episode.end_reason
        assert bool(meta["cairn"]["finished"]) is True
        assert meta["cairn"]["recording"] == str(episode.directory)
    assert [m["seed"] for m in metas] == [0, 1, 2]
    assert dataset.storage.metadata["cairn"]["episodes"] == [
        e.metadata["metadata"]["episode"] for e in recorded]


@pytest.mark.parametrize("dataset_id", ["run", "run-v", "run-vx", "a/run-v0", "../run-v0",
                                        "ns//run-v0", "/run-v0", "run v0-v0", "ns/run-v0/",
                                        "", "rün-v0"])
def test_a_bad_dataset_id_is_refused_before_anything_is_written(recorded_run, tmp_path,
                                                                 dataset_id):
    with pytest.raises(ValueError, match=r"bad Minari dataset id .*NAME-vN") as err:
        export_minari(recorded_run.episodes[:1], dataset_id, tmp_path / "ds")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("dataset_id", ["run-v0", "cairn/run-v12", "ab/c-d/e_f-v3", "x-y-v1"])
def test_ids_accepted_here_are_accepted_by_minari(dataset_id):
    from minari.dataset.minari_dataset import parse_dataset_id

    assert check_dataset_id(dataset_id) == dataset_id
    parse_dataset_id(dataset_id)  # raises if Minari would refuse it


def test_recordings_that_differ_are_refused_naming_the_first(recorded_run, tmp_path,
                                                             monkeypatch):
    root = tmp_path / "ds"
    first, second, third = recorded_run.episodes
    # A copy whose meta.json names fewer actions: caught from meta.json, before writing.
    fewer = tmp_path / "fewer"
    shutil.copytree(second, fewer)
    meta = json.loads((fewer / "meta.json").read_text())
    meta["metadata"]["action_names"] = meta["metadata"]["action_names"][:5]
    (fewer / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"^{fewer}: action count 5 differs from 17 in "
                                         rf"{first}: one dataset holds one action set$"):
        export_minari([first, fewer, third], "mixed-v0", root)
    meta["metadata"]["action_names"] = ["other"] * 17
    (fewer / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"^{fewer}: action names differ in {first}"):
        export_minari([first, third, fewer], "mixed-v0", root)
    assert not root.exists() or list(root.iterdir()) == []

    # Frames of another size that meta.json does not admit: caught while writing, and
    # the half-built dataset is removed.
    loaded = load_episode(third)
    small = dataclasses.replace(loaded, directory=tmp_path / "small",
                                frames=np.ascontiguousarray(loaded.frames[:, :32]))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'small'}: frames are \(32, 64, 3\)"):
        export_minari([first, second, small], "mixed-v0", root)
    assert not (root / "mixed-v0").exists() and _leftovers(root) == []

    # An action outside the named set.
    wild = dataclasses.replace(loaded, actions=loaded.actions.copy())
    wild.actions[7] = 17
    with pytest.raises(ValueError, match=r"step 7 has action 17, outside the dataset's 17"):
        export_minari([wild], "wild-v0", root)
    assert not (root / "wild-v0").exists()


def test_a_recording_without_action_names_like_a_board_games(recorded_run, tmp_path,
                                                              monkeypatch):
    """No action names: the highest index sets the action space. Reset options go to
    Minari's ``options`` when HDF5 attributes can hold them, else to JSON text."""
    episodes = [load_episode(p) for p in recorded_run.episodes[:2]]
    options = [{"format": {"board": "3x3#0"}, "size": 3}, {"level": None}]
    # Fewer actions than the recording's env has, as clicked regions would be.
    unnamed = [dataclasses.replace(e, actions=e.actions % 7, metadata={**e.metadata, "metadata": {
        **e.metadata["metadata"], "action_names": [], "reset_options": o}})
        for e, o in zip(episodes, options, strict=True)]
    export_minari(unnamed, "unnamed-v0", tmp_path)
    dataset = _load(tmp_path, "unnamed-v0", monkeypatch)
    assert max(int(e.actions.max()) for e in unnamed) == 6
    assert dataset.action_space == spaces.Discrete(7)
    assert np.array_equal(dataset[1].actions, unnamed[1].actions)
    assert dataset.storage.metadata["cairn"]["action_names"] is None
    first, second = dataset.storage.get_episode_metadata([0, 1])
    assert first["options"] == options[0] and "reset_options" not in first["cairn"]
    assert "options" not in second
    assert json.loads(second["cairn"]["reset_options"]) == options[1]


def test_an_existing_dataset_is_kept_unless_overwrite(recorded_run, tmp_path, monkeypatch):
    first, second, _ = recorded_run.episodes
    export_minari([first], "ns/twice-v0", tmp_path)
    with pytest.raises(ValueError, match=r"ns/twice-v0 already exists; use another name or "
                                         r"version, or overwrite it"):
        export_minari([first, second], "ns/twice-v0", tmp_path)
    assert _load(tmp_path, "ns/twice-v0", monkeypatch).total_episodes == 1

    export_minari([first, second], "ns/twice-v0", tmp_path, overwrite=True)
    dataset = _load(tmp_path, "ns/twice-v0", monkeypatch)
    assert dataset.total_episodes == 2
    assert dataset.total_steps == sum(load_episode(p).num_steps for p in (first, second))
    assert _leftovers(tmp_path) == []

    # overwrite replaces a dataset, never another folder that happens to have the name
    (tmp_path / "ns" / "plain-v0").mkdir()
    with pytest.raises(ValueError, match="is not a Minari dataset; not replacing it"):
        export_minari([first], "ns/plain-v0", tmp_path, overwrite=True)


def test_recordings_without_steps_are_left_out_with_a_warning(recorded_run, tmp_path,
                                                              monkeypatch, caplog):
    frame = load_episode(recorded_run.episodes[0]).frames[0]
    reset_only = _empty_recording(tmp_path / "reset-only", frame)
    nothing = _empty_recording(tmp_path / "nothing", None)
    first = recorded_run.episodes[0]
    with caplog.at_level(logging.WARNING, logger="cairn.experience.minari_export"):
        export_minari([reset_only, first, nothing], "some-v0", tmp_path / "ds")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"{reset_only}: no steps recorded; left out of the Minari dataset",
                      f"{nothing}: no steps recorded; left out of the Minari dataset"]
    dataset = _load(tmp_path / "ds", "some-v0", monkeypatch)
    assert dataset.total_episodes == 1
    assert np.array_equal(dataset[0].observations, load_episode(first).frames)

    with pytest.raises(ValueError, match="nothing to export: none of the 2 recordings given "
                                         "has a step"):
        export_minari([reset_only, nothing], "none-v0", tmp_path / "ds")
    assert not (tmp_path / "ds" / "none-v0").exists() and _leftovers(tmp_path / "ds") == []


def test_without_minari_the_error_says_how_to_install_it(recorded_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # what `import minari` sees when absent
    with pytest.raises(MinariMissingError, match=r"pip install 'cairn\[minari\]'"):
        export_minari(recorded_run.episodes, "run-v0", tmp_path)
    assert list(tmp_path.iterdir()) == []
