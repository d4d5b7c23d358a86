"""`cairn run --workers N` as a user runs it: a real local Ray cluster started by the
command, Ctrl-C, bad input, and the one-process default that needs no Ray."""

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "crafter.yaml"


def small_config(tmp_path: Path) -> Path:
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    config["env"]["kwargs"]["area"] = [32, 32]
    config["episodes"] = 1
    path = tmp_path / "crafter-small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cairn_run(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cairn.runtime", "run", str(small_config(tmp_path)),
            "--store", str(tmp_path / "store.sqlite"), "--out", str(tmp_path / "runs"), *args]


def ray_processes() -> set[str]:
    """Ray's processes on this machine (its servers and the workers), as pid and command."""
    found = subprocess.run(["pgrep", "-af", "ray::|gcs_server|raylet"],
                           capture_output=True, text=True)
    return set(found.stdout.splitlines())


def test_workers_print_the_table_with_per_worker_rates(tmp_path):
    done = subprocess.run(cairn_run(tmp_path, "--workers", "2", "--episodes", "3",
                                    "--max-steps", "80"),
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("crafter-") for line in lines) == 3
    workers = [line for line in lines if line.startswith("worker ")]
    assert len(workers) == 2 and "steps/s" in workers[0]
    assert "2 episode(s)" in workers[0] and "1 episode(s)" in workers[1]
    total = next(line for line in lines if line.startswith("all 2 workers"))
    assert "3 episode(s) stored and distilled" in total


@pytest.mark.parametrize("how, status, said", [
    ("ctrl-c", 130, "interrupted"),  # to the whole process group, as a terminal sends it
    ("sigterm", 143, "terminated"),  # to the cairn process alone, as a process manager does
])
def test_stopping_is_clean_and_prints_what_finished(tmp_path, how, status, said, ctrl_c):
    before = ray_processes()
    proc = subprocess.Popen(cairn_run(tmp_path, "--workers", "2", "--episodes", "40",
                                      "--max-steps", "300", "--quiet"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=ctrl_c)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metas = list((tmp_path / "runs").glob("*/episode-00[2-9]/meta.json"))
            if metas:  # batch 2 is playing
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(1.0)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert "Traceback" not in err
    played = [line for line in out.splitlines() if line.startswith("crafter-")]
    assert 3 <= len(played) < 40  # batch 2 began; an episode stopped mid-way says so
    assert all(line.split()[7] in ("interrupted", "terminated", "truncated") for line in played)
    assert f"cairn: {said}" in err
    with closing(sqlite3.connect(tmp_path / "store.sqlite")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert stored == sum(int(line.split()[4]) for line in played)
    for meta in (tmp_path / "runs").glob("*/episode-*/meta.json"):
        assert json.loads(meta.read_text())["finished"]
    leftovers = ray_processes() - before
    assert not leftovers, f"outlived the run: {leftovers}"


def kill_tree(marker: str) -> None:
    """Kill the processes whose command line holds ``marker``, and all their descendants
    first (Ray's agents rename themselves, so only their parents carry the marker)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    roots = [int(pid) for pid in found.stdout.split()]
    family, queue = [], list(roots)
    while queue:
        pid = queue.pop()
        family.append(pid)
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        queue.extend(int(child) for child in children.stdout.split())
    for pid in reversed(family):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_workers_join_an_existing_cluster(tmp_path):
    """`ray start --head` as a user would on a head node, then --address; the workers run
    on that cluster, and stopping the cluster is the user's business. (The cluster keeps its
    files in a folder of its own, so the test stops only its own processes.)"""
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    own = tempfile.mkdtemp(prefix="cr", dir="/tmp")  # short: Ray's socket paths live under it
    started = subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--port", "6391",
                              "--include-dashboard=false", "--disable-usage-stats",
                              "--temp-dir", own],
                             capture_output=True, text=True, timeout=120, env=env)
    try:
        assert started.returncode == 0, started.stderr
        address = re.search(r"ray start --address='([^']+)'", started.stdout + started.stderr)
        assert address, started.stdout
        done = subprocess.run(cairn_run(tmp_path, "--workers", "2", "--episodes", "2",
                                        "--max-steps", "40", "--address", address.group(1)),
                              cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
        assert done.returncode == 0, done.stderr
        assert "all 2 workers" in done.stdout
        alive = subprocess.run([ray_cli, "status", "--address", address.group(1)],
                               capture_output=True, text=True, timeout=60, env=env)
        assert alive.returncode == 0  # the run left the user's cluster running
        before_stop = ray_processes()
    finally:
        kill_tree(own)
        shutil.rmtree(own, ignore_errors=True)
    time.sleep(1)
    assert not ray_processes() & before_stop, "the test left the cluster it started running"


def test_an_unreachable_cluster_is_one_line(tmp_path):
    done = subprocess.run(cairn_run(tmp_path, "--workers", "2", "--address", "127.0.0.1:9"),
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2
    assert "cannot reach a Ray cluster at '127.0.0.1:9'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, says", [
    (["--workers", "0"], "--workers must be a positive number"),
    (["--workers", "x"], "invalid int value"),
])
def test_bad_worker_counts_get_one_line(tmp_path, args, says):
    done = subprocess.run(cairn_run(tmp_path, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and says in done.stderr
    assert "Traceback" not in done.stderr


def test_board_workers_need_private_displays(tmp_path):
    shared = tmp_path / "flip-shared.yaml"
    text = (ROOT / "configs" / "flip.yaml").read_text()
    assert "xvfb: true" in text
    shared.write_text(text.replace("xvfb: true", "xvfb: false"))
    refused = subprocess.run(
        [sys.executable, "-m", "cairn.runtime", "run", str(shared), "--workers", "2",
         "--store", str(tmp_path / "s.sqlite")], cwd=ROOT, capture_output=True, text=True,
        timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "board.xvfb: true" in refused.stderr


def test_one_worker_plays_here_without_ray(tmp_path):
    code = ("import sys; from cairn.runtime.cli import main; "
            f"status = main({cairn_run(tmp_path, '--max-steps', '30', '--quiet')[3:]!r}); "
            "print('ray' in sys.modules, status)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False 0"
