"""Naming what ended a Crafter episode (``bench/crafter_deaths.py``)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.crafter_deaths import Moment, cause  # noqa: E402

FULL = {"food": 5, "drink": 5, "energy": 5}


def at(health, attackers=(), on="grass", sleeping=False, needs=FULL):
    return Moment(health, dict(needs), set(attackers), on, 0.1, sleeping)


def test_a_blow_from_an_attacker_next_to_the_player_is_the_cause():
    assert cause([at(9), at(9, ["zombie"]), at(7, ["zombie"]), at(7), at(0)]) == "zombie"
    assert cause([at(9, ["zombie"], sleeping=True), at(2, ["zombie"])]) == "zombie (asleep)"
    assert cause([at(3), at(1, ["arrow"]), at(0)]) == "arrow"


def test_lava_needs_and_other_causes():
    assert cause([at(9), at(0, on="lava")]) == "lava"
    starving = {"food": 0, "drink": 0, "energy": 4}
    # Losing one point at a time with nothing next to it: a need at zero.
    assert cause([at(2, needs=starving), at(1, needs=starving), at(0, needs=starving)]) \
        == "no food or drink"
    # An attacker near, but no blow of two or more: not counted as the attacker's.
    assert cause([at(2, ["zombie"]), at(1, ["zombie"]), at(0)]) == "other"


def test_a_real_run_and_a_bad_store(tmp_path):
    from cairn.experience.store import ExperienceStore

    ExperienceStore(tmp_path / "empty.sqlite").close()  # nothing learned: the agent explores
    out = tmp_path / "deaths.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.crafter_deaths", str(tmp_path / "empty.sqlite"),
         "--episodes", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (episode,) = json.loads(out.read_text())["episodes"]
    assert episode["steps"] > 0 and episode["seed"] == 100000
    assert f"{episode['steps']} steps, {episode['end']}" in done.stdout
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a store")
    done = subprocess.run([sys.executable, "-m", "bench.crafter_deaths", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("cairn: error:")
