"""Episode recordings: round trips, torn tails, corruption, and a real SIGKILL mid-episode.

The writer thread itself (ordering, errors, bounds, threads) is test_recording_writer.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cairn.envs.crafter import CrafterEnv
from cairn.experience.episodes import export_video, list_episodes, load_episode
from cairn.experience.recording import MAX_PENDING, EpisodeRecorder, RecordingError
from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal

REPO = Path(__file__).resolve().parents[2]
#: A 32x32 world: reset (world generation) takes ~0.4 s instead of ~2-3 s for 64x64,
#: and the frames are the same real 64x64 Crafter observations.
AREA = (32, 32)
SEED = 3


@pytest.fixture(scope="module")
def played() -> dict:
    """A few dozen real Crafter steps (frames are the env's own transposed views)."""
    env = CrafterEnv(size=64, area=AREA)
    obs, _ = env.reset(seed=SEED)
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(40):
        action = int(rng.integers(0, 17))
        frame, reward, terminated, truncated, _ = env.step(action)
        steps.append((action, frame, reward, terminated, truncated))
    return {"reset": obs, "steps": steps}


def _state(step: int, wood: int) -> State:
    return State(step, (32, 30 + step), (0, 1), {"wood": wood}, "tree",
                 [[None, "grass"], ["tree", None]], ["tree", "grass"], ["day"])


def _attempts() -> list[ExperienceTuple]:
    diagnosis = Diagnosis(True, Cause.SUCCESS, {"wood": 1}, 1.0, [(3, 4, "tree", "grass")],
                          1.0, 0.0, 0, 5)
    failed = Diagnosis(False, Cause.PATH_BLOCKED, {}, 0.0, [], 0.2, 3.5, -1, 8,
                       stagnation=True, detail="water ahead")
    return [
        ExperienceTuple("ep0", 0, 5, _state(0, 0), Subgoal("collect", "tree"),
                        [3, 3, 5, 5, 5], diagnosis, _state(5, 1), id=1),
        ExperienceTuple("ep0", 5, 13, _state(5, 1), Subgoal("explore"),
                        [1, 2, 1, 2, 1, 2, 1, 2], failed, _state(13, 1)),
    ]


def _record(directory: Path, played: dict, close: str | None = "done", **kwargs) -> None:
    rec = EpisodeRecorder(directory, {"seed": 3, "config": {"size": 64}}, **kwargs)
    rec.record_reset(played["reset"], {"achievements": {"collect_wood": 0}})
    for i, (action, frame, reward, terminated, truncated) in enumerate(played["steps"]):
        rec.record_step(action, frame, reward, terminated, truncated,
                        extra={"i": i} if i % 10 == 0 else None)
    for attempt in _attempts():
        rec.record_attempt(attempt)
    if close:
        rec.close(close)


def test_round_trip(tmp_path: Path, played: dict) -> None:
    _record(tmp_path / "ep", played)
    ep = load_episode(tmp_path / "ep")
    expected = np.stack([played["reset"]] + [s[1] for s in played["steps"]])
    assert ep.frames.shape == (41, 64, 64, 3) and ep.frames.dtype == np.uint8
    np.testing.assert_array_equal(ep.frames, expected)
    assert ep.actions.tolist() == [s[0] for s in played["steps"]]
    assert ep.rewards.tolist() == [s[2] for s in played["steps"]]
    assert ep.terminated.tolist() == [s[3] for s in played["steps"]]
    assert ep.extras[0] == {"i": 0} and ep.extras[1] is None
    assert [a.to_dict() for a in ep.attempts] == [a.to_dict() for a in _attempts()]
    assert ep.finished and ep.end_reason == "done" and ep.seed == 3 and not ep.torn
    assert ep.truncated[-1]  # stopped without a terminal step: the end is marked
    meta = ep.metadata
    assert meta["metadata"]["config"] == {"size": 64} and meta["steps"] == 40
    assert meta["reset_info"] == {"achievements": {"collect_wood": 0}}
    assert set(meta["versions"]) == {"cairn", "numpy", "python"}  # + the game's, if given
    assert list_episodes(tmp_path) == [tmp_path / "ep"]


def test_raw_codec_and_any_memory_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (9, 12, 3), dtype=np.uint8),           # C-contiguous
              rng.integers(0, 256, (12, 9, 3), dtype=np.uint8).transpose(1, 0, 2),
              rng.integers(0, 256, (18, 24, 3), dtype=np.uint8)[::2, ::2]]  # strided
    for codec in ("none", "zlib"):
        with EpisodeRecorder(tmp_path / codec, {}, compression=codec) as rec:
            rec.record_reset(frames[0])
            rec.record_step(1, frames[1], 0.0, False, False)
            rec.record_step(2, frames[2], 1.0, True, False)
        ep = load_episode(tmp_path / codec)
        np.testing.assert_array_equal(ep.frames, np.stack(frames))
        assert ep.end_reason == "terminated" and not ep.truncated.any()


@pytest.mark.parametrize(("chop_frames", "chop_steps"), [(100, 0), (20, 0), (0, 5), (100, 200)])
def test_torn_tail_loads_complete_prefix(tmp_path: Path, played: dict, chop_frames: int,
                                         chop_steps: int) -> None:
    """Bytes chopped off the ends (a frame is ~3 KB, a step line ~85 B) leave a prefix."""
    ep_dir = tmp_path / "ep"
    _record(ep_dir, played)
    for name, chop in (("frames.bin", chop_frames), ("steps.jsonl", chop_steps)):
        if chop:
            os.truncate(ep_dir / name, (ep_dir / name).stat().st_size - chop)
    complete_lines = (ep_dir / "steps.jsonl").read_bytes().count(b"\n")
    expected = min(complete_lines, 39 if chop_frames else 40)
    assert expected < 40
    ep = load_episode(ep_dir)
    assert ep.num_steps == expected and len(ep.frames) == expected + 1
    assert ep.torn and not ep.finished and ep.truncated[-1]
    np.testing.assert_array_equal(ep.frames[-1], played["steps"][expected - 1][1])


def test_garbage_meta_raises_naming_it(tmp_path: Path, played: dict) -> None:
    _record(tmp_path / "ep", played)
    (tmp_path / "ep" / "meta.json").write_text("{not json")
    with pytest.raises(RecordingError, match=r"meta\.json: corrupt JSON"):
        load_episode(tmp_path / "ep")
    with pytest.raises(RecordingError, match="not a recording"):
        load_episode(tmp_path)


def test_bad_records_in_the_middle_raise(tmp_path: Path, played: dict) -> None:
    _record(tmp_path / "a", played)
    frames = bytearray((tmp_path / "a" / "frames.bin").read_bytes())
    frames[len(frames) // 2] ^= 0xFF
    (tmp_path / "a" / "frames.bin").write_bytes(bytes(frames))
    with pytest.raises(RecordingError, match=r"frames\.bin: record \d+ at byte \d+: "):
        load_episode(tmp_path / "a")

    _record(tmp_path / "b", played)
    lines = (tmp_path / "b" / "steps.jsonl").read_text().splitlines(keepends=True)
    lines[7] = "garbage\n"
    (tmp_path / "b" / "steps.jsonl").write_text("".join(lines))
    with pytest.raises(RecordingError, match=r"steps\.jsonl: line 8: invalid JSON"):
        load_episode(tmp_path / "b")


def test_exception_closes_with_error(tmp_path: Path, played: dict) -> None:
    with pytest.raises(ZeroDivisionError), EpisodeRecorder(tmp_path / "ep", {"seed": 3}) as rec:
        rec.record_reset(played["reset"])
        rec.record_step(*played["steps"][0])
        1 / 0  # noqa: B018
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.end_reason == "error" and ep.truncated.tolist() == [True]
    with pytest.raises(FileExistsError):
        EpisodeRecorder(tmp_path / "ep", {})


def test_export_video(tmp_path: Path, played: dict) -> None:
    import imageio.v3 as iio

    _record(tmp_path / "ep", played)
    ep = load_episode(tmp_path / "ep")
    gif = export_video(ep, tmp_path / "out" / "ep.gif", fps=10, scale=4)
    frames = iio.imread(gif, index=None)
    assert frames.shape[1:3] == (256, 256) and 1 < len(frames) <= 41
    mp4 = export_video(tmp_path / "ep", tmp_path / "ep.mp4", scale=2)
    assert mp4.stat().st_size > 0


CHILD = textwrap.dedent(f"""
    import sys, time
    import numpy as np
    from cairn.envs.crafter import CrafterEnv
    from cairn.experience.recording import EpisodeRecorder
    env = CrafterEnv(size=64, area={AREA})
    rec = EpisodeRecorder(sys.argv[1], {{"seed": {SEED}}})
    obs, _ = env.reset(seed={SEED})
    rec.record_reset(obs)
    rng = np.random.default_rng(0)  # the same actions as the played fixture
    for i in range(100000):
        action = int(rng.integers(0, 17))
        obs, reward, terminated, truncated, _ = env.step(action)
        rec.record_step(action, obs, reward, terminated, truncated)
        if (i + 1) % 10 == 0:
            rec.flush()  # every step recorded so far is on disk
            print("flushed", i + 1, flush=True)
        print(i + 1, flush=True)
        if terminated or truncated:
            break
    time.sleep(60)  # never closes: only the kill ends it
""")


def test_sigkill_leaves_every_completed_step_readable(tmp_path: Path, played: dict) -> None:
    ep_dir = tmp_path / "run" / "ep0"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ep_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reached = flushed = 0
        while reached < 35:
            line = proc.stdout.readline()
            assert line, f"child exited early: {proc.communicate(timeout=10)[1][-2000:]}"
            if line.startswith("flushed"):
                flushed = int(line.split()[1])
            else:
                reached = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    assert list_episodes(tmp_path / "run") == [ep_dir]
    ep = load_episode(ep_dir)
    # What was flushed is on disk; of the rest, at most what was still queued is lost.
    assert ep.num_steps >= max(flushed, reached - MAX_PENDING) and flushed == 30
    assert len(ep.frames) == ep.num_steps + 1
    assert not ep.finished and ep.end_reason is None and ep.truncated[-1]
    assert json.loads((ep_dir / "meta.json").read_text())["finished"] is False
    # Same seed and actions as the fixture: the recorded frames are the ones played.
    n = min(ep.num_steps, len(played["steps"]))
    expected = np.stack([played["reset"]] + [s[1] for s in played["steps"][:n]])
    np.testing.assert_array_equal(ep.frames[:n + 1], expected)
    assert ep.actions[:n].tolist() == [s[0] for s in played["steps"][:n]]
