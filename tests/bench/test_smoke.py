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


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")
def test_desktop_latency_prints_each_phase():
    out = run("desktop_latency", "--iterations", "5", "--seconds", "0.5")
    assert number(r"total\s+p50\s+([\d.]+)", out) > 0


def test_scaling_prints_rates_with_one_and_two_workers():
    pytest.importorskip("ray")
    out = run("scaling", "--episodes", "2", "--max-steps", "30", timeout=300)
    assert number(r"Ray, 2 worker\(s\)\s+\d+\s+[\d.]+\s+\d+\s+([\d.]+)x", out) > 0
    assert number(r"1 worker\(s\): Ray and workers started in ([\d.]+) s", out) > 0
    assert "2 workers / 1 worker" in out


def test_worker_learning_compares_one_process_with_workers():
    pytest.importorskip("ray")
    out = run("worker_learning", "--episodes", "2", "--eval-episodes", "1", "--max-steps", "30",
              "--generation", "1", timeout=300)
    held_out = re.findall(r"^  (one process|1 Ray worker|2 Ray workers)\s+([\d.]+)\s+\d+$",
                          out, re.M)
    assert [name for name, _ in held_out] == ["one process", "1 Ray worker", "2 Ray workers"]


def test_retrieval_prints_query_time_recall_and_encoder_rate():
    pytest.importorskip("faiss")
    pytest.importorskip("open_clip")
    out = run("retrieval", "--n", "3000", "--dim", "32", "--queries", "100", "--approx-from",
              "1000", "--batch", "700", "--model", "ViT-S-32", "--batch-sizes", "1", "2",
              "--images", "2")
    assert "HNSW" in out  # 3,000 vectors passed the lowered threshold
    default = r"efSearch \d+\s+100\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s+target p99"
    assert number(default, out) > 0
    assert float(re.search(default, out).group(2)) >= 0.9  # recall@10
    rates = re.findall(r"^\s+(1|2)\s+\d+\s+([\d.]+)\s+[\d.]+$", out, re.M)
    assert [size for size, _ in rates] == ["1", "2"] and all(float(r) > 0 for _, r in rates)


@pytest.mark.skipif(shutil.which("Xvfb") is None
                    or shutil.which("minetest", path="/usr/games:/usr/bin") is None,
                    reason="needs Xvfb and Minetest (apt-get install xvfb minetest minetest-data)")
def test_minetest_latency_prints_latency_and_frame_rates():
    out = run("minetest_latency", "--iterations", "8", "--seconds", "0.5")
    assert number(r"capture->input\s+p50\s+([\d.]+)", out) > 0
    assert number(r"raw mss grab\s+([\d.]+) frames/s", out) > 0
    assert number(r"game: ([\d.]+) distinct frames/s", out) > 0
