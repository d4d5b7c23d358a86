"""The learning bench (``bench/crafter_learning.py``) on real Crafter worlds, run twice as a
user would start it, in processes with different string-hash seeds."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--train-seeds", "3", "40", "--budget", "1200", "--checkpoints", "400",
        "--eval-episodes", "2", "--max-steps", "120", "--jobs", "2"]
TIMINGS = ("train_seconds", "eval_seconds", "seconds", "store", "command")


def bench(out: Path, hash_seed: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.crafter_learning", *ARGS, "--out", str(out)], cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "learning.json").read_text()), done.stdout


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    return [bench(tmp_path_factory.mktemp(f"hash{h}"), h) for h in ("1", "2")]


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_the_same_seeds_and_budget_give_the_same_figures_in_any_process(two_runs):
    (a, _), (b, _) = two_runs
    assert without_timings(a) == without_timings(b)
    scores = [g["score"] for run in a["runs"] for g in run["generations"]]
    assert len(scores) >= 4 and len(set(scores)) > 1  # real, varying per-generation figures


@pytest.mark.slow
def test_checkpoints_follow_the_training_and_the_summary_is_over_the_seeds(two_runs):
    result, stdout = two_runs[0]
    assert result["checkpoints"] == [400, 1200]
    for run in result["runs"]:
        steps = [g["steps"] for g in run["generations"]]
        assert steps == sorted(steps) and steps[-1] >= 1200
        taken = [c["steps"] for c in run["checkpoints"]]
        assert taken[0] >= 400 and taken[1] >= 1200 and taken[0] < taken[1]
        assert all(c["knowledge"] for c in run["checkpoints"])
    for i, row in enumerate(result["summary"]):
        each = [run["checkpoints"][i]["score"] for run in result["runs"]]
        assert row["score"]["mean"] == pytest.approx(np.mean(each))
        assert row["score"]["min"] == min(each) and row["score"]["max"] == max(each)
        line = re.search(rf"^\s+{row['steps']}\s+([\d.]+)", stdout, re.M)
        assert line and float(line.group(1)) == pytest.approx(row["score"]["mean"], abs=0.006)
    rates = result["summary"][-1]["rates"]
    assert len(rates) == 22 and any(r["mean"] > 0 for r in rates.values())


@pytest.mark.slow
def test_the_plots_are_real_figures(two_runs):
    import cv2

    result, _ = two_runs[0]
    out = Path(result["runs"][0]["store"]).parent
    for name in ("curve.png", "achievements.png", "knowledge.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 300
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # lines, bands, text


def test_the_lowest_window_of_generations_counts_only_windows_after_the_first_checkpoint():
    sys.path.insert(0, str(ROOT))
    from bench.crafter_learning import lowest_window

    scores = [1.0, 9.0, 8.0, 2.0, 4.0, 9.0, 9.0]
    run = {"generations": [{"steps": 100 * (i + 1), "score": s} for i, s in enumerate(scores)]}
    assert lowest_window(run, after=0, window=2) == 3.0  # (2 + 4) / 2
    assert lowest_window(run, after=400, window=2) == 6.5  # windows from the 5th generation
    assert lowest_window(run, after=600, window=2) is None  # no full window left


def test_a_killed_bench_leaves_no_worker_behind(tmp_path):
    """The bench's worker processes end with it, even when it is killed outright."""
    script = (
        "import os, signal, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from cairn.envs.x11 import die_with\n"
        "if __name__ == '__main__':\n"  # the bench's pool, as bench/crafter_learning.py makes it
        "    pool = ProcessPoolExecutor(2, mp_context=get_context('spawn'), initializer=die_with,\n"
        "                               initargs=(os.getpid(), signal.SIGTERM))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(60)\n")
    (tmp_path / "parent.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)  # alive while the bench is
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        assert not Path(f"/proc/{worker}").exists(), "the worker outlived the killed bench"


@pytest.mark.slow
def test_a_bench_killed_mid_run_goes_on_from_its_resume_point_to_the_same_figures(
        two_runs, tmp_path):
    """Killed once a resume point exists, then started again with ``--resume``: the figures
    are those of the run that was never stopped."""
    command = [sys.executable, "-m", "bench.crafter_learning", *ARGS, "--out", str(tmp_path),
               "--save-every", "300"]
    running = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("resume-seed*.json")) and time.monotonic() < deadline:
        assert running.poll() is None, "the bench ended before saving a resume point"
        time.sleep(0.2)
    running.terminate()
    running.wait(timeout=60)
    assert not (tmp_path / "learning.json").exists()  # stopped part way
    afresh = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert afresh.returncode == 2 and "--resume goes on from there" in afresh.stderr
    done = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "going on from" in done.stdout
    resumed = json.loads((tmp_path / "learning.json").read_text())
    assert without_timings(resumed) == without_timings(two_runs[0][0])


@pytest.mark.slow
def test_a_resume_point_made_with_other_settings_is_refused_in_one_line(tmp_path):
    base = [sys.executable, "-m", "bench.crafter_learning", "--train-seeds", "5", "--budget",
            "300", "--eval-episodes", "1", "--max-steps", "60", "--jobs", "1",
            "--save-every", "100", "--out", str(tmp_path)]
    first = subprocess.run([*base, "--generation", "2"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "resume-seed5.json").exists()
    rerun = subprocess.run([*base, "--generation", "2"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]  # a finished run may start afresh
    again = subprocess.run([*base, "--generation", "3", "--resume"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"cairn: error: {tmp_path / 'resume-seed5.json'} was made with another generation; "
        "run without --resume to start afresh, or give another --out")
