"""The recorder's writer thread: the bytes it writes are the format's, in order, whatever
its pace; the queue stays bounded; a failure in the thread reaches the caller; no thread
outlives its recorder; a kill loses at most what was still queued."""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pytest

from cairn.experience import recording
from cairn.experience.episodes import load_episode
from cairn.experience.recording import (
    HEADER,
    MAX_PENDING,
    EpisodeRecorder,
    RecordingWriteError,
)
from tests.experience.recorded_episodes import AREA, SEED, attempts, play

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def played() -> dict:
    return play()


def _extra(i: int) -> dict | None:
    """Some steps carry an extra, with values json only takes through the recorder."""
    return {"i": np.int64(i), "seen": {"tree", "cow"}, "at": np.array([i, 2])} if i % 7 == 0 \
        else None


def _record(directory: Path, played: dict, **kwargs) -> EpisodeRecorder:
    rec = EpisodeRecorder(directory, {"seed": SEED}, **kwargs)
    rec.record_reset(played["reset"])
    spans = attempts()
    for i, (action, frame, reward, terminated, truncated) in enumerate(played["steps"]):
        rec.record_step(action, frame, reward, terminated, truncated, extra=_extra(i))
        while spans and spans[0].step_end == i + 1:
            rec.record_attempt(spans.pop(0))
    return rec


def _expected(played: dict, compression: str = "zlib") -> dict[str, bytes]:
    """The three data files as the format says them, written here step by step."""
    frames = [played["reset"]] + [s[1] for s in played["steps"]]
    records = []
    for index, frame in enumerate(frames):
        if frame.flags.c_contiguous:
            layout, data = 0, frame
        elif frame.transpose(1, 0, 2).flags.c_contiguous:
            layout, data = 1, frame.transpose(1, 0, 2)
        else:
            layout, data = 0, np.ascontiguousarray(frame)
        codec = 1 if compression == "zlib" else 0
        payload = zlib.compress(data.tobytes(), 1) if codec else data.tobytes()
        records.append(HEADER.pack(b"CFRM", codec, layout, *frame.shape, index, len(payload),
                                   zlib.crc32(payload)) + payload)
    lines = []
    for i, (action, _, reward, terminated, truncated) in enumerate(played["steps"]):
        line = {"step": i, "action": action, "reward": float(reward),
                "terminated": bool(terminated), "truncated": bool(truncated)}
        if _extra(i) is not None:
            line["extra"] = _extra(i)
        lines.append(json.dumps(line, default=recording._jsonable) + "\n")
    spans = [json.dumps(t.to_dict(), default=recording._jsonable) + "\n" for t in attempts()]
    return {"frames.bin": b"".join(records), "steps.jsonl": "".join(lines).encode(),
            "attempts.jsonl": "".join(spans).encode()}


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes()
            for name in ("frames.bin", "steps.jsonl", "attempts.jsonl")}


def _meta(directory: Path) -> dict:
    return json.loads((directory / "meta.json").read_text())


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_the_files_are_byte_for_byte_the_format(tmp_path: Path, played: dict,
                                                compression: str) -> None:
    rec = _record(tmp_path / "ep", played, compression=compression)
    rec.close("done")
    assert _files(tmp_path / "ep") == _expected(played, compression)
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.num_steps == len(played["steps"]) and ep.dropped_attempts == 0
    assert _meta(tmp_path / "ep")["steps"] == len(played["steps"])


def test_a_slow_writer_keeps_the_order_and_the_bound(tmp_path: Path, played: dict,
                                                     monkeypatch) -> None:
    """A writer far slower than the caller: the caller waits at the bound, and the files
    are the same bytes."""
    def slow_compress(data: bytes, level: int) -> bytes:
        time.sleep(0.003)
        return zlib.compress(data, level)

    monkeypatch.setattr(recording, "zlib", types.SimpleNamespace(
        compress=slow_compress, crc32=zlib.crc32))
    monkeypatch.setattr(recording, "MAX_PENDING", 3)
    rec = EpisodeRecorder(tmp_path / "ep", {"seed": SEED})
    rec.record_reset(played["reset"])
    spans = attempts()
    most = 0
    for i, (action, frame, reward, terminated, truncated) in enumerate(played["steps"]):
        rec.record_step(action, frame, reward, terminated, truncated, extra=_extra(i))
        most = max(most, rec._writer._pending)
        while spans and spans[0].step_end == i + 1:
            rec.record_attempt(spans.pop(0))
    assert most == 3  # the caller got ahead, as far as the bound and no further
    rec.close("done")
    assert _files(tmp_path / "ep") == _expected(played)


def test_a_frame_changed_after_it_was_recorded_is_recorded_as_it_was(
        tmp_path: Path, played: dict) -> None:
    """An env may reuse its frame buffer: the recorder keeps its own copy at once."""
    with EpisodeRecorder(tmp_path / "ep", {}) as rec:
        buffer = played["reset"].copy()
        rec.record_reset(buffer)
        for action, frame, reward, _, _ in played["steps"][:10]:
            buffer[...] = 0  # the env overwrites its buffer...
            buffer[...] = frame  # ...with the next frame
            rec.record_step(action, buffer, reward, False, False)
        buffer[...] = 255
    ep = load_episode(tmp_path / "ep")
    expected = np.stack([played["reset"]] + [s[1] for s in played["steps"][:10]])
    np.testing.assert_array_equal(ep.frames, expected)


def test_bad_frames_and_misuse_raise_at_once(tmp_path: Path, played: dict) -> None:
    rec = EpisodeRecorder(tmp_path / "ep", {})
    with pytest.raises(RuntimeError, match=r"record_step\(\) needs"):
        rec.record_step(0, played["reset"], 0.0, False, False)
    with pytest.raises(ValueError, match="frames must be HxWxC uint8, got float32"):
        rec.record_reset(played["reset"].astype(np.float32))
    rec.record_reset(played["reset"])
    with pytest.raises(RuntimeError, match=r"record_reset\(\) must come once"):
        rec.record_reset(played["reset"])
    with pytest.raises(ValueError, match=r"got uint8 \(64, 64\)"):
        rec.record_step(0, played["reset"][..., 0], 0.0, False, False)
    assert rec.steps == 0
    action, frame, reward, terminated, truncated = played["steps"][0]
    rec.record_step(action, frame, reward, terminated, truncated)
    rec.close("done")
    with pytest.raises(RuntimeError, match=r"record_attempt\(\) on a closed recorder"):
        rec.record_attempt(attempts()[0])
    ep = load_episode(tmp_path / "ep")
    assert ep.num_steps == 1 and ep.finished and ep.actions.tolist() == [action]


@pytest.fixture
def disk_full(monkeypatch) -> None:
    """Writing frames.bin fails as on a full disk (attempts.jsonl still writes)."""
    write_all = recording._write_all

    def failing(fd, data: bytes) -> None:
        if fd.name.endswith("frames.bin"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fd.name)
        write_all(fd, data)

    monkeypatch.setattr(recording, "_write_all", failing)


def test_a_writer_failure_is_raised_by_the_next_record_call(tmp_path: Path, played: dict,
                                                            disk_full) -> None:
    rec = EpisodeRecorder(tmp_path / "ep", {})
    rec.record_reset(played["reset"])
    rec._writer.wait_written()  # the write has failed by now
    with pytest.raises(RecordingWriteError, match=r"writer thread failed: OSError: \[Errno "
                       rf"{errno.ENOSPC}\] .*frames\.bin") as err:
        rec.record_step(*played["steps"][0])
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(RuntimeError, match="failed earlier"):
        rec.record_attempt(attempts()[0])
    rec.close("done")  # already reported: closes quietly, leaving the recording unfinished
    assert not rec._writer.thread.is_alive()
    assert _meta(tmp_path / "ep")["finished"] is False


def test_a_writer_failure_after_the_last_record_call_is_raised_by_close(
        tmp_path: Path, played: dict, monkeypatch) -> None:
    write_all, failing = recording._write_all, threading.Event()

    def late_failure(fd, data: bytes) -> None:
        if fd.name.endswith("frames.bin"):
            failing.wait()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fd.name)
        write_all(fd, data)

    monkeypatch.setattr(recording, "_write_all", late_failure)
    rec = _record(tmp_path / "ep", played)
    failing.set()
    with pytest.raises(RecordingWriteError, match=r"frames\.bin") as err:
        rec.close("done")
    assert err.value.errno == errno.ENOSPC and not rec._writer.thread.is_alive()
    rec.close("done")  # a second close does nothing
    assert _meta(tmp_path / "ep")["finished"] is False
    ep = load_episode(tmp_path / "ep")  # as a kill leaves it: what reached the disk
    assert ep.num_steps == 0 and not ep.finished and len(ep.attempts) == 0


def test_a_failed_writer_never_makes_the_caller_hang(tmp_path: Path, played: dict,
                                                     disk_full, monkeypatch) -> None:
    """The loop's way: a record call raises the failure, then close() in its error path.
    The failed writer keeps emptying its queue, so a caller at the bound never waits long,
    and close() returns."""
    monkeypatch.setattr(recording, "MAX_PENDING", 2)
    outcome: list[object] = []

    def play_and_close() -> None:
        rec = EpisodeRecorder(tmp_path / "ep", {})
        try:
            rec.record_reset(played["reset"])
            for _ in range(100):
                for step in played["steps"]:
                    rec.record_step(*step)
        except RecordingWriteError as err:
            outcome.append(err)
        finally:
            rec.close("error")
        outcome.append(rec._writer.thread)

    caller = threading.Thread(target=play_and_close)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "hung"
    err, thread = outcome
    assert isinstance(err, RecordingWriteError) and err.errno == errno.ENOSPC
    assert not thread.is_alive() and _meta(tmp_path / "ep")["finished"] is False


def test_no_thread_outlives_its_recorder(tmp_path: Path, played: dict) -> None:
    before = threading.active_count()
    rec = _record(tmp_path / "closed", played)
    assert threading.active_count() == before + 1 and rec._writer.thread.daemon
    rec.close("done")
    assert not rec._writer.thread.is_alive() and threading.active_count() == before

    with pytest.raises(ZeroDivisionError), EpisodeRecorder(tmp_path / "raised", {}) as rec:
        rec.record_reset(played["reset"])
        1 / 0  # noqa: B018
    assert not rec._writer.thread.is_alive()

    # Dropped without close(): what it queued is written, and its thread ends.
    rec = _record(tmp_path / "dropped", played)
    thread = rec._writer.thread
    del rec
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive() and threading.active_count() == before
    ep = load_episode(tmp_path / "dropped")
    assert ep.num_steps == len(played["steps"]) and not ep.finished  # as a kill leaves it
    assert _files(tmp_path / "dropped") == _expected(played)


def test_an_interrupt_in_the_caller_loses_nothing_queued(tmp_path: Path, played: dict,
                                                         monkeypatch) -> None:
    """Ctrl-C with steps still queued (the writer is slow): close() writes them all."""
    def slow_compress(data: bytes, level: int) -> bytes:
        time.sleep(0.002)
        return zlib.compress(data, level)

    monkeypatch.setattr(recording, "zlib", types.SimpleNamespace(
        compress=slow_compress, crc32=zlib.crc32))
    with pytest.raises(KeyboardInterrupt), EpisodeRecorder(tmp_path / "ep", {}) as rec:
        rec.record_reset(played["reset"])
        for step in played["steps"]:
            rec.record_step(*step)
        assert rec._writer._pending > 1  # still queued when the interrupt comes
        raise KeyboardInterrupt
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.end_reason == "error" and ep.num_steps == len(played["steps"])


def test_an_interrupt_while_close_waits_still_closes_the_recording(
        tmp_path: Path, played: dict, monkeypatch, ctrl_c) -> None:
    """Ctrl-C (or the kill switch's signal) while close() waits for the writer: the
    recording is closed as asked, then the interrupt goes on."""
    def slow_compress(data: bytes, level: int) -> bytes:
        time.sleep(0.02)
        return zlib.compress(data, level)

    monkeypatch.setattr(recording, "zlib", types.SimpleNamespace(
        compress=slow_compress, crc32=zlib.crc32))
    rec = EpisodeRecorder(tmp_path / "ep", {})
    rec.record_reset(played["reset"])
    for step in played["steps"][:10]:
        rec.record_step(*step)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rec.close("done")
    timer.join()
    assert time.monotonic() - started >= 0.15  # it waited for the writer after the interrupt
    assert not rec._writer.thread.is_alive()
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.end_reason == "done" and ep.num_steps == 10


def test_flush_puts_every_recorded_step_on_disk(tmp_path: Path, played: dict) -> None:
    rec = _record(tmp_path / "ep", played)
    rec.flush()
    expected = _expected(played)
    assert _files(tmp_path / "ep") == expected  # while the recorder is still open
    rec.close("done")
    assert _files(tmp_path / "ep") == expected


STALLED_CHILD = textwrap.dedent(f"""
    import sys, threading, types, zlib
    from cairn.envs.crafter import CrafterEnv
    from cairn.experience import recording
    env = CrafterEnv(size=64, area={AREA})
    rec = recording.EpisodeRecorder(sys.argv[1], {{"seed": {SEED}}})
    obs, _ = env.reset(seed={SEED})
    rec.record_reset(obs)
    for i in range(10):
        obs, reward, terminated, truncated, _ = env.step(0)
        rec.record_step(0, obs, reward, terminated, truncated)
    rec.flush()
    # The disk stalls: the writer blocks on the next frame, forever.
    stall = threading.Event()
    recording.zlib = types.SimpleNamespace(
        compress=lambda data, level: stall.wait() and b"", crc32=zlib.crc32)
    print("stalled", flush=True)
    for i in range(10, 1000):
        obs, reward, terminated, truncated, _ = env.step(0)
        rec.record_step(0, obs, reward, terminated, truncated)  # waits at the bound
        print(i + 1, flush=True)
""")


def test_a_kill_loses_at_most_what_was_queued(tmp_path: Path) -> None:
    ep_dir = tmp_path / "ep"
    proc = subprocess.Popen([sys.executable, "-c", STALLED_CHILD, str(ep_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(lines) < 1 + MAX_PENDING and proc.poll() is None:
            assert time.monotonic() < deadline, lines[-3:]
            time.sleep(0.01)
        time.sleep(1.0)  # the caller now waits for room in the queue: no further step
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert lines[0] == "stalled\n" and len(lines) == 1 + MAX_PENDING
    reached = int(lines[-1])
    ep = load_episode(ep_dir)
    assert ep.num_steps == 10 and len(ep.frames) == 11 and not ep.finished
    assert reached - ep.num_steps == MAX_PENDING
