"""End-to-end runs of the ``cairn`` command on real Crafter worlds."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cairn.envs.game import make_game
from cairn.experience.episodes import list_episodes, load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]


def small_config(tmp_path: Path) -> Path:
    """The shipped Crafter config with a 32x32 world (same frames, faster resets), one
    episode a run unless a test asks for more."""
    config = yaml.safe_load((ROOT / "configs" / "crafter.yaml").read_text())
    config["env"]["kwargs"]["area"] = [32, 32]
    config["episodes"] = 1
    path = tmp_path / "crafter-small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_records_episodes_fills_the_store_and_prints_the_table(tmp_path, capsys):
    store, out = tmp_path / "exp.sqlite", tmp_path / "runs"
    code = main(["run", str(small_config(tmp_path)), "--episodes", "2", "--seed", "3",
                 "--max-steps", "120", "--store", str(store), "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "score" in printed and "steps/s" in printed
    # One row per episode: its name (run, index), its world seed, then its numbers.
    rows = re.findall(r"^(crafter-\w+-e(\d)) +(\d+) ", printed, re.MULTILINE)
    assert [(index, seed) for _, index, seed in rows] == [("0", "3"), ("1", "4")]

    (run_dir,) = out.iterdir()
    episodes = list_episodes(run_dir)
    assert len(episodes) == 2
    first = load_episode(episodes[0])
    assert first.finished and 0 < len(first.actions) <= 120
    assert first.metadata["seed"] == 3
    assert {t.episode for t in first.attempts} == {rows[0][0]}
    with ExperienceStore(store) as s:
        assert s.count() == sum(len(load_episode(e).attempts) for e in episodes)
        stored = s.by_episode(rows[0][0])
        assert len(stored) > 0
        assert [t.to_dict() for t in stored] == [
            {**t.to_dict(), "id": stored[i].id} for i, t in enumerate(first.attempts)]


def test_a_second_run_reads_what_the_first_wrote(tmp_path):
    store = tmp_path / "exp.sqlite"
    args = ["run", str(small_config(tmp_path)), "--max-steps", "60", "--store", str(store),
            "--no-record", "--quiet"]
    assert main(args) == 0
    with ExperienceStore(store) as s:
        first = s.count()  # attempt ids 1..first are the first run's
        learned = {e.key: e for e in s.knowledge.current("skill")}
    assert first > 0 and learned
    assert main(args + ["--seed", "1"]) == 0
    with ExperienceStore(store) as s:
        assert s.count() > first
        current = {e.key: e for e in s.knowledge.current("skill")}
        second = [s.get(i) for i in range(first + 1, s.count() + 1)]
    assert set(learned) <= set(current)
    # The second run distilled skills again from the first run's successes and its own:
    # one that knew only its own attempts would list none of the first run's.
    spanning = [key for key in learned
                if min(current[key].body["provenance"]) <= first
                < max(current[key].body["provenance"])]
    assert spanning
    for key in spanning:
        own = sum(t.subgoal.key == key and t.diagnosis.success for t in second)
        assert current[key].body["successes"] > own
        assert current[key].version >= learned[key].version



ROW = re.compile(r"^crafter-\w+-e\d+ +(\d+) +(\d+) +\S+ +\d+ +\d+ +\d+ +\S+ +(.*)$",
                 re.MULTILINE)


def table_rows(printed: str) -> list[tuple[int, int, set[str]]]:
    """(seed, steps, what it reached) of each episode row of the final table."""
    return [(int(seed), int(steps), set() if names == "-" else set(names.split(", ")))
            for seed, steps, names in ROW.findall(printed)]


def test_the_table_says_how_the_score_moved_and_what_the_store_holds(tmp_path, capsys):
    store = tmp_path / "exp.sqlite"
    assert main(["run", str(small_config(tmp_path)), "--episodes", "7", "--max-steps", "40",
                 "--store", str(store), "--no-record", "--quiet"]) == 0
    printed = capsys.readouterr().out
    reached = [names for _, _, names in table_rows(printed)]
    assert len(reached) == 7
    # Thirds of 7 episodes: the first two against the last two, the middle three left out.
    game = make_game("crafter", {})
    first, last = (f"{game.score(part).value:.2f}" for part in (reached[:2], reached[-2:]))
    if first == last:
        expected = f"Crafter score stayed at {first} from the first 2 episodes to the last 2"
    else:
        moved = "rose" if float(last) > float(first) else "fell"
        expected = (f"Crafter score {moved} from {first} over the first 2 episodes "
                    f"to {last} over the last 2")
    assert expected in printed.splitlines()
    held = re.search(r"^the store now holds (\d+) attempts?, (\d+) skills? .*, (\d+) "
                     r"guardrails? .*; this run added (\d+) attempts?, (\d+) skills?, (\d+) "
                     r"guardrails?$", printed, re.MULTILINE)
    assert held is not None
    with ExperienceStore(store) as s:
        counts = (s.count(), len(s.knowledge.current("skill")),
                  len(s.knowledge.current("guardrail")))
    assert counts[0] > 0 and counts[1] > 0
    assert tuple(map(int, held.groups())) == counts * 2  # a new store: all of it this run's


def test_a_run_on_a_store_goes_on_with_the_next_seeds_unless_a_seed_is_given(
        tmp_path, capsys, copy_store):
    store = tmp_path / "exp.sqlite"
    args = ["run", str(small_config(tmp_path)), "--episodes", "2", "--max-steps", "20",
            "--no-record", "--quiet"]

    def run(*extra: str, at: Path = store) -> tuple[str, list[tuple[int, int, set[str]]]]:
        assert main([*args, "--store", str(at), *extra]) == 0
        printed = capsys.readouterr().out
        return printed.splitlines()[0], table_rows(printed)

    line, rows = run()
    assert [seed for seed, *_ in rows] == [0, 1]
    assert line == "crafter: 2 episodes on world seeds 0-1 (the config's seed: this store " \
                   "has played no 'crafter' episodes)"
    copy = copy_store(store, tmp_path / "copy.sqlite")
    line, rows = run()
    assert [seed for seed, *_ in rows] == [2, 3]
    assert line.startswith("crafter: 2 episodes on world seeds 2-3 (this store has played "
                           "'crafter' up to seed 1;")
    assert run(at=copy)[1] == rows  # the same store and config: the same seeds and play
    line, rows = run("--seed", "0")
    assert [seed for seed, *_ in rows] == [0, 1] and "given on the command line" in line
    assert [seed for seed, *_ in run()[1]] == [4, 5]  # an earlier --seed takes nothing back
    run("--seed", "10")
    assert [seed for seed, *_ in run()[1]] == [12, 13]


@pytest.mark.parametrize("mode", ["frozen", "off"])
def test_frozen_and_off_runs_add_attempts_but_no_knowledge(tmp_path, copy_store, mode):
    store = tmp_path / "exp.sqlite"
    args = ["run", str(small_config(tmp_path)), "--max-steps", "60", "--no-record", "--quiet"]
    assert main(args + ["--store", str(store)]) == 0
    copy = copy_store(store, tmp_path / f"{mode}.sqlite")
    with ExperienceStore(copy) as s:
        before = s.count(), s.knowledge.current("skill") + s.knowledge.current("guardrail")
    assert before[1]  # the learning run left knowledge behind
    assert main(args + ["--store", str(copy), "--seed", "1", "--learning", mode]) == 0
    with ExperienceStore(copy) as s:
        assert s.count() > before[0]
        assert s.knowledge.current("skill") + s.knowledge.current("guardrail") == before[1]


@pytest.mark.parametrize(("args", "message"), [
    (["run", "missing.yaml"], "config file not found: missing.yaml"),
    (["run", "{config}", "--episodes", "0"], "--episodes must be a positive number"),
    (["replay", "{tmp}"], "not a recording"),
    (["run", "{config}", "--set", "max_steps"], "--set takes KEY=VALUE"),
    (["run", "{config}", "--set", "agent.max_attempt_steps=0"], "max_attempt_steps"),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, capsys, args, message):
    args = [a.format(config=small_config(tmp_path), tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("cairn: error:")


def test_set_changes_one_config_value_for_the_run(tmp_path):
    store = tmp_path / "exp.sqlite"
    args = ["run", str(small_config(tmp_path)), "--store", str(store), "--no-record", "--quiet"]
    assert main(args + ["--set", "max_steps=17", "--set", "agent.max_attempt_steps=5"]) == 0
    with ExperienceStore(store) as s:
        attempts = [s.get(i) for i in range(1, s.count() + 1)]
    assert max(t.step_end for t in attempts) == 17
    assert max(len(t.primitives) for t in attempts) <= 5


def test_a_config_with_an_action_the_env_lacks_is_refused(tmp_path, capsys):
    config = yaml.safe_load(small_config(tmp_path).read_text())
    config["actions"]["interact"] = "punch"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--store", str(tmp_path / "s.sqlite"), "--no-record"]) == 2
    assert "'punch'" in capsys.readouterr().err


def test_a_run_killed_with_sigkill_leaves_a_recording_that_loads(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn.runtime", "run", str(small_config(tmp_path)),
         "--store", str(tmp_path / "exp.sqlite"), "--out", str(out), "--quiet",
         "--episodes", "20"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        steps_file, written = None, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and written < 30:
            found = sorted(out.glob("*/episode-*/steps.jsonl"))
            if found:  # the episode being played now
                steps_file = found[-1]
                written = steps_file.read_bytes().count(b"\n")
            time.sleep(0.02)
        assert steps_file is not None, proc.stderr.read().decode() if proc.poll() else "slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    episode = load_episode(steps_file.parent)
    assert len(episode.actions) >= written >= 30
    assert len(episode.frames) == len(episode.actions) + 1
    # Killed mid-episode: not finished, and the last step marked as an end (truncated, or
    # terminated if the kill came just after a death). The kill may also land in the
    # instant after the episode closed, and then it is simply complete.
    if not episode.finished:
        assert episode.truncated[-1] or episode.terminated[-1]
    *earlier, last = sorted(list_episodes(steps_file.parent.parent))
    assert all(load_episode(e).finished for e in earlier)
    load_episode(last)  # the one being written when the kill came loads as well


def test_a_kill_switch_wrapped_by_python_is_still_a_clean_stop():
    """A signal that lands while a dataclass is defined arrives as a RuntimeError's cause."""
    from cairn.runtime.__main__ import Stopped
    from cairn.runtime.cli import _kill_switch

    stop = Stopped("run stopped by the kill switch: signal SIGUSR1 sent to process 1")
    try:
        try:
            raise stop
        except Stopped as inner:
            raise RuntimeError("Error calling __set_name__") from inner
    except RuntimeError as wrapped:
        assert _kill_switch(wrapped) is stop
    assert _kill_switch(RuntimeError("something else")) is None


def test_a_kill_switch_python_dropped_still_stops_the_next_desktop_env():
    """A SIGUSR1 whose exception Python drops (it landed in a ``__del__``, say) is not lost:
    the command's handler wrote it down, and the desktop envs' kill switch takes it over."""
    import os
    import signal
    import time

    from cairn.envs.x11 import run_latch, stop_signals
    from cairn.runtime import __main__ as command

    previous = signal.signal(signal.SIGUSR1, command._stop)
    try:
        with stop_signals(), run_latch() as latch:
            assert latch.reason is None  # nothing fired yet: nothing pending
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(5)
        except command.Stopped:
            pass  # ... and pretend Python dropped it
        with stop_signals(), run_latch() as latch:
            assert latch.reason == f"signal SIGUSR1 sent to process {os.getpid()}"
            assert latch.trigger == "signal"
    finally:
        command._stop.fired = None
        signal.signal(signal.SIGUSR1, previous)
