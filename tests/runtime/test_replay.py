"""Deterministic re-execution: a freshly recorded Crafter episode re-runs frame for frame
from its recorded seed, and a recording whose seed was changed is caught at its first frame."""

import json
from pathlib import Path

from cairn.experience.episodes import load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.cli import main
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent
from cairn.runtime.replay import verify

ROOT = Path(__file__).resolve().parents[2]


def record(tmp_path: Path) -> Path:
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 80})
    with ExperienceStore(tmp_path / "exp.sqlite") as store, \
            Agent(config, store, tmp_path / "runs") as agent:
        agent.run_episode(5, 0)
    return tmp_path / "runs" / "episode-000"


def test_a_recorded_episode_reproduces_every_frame(tmp_path, capsys):
    directory = record(tmp_path)
    result = verify(load_episode(directory))
    assert result.diverged_at is None and result.steps == 80
    assert main(["replay", str(directory), "--verify"]) == 0
    assert "verified: 80 steps re-run from seed 5, every frame identical" in capsys.readouterr().out


def test_a_recording_that_does_not_reproduce_is_caught(tmp_path, capsys):
    directory = record(tmp_path)
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["seed"] = 6  # another world than the one recorded
    meta_path.write_text(json.dumps(meta))
    result = verify(load_episode(directory))
    assert result.diverged_at == 0 and "pixels differ" in result.detail
    assert main(["replay", str(directory), "--verify"]) == 1
    assert "diverges at frame 0" in capsys.readouterr().out
