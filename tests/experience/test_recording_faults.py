"""Damaged recordings and failed exports, on real Crafter episodes written to disk.

A flipped byte or a garbled line leaves the prefix before it readable (``salvage``) with
the bad record named; a finished recording cut short lists no attempt past its last
readable step; a meta.json without ``finished`` is refused; a failed export leaves the file
it would have replaced as it was.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cairn.experience.episodes import export_video, load_episode
from cairn.experience.recording import EpisodeRecorder, RecordingError
from tests.experience.recorded_episodes import (
    HEADER,
    SPANS,
    STEPS,
    flip_byte,
    frame_offsets,
    play,
    record,
)

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def played() -> dict:
    played = play()
    assert len(played["steps"]) == STEPS  # no death in these 40 steps: every span is used
    return played


def _spans(ep) -> list[tuple[int, int]]:
    return [(t.step_start, t.step_end) for t in ep.attempts]


def _expect_prefix(ep, played: dict, steps: int) -> None:
    """The episode is exactly the first ``steps`` steps played, and its attempts within."""
    assert ep.num_steps == steps and len(ep.frames) == steps + 1
    expected = np.stack([played["reset"]] + [s[1] for s in played["steps"][:steps]])
    np.testing.assert_array_equal(ep.frames, expected)
    assert ep.actions.tolist() == [s[0] for s in played["steps"][:steps]]
    assert ep.truncated[-1] and not ep.finished
    assert _spans(ep) == [(a, b) for a, b, *_ in SPANS if b <= steps]
    assert ep.dropped_attempts == sum(b > steps for _, b, *_ in SPANS) > 0


# -- a failed export ---------------------------------------------------------------------

@pytest.fixture
def gif(tmp_path: Path, played: dict) -> tuple[Path, Path, bytes]:
    """A recorded episode and a good GIF of it: (episode dir, GIF path, the GIF's bytes)."""
    ep_dir = record(tmp_path / "ep", played)
    out = tmp_path / "out" / "episode.gif"
    export_video(ep_dir, out, fps=15, scale=1)
    return ep_dir, out, out.read_bytes()


@pytest.mark.parametrize("kwargs", [
    {"fps": 0}, {"fps": -5}, {"fps": math.nan}, {"fps": 1e-9}, {"scale": 0}])
def test_refused_arguments_leave_the_existing_file(gif, kwargs: dict) -> None:
    """Before: -5 and 1e-9 raised OverflowError and NaN a ValueError from the GIF encoder,
    0 ZeroDivisionError, scale 0 "cannot write empty image", most after truncating the
    existing GIF (to 832 or 114 bytes)."""
    ep_dir, out, before = gif
    with pytest.raises(ValueError, match=f"^{next(iter(kwargs))} "):
        export_video(ep_dir, out, **{"fps": 15, "scale": 1, **kwargs})
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_an_export_failing_midway_leaves_the_existing_file(gif, monkeypatch) -> None:
    """The encoder writes part of a file and fails (a full disk): nothing is replaced."""
    import imageio.v3 as iio

    ep_dir, out, before = gif
    seen = []

    def write_part_then_fail(uri, *args, **kwargs):
        seen.append(Path(uri))
        Path(uri).write_bytes(before[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(iio, "imwrite", write_part_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_video(ep_dir, out, fps=15, scale=1)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    # It wrote beside the target (same folder: the rename is atomic), not to the target.
    assert seen[0] != out and seen[0].parent == out.parent and seen[0].suffix == ".gif"


# -- damaged data files ------------------------------------------------------------------

@pytest.mark.parametrize(("where", "fault"), [
    (HEADER.size + 100, "CRC mismatch"),          # a byte of the compressed frame
    (0, "bad magic b'\\xbcFRM'"),                  # the record's first byte: C ^ 0xFF
    (12, "frame index 235, expected 20"),         # the index field (20 ^ 0xFF)
])
@pytest.mark.parametrize("closed", [True, False])
def test_a_flipped_frame_byte_leaves_the_frames_before_it(tmp_path: Path, played: dict,
                                                          where: int, fault: str,
                                                          closed: bool) -> None:
    """Before: RecordingError for the whole episode, whatever came before the bad record."""
    ep_dir = record(tmp_path / "ep", played, close="done" if closed else None)
    offsets = frame_offsets(ep_dir / "frames.bin")
    flip_byte(ep_dir / "frames.bin", offsets[20] + where)

    with pytest.raises(RecordingError, match="record 20 at byte"):
        load_episode(ep_dir)  # without salvage a bad record is still an error
    ep = load_episode(ep_dir, salvage=True)
    _expect_prefix(ep, played, 19)  # frames 0..19 are whole: steps 0..18
    assert ep.faults[0] == f"{ep_dir / 'frames.bin'}: record 20 at byte {offsets[20]}: {fault}"
    if closed:
        assert ep.faults[1:] == [f"{ep_dir / 'meta.json'}: says 40 steps, 19 are readable"]
    else:
        assert ep.faults[1:] == []


@pytest.mark.parametrize(("name", "line", "steps", "spans"), [
    ("steps.jsonl", 8, 7, [(0, 5)]),
    ("attempts.jsonl", 3, STEPS, [(0, 5), (5, 13)]),
])
def test_a_garbled_line_leaves_the_lines_before_it(tmp_path: Path, played: dict, name: str,
                                                   line: int, steps: int,
                                                   spans: list) -> None:
    ep_dir = record(tmp_path / "ep", played)
    lines = (ep_dir / name).read_text().splitlines(keepends=True)
    lines[line - 1] = "garbage\n"
    (ep_dir / name).write_text("".join(lines))

    ep = load_episode(ep_dir, salvage=True)
    assert ep.num_steps == steps and len(ep.frames) == steps + 1
    assert _spans(ep) == spans
    assert ep.faults[0].startswith(f"{ep_dir / name}: line {line}: invalid JSON")


@pytest.mark.parametrize(("cut", "fault"), [
    (100, "cut off (100 of {size} bytes)"),
    (0, "missing (the file ends there)"),
])
def test_a_finished_recording_cut_short_lists_only_what_is_there(tmp_path: Path, played: dict,
                                                                 cut: int, fault: str) -> None:
    """Before: read with a logged warning, and all 5 attempts listed (up to step 40) over
    the 20 steps that were left."""
    ep_dir = record(tmp_path / "ep", played)
    frames = ep_dir / "frames.bin"
    offsets = frame_offsets(frames)
    frames.write_bytes(frames.read_bytes()[:offsets[21] + cut])

    ep = load_episode(ep_dir)  # a cut tail needs no salvage
    _expect_prefix(ep, played, 20)
    size = offsets[22] - offsets[21]
    assert ep.faults == [
        f"{frames}: record 21 at byte {offsets[21]}: {fault.format(size=size)}",
        f"{ep_dir / 'meta.json'}: says 40 steps, 20 are readable",
    ]
    assert ep.metadata["finished"] is True and ep.end_reason is None


@pytest.mark.parametrize(("edit", "message"), [
    ({"finished": None}, "no 'finished' key"),
    ({"finished": "yes"}, "'finished' is 'yes', not true or false"),
    ({"steps": None}, "finished, but 'steps' is None, not a step count"),
])
def test_a_meta_file_without_its_keys_is_malformed(tmp_path: Path, played: dict, edit: dict,
                                                  message: str) -> None:
    """Before: no 'finished' (or a string) read as a killed run; no 'steps' as '0 recorded'."""
    ep_dir = record(tmp_path / "ep", played)
    meta = json.loads((ep_dir / "meta.json").read_text())
    for key, value in edit.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    (ep_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError) as err:
        load_episode(ep_dir)
    assert str(err.value).startswith(f"{ep_dir / 'meta.json'}: malformed: {message}")


def test_a_run_killed_before_it_created_its_data_files_loads_empty(tmp_path: Path) -> None:
    """Killed between writing meta.json and creating frames.bin: nothing, not an error.

    Before: "frames.bin: missing".
    """
    EpisodeRecorder(tmp_path / "ep", {"seed": 3})  # writes meta.json, then creates the files
    for name in ("frames.bin", "steps.jsonl", "attempts.jsonl"):
        (tmp_path / "ep" / name).unlink()
    ep = load_episode(tmp_path / "ep")
    assert len(ep.frames) == ep.num_steps == 0 and ep.attempts == []
    assert not ep.finished and ep.faults == [] and ep.torn == []
