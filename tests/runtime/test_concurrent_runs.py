"""Fault suite, concurrent runs: two `cairn run` processes with the same config and seed on
one store both finish, and every attempt arrives under its own run's episodes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cairn.experience.store import ExperienceStore

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]


def test_two_runs_on_one_store_keep_their_episodes_apart(tmp_path):
    store = tmp_path / "shared.sqlite"
    runs = [subprocess.Popen(
        [sys.executable, "-m", "cairn.runtime", "run", str(ROOT / "configs" / "crafter.yaml"),
         "--quiet", "--store", str(store), "--out", str(tmp_path / f"out{i}"), "--seed", "0",
         "--episodes", "2", "--max-steps", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for proc in runs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    recorded: list[dict[str, int]] = []
    for i in (0, 1):
        episodes: dict[str, int] = {}
        for meta in sorted((tmp_path / f"out{i}").glob("*/episode-*/meta.json")):
            name = json.loads(meta.read_text())["metadata"]["episode"]
            episodes[name] = len((meta.parent / "attempts.jsonl").read_text().splitlines())
        assert len(episodes) == 2
        recorded.append(episodes)
    assert not set(recorded[0]) & set(recorded[1])  # same config and seed, distinct episodes
    with ExperienceStore(store, writable=False) as opened:
        for episodes in recorded:
            for name, count in episodes.items():
                stored = opened.by_episode(name)
                assert len(stored) == count and all(t.episode == name for t in stored)
        assert opened.count() == sum(sum(e.values()) for e in recorded)
