"""What ``cairn replay`` tells a user: their mistakes and damaged recordings.

The installed ``cairn`` command runs as a subprocess on real Crafter recordings, so exit
status, stderr and stdout are exactly what a user sees. A mistake is exit status 2 and one
stderr line, ``cairn: error: ...``, naming the thing and what to do; a damaged recording
shows what is readable and names the first bad record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cairn.experience.episodes import export_video
from cairn.experience.recording import EpisodeRecorder
from tests.experience.recorded_episodes import (
    HEADER,
    flip_byte,
    frame_offsets,
    play,
    record,
)

pytestmark = pytest.mark.fault

_SCRIPT = Path(sys.executable).with_name("cairn")
CAIRN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "cairn.runtime.cli"]


def replay(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CAIRN, "replay", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a user mistake prints; exit status 2, no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cairn: error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """40 real Crafter steps and 5 attempts over them, closed as finished."""
    return record(tmp_path_factory.mktemp("recorded") / "ep", play())


@pytest.fixture
def ep(recorded: Path, tmp_path: Path) -> Path:
    """A fresh copy of the recording, as ``tmp_path / "ep"``; commands run in tmp_path."""
    return Path(shutil.copytree(recorded, tmp_path / "ep"))


# -- user mistakes -----------------------------------------------------------------------

@pytest.mark.parametrize("fps", ["-5", "0"])
def test_a_bad_fps_is_one_line_and_keeps_the_existing_gif(ep: Path, fps: str) -> None:
    """Before: a traceback (OverflowError, ZeroDivisionError), exit status 1, and for -5
    the existing GIF cut down to 832 bytes."""
    out = ep.parent / "out.gif"
    export_video(ep, out, fps=15, scale=1)
    before = out.read_bytes()
    proc = replay(ep.parent, "ep", "--gif", "out.gif", "--fps", fps)
    assert user_error(proc) == f"cairn: error: --fps must be a positive number, got {fps}"
    assert proc.stdout == ""  # refused before anything is read or printed
    assert out.read_bytes() == before
    assert sorted(p.name for p in ep.parent.iterdir()) == ["ep", "out.gif"]  # no temp file


def test_an_unsupported_file_type_names_the_supported_ones(ep: Path) -> None:
    """Before: a ValueError traceback, after the whole timeline was printed."""
    proc = replay(ep.parent, "ep", "--gif", "x.png")
    assert user_error(proc) == ("cairn: error: --gif x.png: cannot write '.png' files: "
                                "use a name ending in .gif, .mp4 or .avi")
    assert proc.stdout == "" and not (ep.parent / "x.png").exists()


@pytest.mark.parametrize(("target", "make", "message"), [
    ("missing/sub/x.gif", None,
     "--gif missing/sub/x.gif: folder missing/sub does not exist; create it first"),
    ("afile/x.gif", "file", "--gif afile/x.gif: afile is a file, not a folder"),
    ("adir.gif", "dir", "--gif adir.gif: that is a folder; give a file name"),
])
def test_an_output_path_that_cannot_be_a_file_is_one_line(ep: Path, target: str,
                                                          make: str | None,
                                                          message: str) -> None:
    """Before: the missing folders were created silently (exit 0); a file in the way and
    a folder at the target were tracebacks (FileExistsError, IsADirectoryError)."""
    first = Path(target).parts[0]
    if make == "file":
        (ep.parent / first).write_text("in the way")
    elif make == "dir":
        (ep.parent / first).mkdir()
    proc = replay(ep.parent, "ep", "--gif", target)
    assert user_error(proc, message)
    assert proc.stdout == ""
    assert {p.name for p in ep.parent.iterdir()} == {"ep"} | ({first} if make else set())
    if make == "dir":
        assert list((ep.parent / first).iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_folder_nobody_can_write_in_is_one_line(ep: Path) -> None:
    """/proc refuses new files even to root. Before: a FileNotFoundError traceback."""
    proc = replay(ep.parent, "ep", "--gif", "/proc/cairn-replay-test.gif")
    assert user_error(proc, "--gif /proc/cairn-replay-test.gif: cannot write it (",
                      "choose a folder you can write to")
    assert proc.stdout.startswith("ep: 40 steps, 5 attempts, finished\n")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes in read-only folders")
def test_a_read_only_folder_is_one_line(ep: Path) -> None:
    """Before: a PermissionError traceback."""
    locked = ep.parent / "locked"
    locked.mkdir(mode=0o555)
    try:
        proc = replay(ep.parent, "ep", "--gif", "locked/x.gif")
    finally:
        locked.chmod(0o755)
    assert user_error(proc, "--gif locked/x.gif: no permission to write in locked")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("gif", [False, True])
def test_an_episode_killed_before_its_first_frame_has_nothing_to_replay(tmp_path: Path,
                                                                       gif: bool) -> None:
    """A recorder that got no frame, never closed: what a kill right after its start leaves.

    Before: "0 steps, 0 attempts" and exit 0; with --gif a ValueError traceback.
    """
    EpisodeRecorder(tmp_path / "killed", {"seed": 3})
    proc = replay(tmp_path, "killed", *(["--gif", "k.gif"] if gif else []))
    assert user_error(proc) == (
        "cairn: error: killed: nothing to replay: the run was killed before it recorded the "
        "episode's first frame; replay another episode")
    assert proc.stdout == "" and not (tmp_path / "k.gif").exists()


# -- damaged recordings ------------------------------------------------------------------

def _attempt_spans(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith("  steps ")]


def test_a_flipped_frame_byte_replays_the_frames_before_it(ep: Path) -> None:
    """Before: "cairn: error: ep/frames.bin: record 20 at byte N: CRC mismatch", exit 2:
    the 19 good steps before it could not be replayed."""
    offsets = frame_offsets(ep / "frames.bin")
    flip_byte(ep / "frames.bin", offsets[20] + HEADER.size + 100)
    proc = replay(ep.parent, "ep", "--gif", "prefix.gif")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert proc.stdout.splitlines()[:4] == [
        "ep: 19 steps, 2 attempts, finished, but damaged (the last readable step marked "
        "truncated)",
        f"  damaged: ep/frames.bin: record 20 at byte {offsets[20]}: CRC mismatch",
        "  damaged: ep/meta.json: says 40 steps, 19 are readable",
        "  not shown: 3 attempt(s) reaching past step 19, the last readable one",
    ]
    assert _attempt_spans(proc.stdout) == ["0-5", "5-13"]
    assert proc.stdout.endswith("wrote prefix.gif\n") and (ep.parent / "prefix.gif").is_file()


def test_a_finished_recording_cut_short_lists_no_attempt_past_its_frames(ep: Path) -> None:
    """Before: a WARNING line on stderr, and all 5 attempts (up to step 40) listed over the
    20 steps left."""
    offsets = frame_offsets(ep / "frames.bin")
    (ep / "frames.bin").write_bytes((ep / "frames.bin").read_bytes()[:offsets[21] + 100])
    proc = replay(ep.parent, "ep")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    size = offsets[22] - offsets[21]
    assert proc.stdout.splitlines()[:4] == [
        "ep: 20 steps, 2 attempts, finished, but damaged (the last readable step marked "
        "truncated)",
        f"  damaged: ep/frames.bin: record 21 at byte {offsets[21]}: cut off (100 of {size} "
        "bytes)",
        "  damaged: ep/meta.json: says 40 steps, 20 are readable",
        "  not shown: 3 attempt(s) reaching past step 20, the last readable one",
    ]
    assert _attempt_spans(proc.stdout) == ["0-5", "5-13"]


def test_a_meta_file_without_finished_is_malformed_not_killed(ep: Path) -> None:
    """Before: read as a killed run: "40 steps, 5 attempts, unfinished (marked truncated)"."""
    meta = json.loads((ep / "meta.json").read_text())
    del meta["finished"]
    (ep / "meta.json").write_text(json.dumps(meta))
    proc = replay(ep.parent, "ep")
    assert user_error(proc, "ep/meta.json: malformed: no 'finished' key")
    assert proc.stdout == ""
