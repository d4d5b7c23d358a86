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
Reading a recording back, and exporting it as a video, is :mod:`cairn.experience.episodes`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import struct
import zlib
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

MAGIC = b"CFRM"
#: magic, codec, layout, height, width, channels, frame index, payload length, CRC-32.
HEADER = struct.Struct("<4sBBHHHIII")
CODEC_RAW, CODEC_ZLIB = 0, 1
_CODECS = {"none": CODEC_RAW, "zlib": CODEC_ZLIB}
# Layout 1: the payload is the frame transposed to (W, H, C). Crafter's frames are
# transposed views, and storing them as laid out in memory skips a copy on every step.
LAYOUT_HWC, LAYOUT_WHC = 0, 1


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
            layout, data = LAYOUT_HWC, frame
        elif frame.transpose(1, 0, 2).flags.c_contiguous:
            layout, data = LAYOUT_WHC, frame.transpose(1, 0, 2)
        else:
            layout, data = LAYOUT_HWC, np.ascontiguousarray(frame)
        payload = zlib.compress(data.data, 1) if self._codec == CODEC_ZLIB else data.tobytes()
        header = HEADER.pack(MAGIC, self._codec, layout, h, w, c, self._frames_written,
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
