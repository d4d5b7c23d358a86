"""Reading an episode recording back (the format is :mod:`cairn.experience.recording`), and
exporting it as a GIF or video.

The loader ignores a torn last record and trims frames and steps to their common complete
prefix. A bad record (a flipped byte, a garbled line) is an error naming the file and the
record; ``load_episode(..., salvage=True)`` reads the prefix before it instead and names it
in ``Episode.faults``. Attempts reaching past the last readable step are never listed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cairn.experience.recording import (
    ATTEMPTS,
    CODEC_RAW,
    CODEC_ZLIB,
    FORMAT,
    FORMAT_VERSION,
    FRAMES,
    HEADER,
    LAYOUT_HWC,
    LAYOUT_WHC,
    MAGIC,
    META,
    STEPS,
    RecordingError,
)
from cairn.experience.records import ExperienceTuple

log = logging.getLogger(__name__)


@dataclass
class Episode:
    """A loaded recording. ``frames`` has one more entry than the steps (the reset frame).

    When the recording stops without a terminal step (killed, closed on an error or
    stopped early) the last step's ``truncated`` is set, so the episode has an end.
    ``finished`` is meta.json's flag (closed by the recorder), cleared when fewer steps are
    readable than meta.json says; ``torn`` names the files whose last record was cut off and
    dropped. ``faults`` says, one line each naming the file and the record, what was wrong
    with a recording that should have been whole: a bad record (only with ``salvage``),
    a cut-off or missing one in a finished recording. ``dropped_attempts`` counts the
    attempts left out of ``attempts`` because they reach past the last readable step.
    """

    directory: Path
    metadata: dict[str, Any]
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    extras: list[dict[str, Any] | None]
    attempts: list[ExperienceTuple]
    finished: bool
    torn: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    dropped_attempts: int = 0

    @property
    def num_steps(self) -> int:
        return len(self.actions)

    @property
    def seed(self) -> Any:
        return self.metadata.get("seed")

    @property
    def end_reason(self) -> str | None:
        return self.metadata.get("end_reason") if self.finished else None


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META
    if not directory.is_dir():
        raise RecordingError(f"{directory}: not a directory")
    if not path.is_file():
        raise RecordingError(f"{directory}: not a recording ({META} missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a {FORMAT} meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RecordingError(f"{path}: unsupported format_version {meta.get('format_version')}")
    # The recorder always writes "finished"; without it a killed run and a closed one look
    # alike, so guessing either would misreport the episode.
    if "finished" not in meta:
        raise RecordingError(f"{path}: malformed: no 'finished' key (the recorder writes "
                             "false when it starts, true when it closes)")
    if not isinstance(meta["finished"], bool):
        raise RecordingError(f"{path}: malformed: 'finished' is {meta['finished']!r}, "
                             "not true or false")
    steps = meta.get("steps")
    if meta["finished"] and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
        raise RecordingError(f"{path}: malformed: finished, but 'steps' is {steps!r}, "
                             "not a step count")
    return meta


def _read_frames(path: Path, required: bool
                 ) -> tuple[list[np.ndarray], str | None, str | None]:
    """Decode the records up to the first bad one; nothing after a bad record is read.

    Returns the frames, a line naming a torn last record (cut off, as a kill leaves it)
    and a line naming the first bad record, each None if there is none. A missing file is
    empty unless ``required`` (a kill can come before the recorder created it).
    """
    if not path.is_file():
        if required:
            raise RecordingError(f"{path}: missing")
        return [], None, None
    buf = memoryview(path.read_bytes())
    frames: list[np.ndarray] = []
    pos = 0
    while pos < len(buf):
        where = f"{path}: record {len(frames)} at byte {pos}"
        if len(buf) - pos < HEADER.size:
            return frames, f"{where}: cut off ({len(buf) - pos} of {HEADER.size} bytes)", None
        magic, codec, layout, h, w, c, index, length, crc = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            return frames, None, f"{where}: bad magic {bytes(magic)!r}"
        start = pos + HEADER.size
        if len(buf) - start < length:
            size = HEADER.size + length
            return frames, f"{where}: cut off ({len(buf) - pos} of {size} bytes)", None
        payload = buf[start:start + length]
        if zlib.crc32(payload) != crc:
            return frames, None, f"{where}: CRC mismatch"
        if index != len(frames):
            return frames, None, f"{where}: frame index {index}, expected {len(frames)}"
        if codec not in (CODEC_RAW, CODEC_ZLIB) or layout not in (LAYOUT_HWC, LAYOUT_WHC):
            return frames, None, f"{where}: unknown codec {codec} or layout {layout}"
        try:
            raw = zlib.decompress(payload) if codec == CODEC_ZLIB else bytes(payload)
            if layout == LAYOUT_WHC:
                frame = np.frombuffer(raw, np.uint8).reshape(w, h, c).transpose(1, 0, 2)
            else:
                frame = np.frombuffer(raw, np.uint8).reshape(h, w, c)
        except (zlib.error, ValueError) as e:
            return frames, None, f"{where}: undecodable ({e})"
        if frames and frame.shape != frames[0].shape:
            return frames, None, f"{where}: shape {frame.shape} != {frames[0].shape}"
        frames.append(frame)
        pos = start + length
    return frames, None, None


def _read_jsonl(path: Path, required: bool
                ) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """Parse the lines up to the first bad one, as :func:`_read_frames` reads records.

    A last line without its newline is torn, not bad.
    """
    if not path.is_file():
        if required:
            raise RecordingError(f"{path}: missing")
        return [], None, None
    *lines, tail = path.read_bytes().split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return rows, None, f"{path}: line {number}: invalid JSON ({e})"
        if not isinstance(row, dict):
            return rows, None, f"{path}: line {number}: not a JSON object"
        rows.append(row)
    torn = f"{path}: line {len(lines) + 1}: cut off (no newline)" if tail else None
    return rows, torn, None


def _step_fields(row: dict[str, Any], index: int) -> tuple[int, float, bool, bool]:
    if row.get("step") != index:
        raise ValueError(f"step {row.get('step')}, expected {index}")
    try:
        return (int(row["action"]), float(row["reward"]), bool(row["terminated"]),
                bool(row["truncated"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"missing or bad field {e}") from None


def load_episode(directory: Path | str, *, salvage: bool = False) -> Episode:
    """Read a recording, finished or cut short by a kill; raise RecordingError if unreadable.

    A torn last record (a kill) is dropped. A bad record anywhere (a flipped byte, a garbled
    line) raises, naming the file and the record; with ``salvage`` the episode is read up to
    the first bad record instead, which ``Episode.faults`` names. Either way the episode
    holds only what is there: its steps are those with a frame and a line, and attempts
    reaching past the last of them are dropped (counted in ``dropped_attempts``).
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    closed = meta["finished"]
    frames, frames_torn, frames_bad = _read_frames(directory / FRAMES, closed)
    steps, steps_torn, steps_bad = _read_jsonl(directory / STEPS, closed)
    attempt_rows, attempts_torn, attempts_bad = _read_jsonl(directory / ATTEMPTS, closed)
    torn = [name for name, t in ((FRAMES, frames_torn), (STEPS, steps_torn),
                                 (ATTEMPTS, attempts_torn)) if t]
    faults: list[str] = []

    def fault(message: str) -> None:
        if not salvage:
            raise RecordingError(message)
        faults.append(message)

    for bad in (frames_bad, steps_bad):
        if bad:
            fault(bad)
    n = min(len(steps), max(len(frames) - 1, 0))
    fields = []
    for i, row in enumerate(steps[:n]):
        try:
            fields.append(_step_fields(row, i))
        except ValueError as e:
            fault(f"{directory / STEPS}: line {i + 1}: {e}")
            n = i
            break

    attempts = []
    for number, row in enumerate(attempt_rows, 1):
        try:
            attempts.append(ExperienceTuple.from_dict(row))
        except (KeyError, TypeError, ValueError) as e:
            fault(f"{directory / ATTEMPTS}: line {number}: "
                  f"not an experience tuple ({type(e).__name__}: {e})")
            break
    if attempts_bad and len(attempts) == len(attempt_rows):
        fault(attempts_bad)

    finished = closed
    if closed:
        # A closed recording has every record: a cut-off one is damage, not a kill.
        faults += [t for t in (frames_torn, steps_torn, attempts_torn) if t]
        if meta["steps"] < n:
            raise RecordingError(f"{directory / META}: says {meta['steps']} steps, "
                                 f"but {n} are recorded")
        if meta["steps"] > n:
            if not (frames_torn or frames_bad) and len(frames) < meta["steps"] + 1:
                faults.append(f"{directory / FRAMES}: record {len(frames)} at byte "
                              f"{(directory / FRAMES).stat().st_size}: missing (the file "
                              "ends there)")
            elif not (steps_torn or steps_bad) and len(steps) < meta["steps"]:
                faults.append(f"{directory / STEPS}: line {len(steps) + 1}: missing (the "
                              "file ends there)")
            faults.append(f"{directory / META}: says {meta['steps']} steps, "
                          f"{n} are readable")
            finished = False
    if faults or torn or len(steps) != n or len(frames) not in (0, n + 1):
        log.info("%s: keeping %d complete steps (frames %d, steps %d, torn %s, faults %s)",
                 directory, n, len(frames), len(steps), torn or "none", faults or "none")

    actions = np.array([f[0] for f in fields], dtype=np.int64)
    rewards = np.array([f[1] for f in fields], dtype=np.float64)
    terminated = np.array([f[2] for f in fields], dtype=bool)
    truncated = np.array([f[3] for f in fields], dtype=bool)
    if n and not (terminated[-1] or truncated[-1]):
        truncated[-1] = True
    shown = [t for t in attempts if t.step_end <= n]

    if frames:
        frame_array = np.stack(frames[:n + 1])
    else:
        h, w, c = meta.get("frame_shape") or (0, 0, 3)
        frame_array = np.zeros((0, h, w, c), np.uint8)
    return Episode(directory, meta, frame_array, actions, rewards, terminated, truncated,
                   [r.get("extra") for r in steps[:n]], shown, finished, torn, faults,
                   len(attempts) - len(shown))


def list_episodes(run_dir: Path | str) -> list[Path]:
    """Episode directories at or under ``run_dir`` (those holding meta.json and frames.bin)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.parent for p in run_dir.rglob(META) if (p.parent / FRAMES).is_file())


def find_recordings(root: Path | str) -> dict[str, Path]:
    """Episode name -> recording folder, for every recording at or under ``root`` whose
    meta.json can be read (the place to look up an attempt's frames by its episode)."""
    found = {}
    for directory in list_episodes(root):
        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, ValueError):
            continue
        episode = (meta.get("metadata") or {}).get("episode") if isinstance(meta, dict) else None
        if isinstance(episode, str):
            found[episode] = directory
    return found


#: The file types :func:`export_video` writes, by suffix.
VIDEO_SUFFIXES = (".gif", ".mp4", ".avi")
#: A GIF frame lasts at most 65535 hundredths of a second.
_GIF_MIN_FPS = 100 / 65535


def check_video_args(path: Path | str, fps: float = 10, scale: int = 4) -> None:
    """Raise ValueError, naming the argument, if :func:`export_video` would refuse these."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        kind = f"{suffix!r} files" if suffix else "a file without a type"
        raise ValueError(f"cannot write {kind}: use a name ending in "
                         f"{', '.join(VIDEO_SUFFIXES[:-1])} or {VIDEO_SUFFIXES[-1]}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
        raise ValueError(f"fps must be a positive number, not {fps!r}")
    if suffix == ".gif" and fps < _GIF_MIN_FPS:
        raise ValueError(f"fps {fps} is too low for a GIF (at least {_GIF_MIN_FPS:.4f})")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive whole number, not {scale!r}")


def export_video(episode: Episode | Path | str, path: Path | str, fps: float = 10,
                 scale: int = 4) -> Path:
    """Write the frames, upscaled ``scale`` times (nearest), as a GIF or a video."""
    path = Path(path)
    check_video_args(path, fps, scale)
    if not isinstance(episode, Episode):
        episode = load_episode(episode)
    if not len(episode.frames):
        raise ValueError(f"{episode.directory}: no frames to export")
    frames = (frame.repeat(scale, axis=0).repeat(scale, axis=1) for frame in episode.frames)
    return write_frames(frames, path, fps)


def write_frames(frames: Iterable[np.ndarray], path: Path | str, fps: float = 10) -> Path:
    """Write RGB frames of one size as a GIF (imageio) or an MP4/AVI video (cv2).

    The file is written to a temporary file in the same folder and renamed over ``path``
    only once complete: if anything fails, an existing ``path`` is left as it was and the
    temporary file is removed. A video is written frame by frame; a GIF is assembled in
    memory, as GIF encoders do.
    """
    path = Path(path)
    check_video_args(path, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    # Same folder, so the rename is atomic; ends in the suffix, which cv2 picks a format by.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    # O_EXCL: never clobber another writer's file; mode 0o666 less the umask, as open() does.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        if suffix == ".gif":
            import imageio.v3 as iio

            iio.imwrite(tmp, np.stack(list(frames)), extension=".gif", duration=1000 / fps,
                        loop=0)
        else:
            _write_cv2_video(frames, tmp, path, fps)
        if path.is_file():  # keep the mode of the file it replaces, as writing in place would
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_cv2_video(frames: Iterable[np.ndarray], tmp: Path, path: Path, fps: float) -> None:
    import cv2

    suffix = path.suffix.lower()
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"cv2 cannot write {suffix} video to {path}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError(f"no frames to write to {path}")
