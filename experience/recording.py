"""Episode recordings: one directory per episode that survives the process being killed.

Layout of an episode directory (the one recording format, Minari-like):

- ``meta.json``: format, user metadata (config, seed...), library versions, start time;
  rewritten atomically (temp file + ``os.replace``) at reset and at close, when it gains
  ``finished: true``, the step count and the end reason.
- ``frames.bin``: append-only frame records, frame 0 being the reset observation. Each is
  a fixed header (magic, codec, layout, shape, index, payload length, CRC-32) and a payload:
  the raw pixels compressed with zlib at level 1, the cheapest codec that still shrinks a
  Crafter frame about 4x (PNG costs twice as much for a larger result).
- ``steps.jsonl``: one line per step: index, action, reward, terminated, truncated, extra.
- ``attempts.jsonl``: one :class:`~cairn.experience.records.ExperienceTuple` dict per line.

Every record goes to the OS in one unbuffered ``write``, so a SIGKILL at any moment loses
at most the record being written; no fsync: the kernel keeps what a killed process wrote.
A frame is written before its step line, so a step line implies its frame; the loader
ignores a torn last record and trims frames and steps to their common complete prefix.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from cairn.experience.records import ExperienceTuple

log = logging.getLogger(__name__)

FORMAT = "cairn-episode"
FORMAT_VERSION = 1
META, FRAMES, STEPS, ATTEMPTS = "meta.json", "frames.bin", "steps.jsonl", "attempts.jsonl"

_MAGIC = b"CFRM"
#: magic, codec, layout, height, width, channels, frame index, payload length, CRC-32.
_HEADER = struct.Struct("<4sBBHHHIII")
CODEC_RAW, CODEC_ZLIB = 0, 1
_CODECS = {"none": CODEC_RAW, "zlib": CODEC_ZLIB}
# Layout 1: the payload is the frame transposed to (W, H, C). Crafter's frames are
# transposed views, and storing them as laid out in memory skips a copy on every step.
_LAYOUT_HWC, _LAYOUT_WHC = 0, 1


class RecordingError(Exception):
    """A directory that is not a readable recording; the message names the file and fault."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _write_all(fd: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[fd.write(view):]


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


class EpisodeRecorder:
    """Writes one episode to ``directory`` as it is played; see the module docstring.

    ``metadata`` is stored verbatim under ``meta["metadata"]``; its ``seed`` (if any) is
    also copied to ``meta["seed"]``. Use as a context manager: an exception closes the
    recording with reason ``"error"`` (its last step is then read back as truncated).
    """

    def __init__(self, directory: Path | str, metadata: dict[str, Any],
                 *, compression: str = "zlib"):
        if compression not in _CODECS:
            raise ValueError(f"compression must be one of {sorted(_CODECS)}, not {compression!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.directory / META).exists():
            raise FileExistsError(f"{self.directory} already holds a recording")
        self._codec = _CODECS[compression]
        self.steps = 0
        self.closed = False
        self._frames_written = 0
        self._total_reward = 0.0
        self._last_flags = (False, False)
        self._meta: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "metadata": metadata, "seed": metadata.get("seed"),
            "versions": {
                "cairn": _version("cairn"), "numpy": np.__version__,
                "python": platform.python_version(), **metadata.get("versions", {}),
            },
            "started_at": _now(), "compression": compression,
            "finished": False, "steps": None, "end_reason": None,
        }
        _write_json_atomic(self.directory / META, self._meta)
        # Unbuffered: each record is one write() straight to the kernel, nothing to flush.
        self._frames = open(self.directory / FRAMES, "ab", buffering=0)  # noqa: SIM115
        self._steps = open(self.directory / STEPS, "ab", buffering=0)  # noqa: SIM115
        self._attempts = open(self.directory / ATTEMPTS, "ab", buffering=0)  # noqa: SIM115

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.close("error")
        elif not self.closed:
            terminated, truncated = self._last_flags
            self.close("terminated" if terminated else "truncated" if truncated else "stopped")

    def _write_frame(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise ValueError(f"frames must be HxWxC uint8, got {frame.dtype} {frame.shape}")
        h, w, c = frame.shape
        if frame.flags.c_contiguous:
            layout, data = _LAYOUT_HWC, frame
        elif frame.transpose(1, 0, 2).flags.c_contiguous:
            layout, data = _LAYOUT_WHC, frame.transpose(1, 0, 2)
        else:
            layout, data = _LAYOUT_HWC, np.ascontiguousarray(frame)
        payload = zlib.compress(data.data, 1) if self._codec == CODEC_ZLIB else data.tobytes()
        header = _HEADER.pack(_MAGIC, self._codec, layout, h, w, c, self._frames_written,
                              len(payload), zlib.crc32(payload))
        _write_all(self._frames, header + payload)
        self._frames_written += 1

    def record_reset(self, frame: np.ndarray, info_extra: dict[str, Any] | None = None) -> None:
        """Record the first observation; ``info_extra`` (small, JSON-able) goes to meta.json."""
        if self.closed or self._frames_written:
            raise RuntimeError("record_reset() must come once, first, on an open recorder")
        self._write_frame(frame)
        self._meta["frame_shape"] = list(frame.shape)
        self._meta["reset_info"] = info_extra
        _write_json_atomic(self.directory / META, self._meta)

    def record_step(self, action: int, frame: np.ndarray, reward: float, terminated: bool,
                    truncated: bool, extra: dict[str, Any] | None = None) -> None:
        """Record one step: the frame it led to, then its line (so a line implies a frame)."""
        if self.closed or not self._frames_written:
            raise RuntimeError("record_step() needs an open recorder after record_reset()")
        self._write_frame(frame)
        line: dict[str, Any] = {
            "step": self.steps, "action": int(action), "reward": float(reward),
            "terminated": bool(terminated), "truncated": bool(truncated),
        }
        if extra is not None:
            line["extra"] = extra
        _write_all(self._steps, (json.dumps(line, default=_jsonable) + "\n").encode())
        self.steps += 1
        self._total_reward += float(reward)
        self._last_flags = (bool(terminated), bool(truncated))

    def record_attempt(self, t: ExperienceTuple) -> None:
        if self.closed:
            raise RuntimeError("record_attempt() on a closed recorder")
        data = json.dumps(t.to_dict(), default=_jsonable) + "\n"
        _write_all(self._attempts, data.encode())

    def close(self, reason: str) -> None:
        """Mark the recording finished with ``reason``; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        for f in (self._frames, self._steps, self._attempts):
            f.close()
        self._meta.update(finished=True, steps=self.steps, end_reason=reason,
                          ended_at=_now(), total_reward=self._total_reward)
        _write_json_atomic(self.directory / META, self._meta)
        log.debug("closed recording %s: %d steps, %s", self.directory, self.steps, reason)


@dataclass
class Episode:
    """A loaded recording. ``frames`` has one more entry than the steps (the reset frame).

    When the recording stops without a terminal step (killed, closed on an error or
    stopped early) the last step's ``truncated`` is set, so the episode has an end.
    ``finished`` is meta.json's flag (closed by the recorder); ``torn`` names the files whose
    last record was cut off and dropped.
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
    return meta


def _read_frames(path: Path) -> tuple[list[np.ndarray], bool]:
    """Decode every complete record; a short record at the very end is torn, not an error."""
    if not path.is_file():
        raise RecordingError(f"{path}: missing")
    buf = memoryview(path.read_bytes())
    frames: list[np.ndarray] = []
    pos = 0
    while pos < len(buf):
        where = f"{path}: record {len(frames)} at byte {pos}"
        if len(buf) - pos < _HEADER.size:
            return frames, True
        magic, codec, layout, h, w, c, index, length, crc = _HEADER.unpack_from(buf, pos)
        if magic != _MAGIC:
            raise RecordingError(f"{where}: bad magic {bytes(magic)!r}")
        start = pos + _HEADER.size
        if len(buf) - start < length:
            return frames, True
        payload = buf[start:start + length]
        if zlib.crc32(payload) != crc:
            raise RecordingError(f"{where}: CRC mismatch")
        if index != len(frames):
            raise RecordingError(f"{where}: frame index {index}, expected {len(frames)}")
        if codec not in (CODEC_RAW, CODEC_ZLIB) or layout not in (_LAYOUT_HWC, _LAYOUT_WHC):
            raise RecordingError(f"{where}: unknown codec {codec} or layout {layout}")
        try:
            raw = zlib.decompress(payload) if codec == CODEC_ZLIB else bytes(payload)
            if layout == _LAYOUT_WHC:
                frame = np.frombuffer(raw, np.uint8).reshape(w, h, c).transpose(1, 0, 2)
            else:
                frame = np.frombuffer(raw, np.uint8).reshape(h, w, c)
        except (zlib.error, ValueError) as e:
            raise RecordingError(f"{where}: undecodable ({e})") from None
        if frames and frame.shape != frames[0].shape:
            raise RecordingError(f"{where}: shape {frame.shape} != {frames[0].shape}")
        frames.append(frame)
        pos = start + length
    return frames, False


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Parse each complete line; a last line without its newline is torn, not an error."""
    if not path.is_file():
        raise RecordingError(f"{path}: missing")
    *lines, tail = path.read_bytes().split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RecordingError(f"{path}: line {number}: invalid JSON ({e})") from None
        if not isinstance(row, dict):
            raise RecordingError(f"{path}: line {number}: not a JSON object")
        rows.append(row)
    return rows, bool(tail)


def load_episode(directory: Path | str) -> Episode:
    """Read a recording, finished or cut short by a kill; raise RecordingError if unreadable."""
    directory = Path(directory)
    meta = _read_meta(directory)
    frames, frames_torn = _read_frames(directory / FRAMES)
    steps, steps_torn = _read_jsonl(directory / STEPS)
    attempt_rows, attempts_torn = _read_jsonl(directory / ATTEMPTS)
    torn = [name for name, t in ((FRAMES, frames_torn), (STEPS, steps_torn),
                                 (ATTEMPTS, attempts_torn)) if t]

    n = min(len(steps), max(len(frames) - 1, 0))
    finished = bool(meta.get("finished"))
    if finished and meta.get("steps") != n:
        if not isinstance(meta.get("steps"), int) or meta["steps"] < n:
            raise RecordingError(f"{directory / META}: says {meta.get('steps')} steps, "
                                 f"but {n} are recorded")
        log.warning("%s: meta says %d steps, only %d complete; reading as cut short",
                    directory, meta["steps"], n)
        finished = False
    if torn or len(steps) != n or len(frames) not in (0, n + 1):
        log.info("%s: keeping %d complete steps (frames %d, steps %d, torn %s)",
                 directory, n, len(frames), len(steps), torn or "none")

    for i, row in enumerate(steps[:n]):
        if row.get("step") != i:
            raise RecordingError(f"{directory / STEPS}: line {i + 1}: step {row.get('step')}, "
                                 f"expected {i}")
    try:
        actions = np.array([int(r["action"]) for r in steps[:n]], dtype=np.int64)
        rewards = np.array([float(r["reward"]) for r in steps[:n]], dtype=np.float64)
        terminated = np.array([bool(r["terminated"]) for r in steps[:n]], dtype=bool)
        truncated = np.array([bool(r["truncated"]) for r in steps[:n]], dtype=bool)
    except (KeyError, TypeError, ValueError) as e:
        raise RecordingError(f"{directory / STEPS}: step line missing or bad field {e}") from None
    if n and not (terminated[-1] or truncated[-1]):
        truncated[-1] = True
    attempts = []
    for number, row in enumerate(attempt_rows, 1):
        try:
            attempts.append(ExperienceTuple.from_dict(row))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordingError(f"{directory / ATTEMPTS}: line {number}: "
                                 f"not an experience tuple ({type(e).__name__}: {e})") from None

    if frames:
        frame_array = np.stack(frames[:n + 1])
    else:
        h, w, c = meta.get("frame_shape") or (0, 0, 3)
        frame_array = np.zeros((0, h, w, c), np.uint8)
    return Episode(directory, meta, frame_array, actions, rewards, terminated, truncated,
                   [r.get("extra") for r in steps[:n]], attempts, finished, torn)


def list_episodes(run_dir: Path | str) -> list[Path]:
    """Episode directories at or under ``run_dir`` (those holding meta.json and frames.bin)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.parent for p in run_dir.rglob(META) if (p.parent / FRAMES).is_file())


def export_video(episode: Episode | Path | str, path: Path | str, fps: int = 10,
                 scale: int = 4) -> Path:
    """Write the frames, upscaled ``scale`` times (nearest), as a GIF (imageio) or MP4 (cv2)."""
    if not isinstance(episode, Episode):
        episode = load_episode(episode)
    path = Path(path)
    if not len(episode.frames):
        raise ValueError(f"{episode.directory}: no frames to export")
    frames = episode.frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        import imageio.v3 as iio

        iio.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
    elif suffix in (".mp4", ".avi"):
        import cv2

        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
        h, w = frames.shape[1:3]
        writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cv2 cannot write {suffix} video to {path}")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        raise ValueError(f"unsupported video type {suffix!r}: use .gif, .mp4 or .avi")
    return path
