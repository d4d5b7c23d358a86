"""Fault suite, killed runs: `cairn run` killed with SIGKILL at several points leaves
recordings that `cairn replay` reads and a store that passes SQLite's integrity check, in
which every recorded attempt is found."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cairn.experience.store import ExperienceStore

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "crafter.yaml"


def cairn(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cairn.runtime.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


def steps_written(out: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in out.glob("*/episode-*/steps.jsonl"))


@pytest.mark.parametrize("kill_after", [0, 9, 70])
def test_sigkill_leaves_replayable_recordings_and_a_sound_store(tmp_path, kill_after):
    """0: as soon as the first recording exists; 9: mid-attempt in the first episode;
    70: in a later episode (episodes are cut at 30 steps)."""
    out, store = tmp_path / "runs", tmp_path / "exp.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn.runtime", "run", str(CONFIG), "--quiet",
         "--store", str(store), "--out", str(out), "--episodes", "20", "--max-steps", "30"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if list(out.glob("*/episode-000/meta.json")) and steps_written(out) >= kill_after:
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    episodes = sorted(out.glob("*/episode-*"))
    assert episodes
    recorded: dict[int, str] = {}
    for directory in episodes:
        shown = cairn("replay", str(directory))
        assert "Traceback" not in shown.stderr
        if shown.returncode != 0:  # killed before its first frame: nothing to replay
            assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1
            continue
        for line in (directory / "attempts.jsonl").read_text().splitlines():
            if line.strip():
                try:
                    attempt = json.loads(line)
                except json.JSONDecodeError:  # a line torn by the kill
                    continue
                recorded[attempt["id"]] = attempt["episode"]
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ExperienceStore(store) as opened:
        for attempt_id, episode in recorded.items():
            stored = opened.get(attempt_id)
            assert stored is not None and stored.episode == episode
        # The store is written before the recording: at most the attempt in progress is
        # stored but not yet recorded.
        assert opened.count() - len(recorded) in (0, 1)


@pytest.mark.parametrize("when", ["starting", "playing"])
def test_the_kill_switch_signal_stops_any_run_cleanly(tmp_path, when):
    """SIGUSR1 stops a run of any game at once, while Python still loads it or mid-episode:
    one line, exit status 3, and the episode's recording says it was killed."""
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn.runtime", "run", str(CONFIG), "--quiet",
         "--store", str(tmp_path / "exp.sqlite"), "--out", str(out), "--episodes", "20"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if when == "starting":
        time.sleep(0.15)
    else:
        deadline = time.monotonic() + 60
        while steps_written(out) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "run stopped by the kill switch: signal SIGUSR1" in lines[0]
    ends = [json.loads(m.read_text())["end_reason"]
            for m in sorted(out.glob("*/episode-*/meta.json"))]
    if when == "playing":
        assert ends and ends.count("killed") == 1 and ends[-1] == "killed"
