"""Each benchmark's entry point runs as a user would start it, on a tiny budget, and prints
the figures it exists to print."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(module: str, *args: str, timeout: float = 180) -> str:
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def test_loop_overhead_prints_the_loop_against_the_raw_step():
    out = run("loop_overhead", "--steps", "200")
    assert number(r"full loop \(\+recording, \+store\)\s+\d+\s+[\d.]+\s+([\d.]+)x", out) > 1.0


def test_perception_prints_accuracy_and_parse_time():
    out = run("perception", "--seeds", "1", "--steps", "20")
    assert number(r"wall median ([\d.]+) ms", out) > 0


def test_store_prints_ingest_and_lookup_against_bare_sqlite():
    out = run("store", "--tuples", "2000")
    assert number(r"bare SQLite indexed lookup\s+p50\s+([\d.]+) ms", out) > 0


def test_learning_bench_compares_three_agents(tmp_path):
    out = run("crafter_learning", "--budget", "300", "--eval-episodes", "1",
              "--png", str(tmp_path / "curve.png"))
    scores = re.search(r"^score\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert scores, out
    assert (tmp_path / "curve.png").stat().st_size > 0


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")
def test_desktop_latency_prints_each_phase():
    out = run("desktop_latency", "--iterations", "5", "--seconds", "0.5")
    assert number(r"total\s+p50\s+([\d.]+)", out) > 0
