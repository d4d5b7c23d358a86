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

Frames and step lines are written off the caller's thread, by one writer thread per
recorder: ``record_reset``/``record_step`` check their arguments, copy the frame's pixels
(so an env that reuses its frame buffer cannot change a queued frame) and queue them; the
thread compresses the frames (zlib lets the game run meanwhile) and writes them. At most
:data:`MAX_PENDING` steps (and :data:`MAX_PENDING_BYTES` of pixels) wait in the queue: a
caller that gets that far ahead waits for the writer, so memory stays bounded when the disk
is slow. Attempt lines are rare and hold live references to the agent's state, so they are
serialized and written on the caller's thread, at once, each in one ``write``.

The writer takes the steps queued in the last few milliseconds (``WRITE_DELAY``) as a
batch and gives them to the OS in two unbuffered writes, in the order recorded: the frame
records, then the step lines. No fsync: the kernel keeps what a killed process wrote. So a
SIGKILL at any moment loses at most the steps still queued or being written (at most
``MAX_PENDING``; normally those of the last few milliseconds, as the writer keeps up with
the game); everything recorded before them is on disk. A frame is written before its step
line, so a step line implies its frame; the loader ignores a torn last record, trims frames
and steps to their common complete prefix and drops attempts reaching past it (an attempt
line can be ahead of the queued steps a kill lost). A Python exception or Ctrl-C in the
caller loses nothing: ``close()`` (called by the loop and by the context manager) writes
everything queued first, and a recorder dropped, or left open at exit, without ``close()``
is drained too, leaving an unfinished recording as a kill would. ``flush()`` waits until
what was recorded is written. A failure in the writer thread (a full disk) is raised by the
next ``record_*`` call, ``flush()`` or ``close()``; what was queued after it is not
written, and meta.json is left unfinished.

Reading a recording back, and exporting it as a video, is :mod:`cairn.experience.episodes`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import struct
import threading
import weakref
import zlib
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any

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

#: Most steps (a frame and its line) queued for the writer thread, not yet on disk.
MAX_PENDING = 64
#: Most bytes of raw pixels queued for the writer thread (one frame is always let in).
MAX_PENDING_BYTES = 64 << 20
#: The writer lets steps gather for up to this long (or until WAKE_AT are queued) and
#: writes them together: waking it for every step would cost the game more than writing.
WRITE_DELAY = 0.01
WAKE_AT = 16


class RecordingError(Exception):
    """A directory that is not a readable recording; the message names the file and fault."""


class RecordingWriteError(OSError):
    """The writer thread could not write a recording; ``__cause__`` is what it raised.

    An ``OSError`` (with the original's ``errno`` when it had one), so that whatever
    handles a failed write handles it the same way as when writing was synchronous."""


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


# What json.dumps(obj, default=_jsonable) builds on every call, built once.
_encode = json.JSONEncoder(default=_jsonable).encode


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


def _step_line(step: int, action: int, reward: float, terminated: bool, truncated: bool,
               extra: Any = None) -> bytes:
    line: dict[str, Any] = {"step": step, "action": action, "reward": reward,
                            "terminated": terminated, "truncated": truncated}
    if extra is not None:
        line["extra"] = extra
    return (_encode(line) + "\n").encode()


def _frame_pixels(frame: np.ndarray) -> tuple[int, bytes, int, int, int]:
    """(layout, a private copy of the pixels in that layout, height, width, channels)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"frames must be HxWxC uint8, got {getattr(frame, 'dtype', None)} "
                         f"{getattr(frame, 'shape', type(frame).__name__)}")
    h, w, c = frame.shape
    if frame.flags.c_contiguous:
        return LAYOUT_HWC, frame.tobytes(), h, w, c
    transposed = frame.transpose(1, 0, 2)
    if transposed.flags.c_contiguous:
        return LAYOUT_WHC, transposed.tobytes(), h, w, c
    return LAYOUT_HWC, frame.tobytes(), h, w, c  # tobytes() copies in C order


# One queued step: (layout, pixels, height, width, channels, frame index, step line or a
# tuple of its fields to format, or None for the reset frame).
_Item = tuple[int, bytes, int, int, int, int, Any]


def mark_abandoned(directory: Path, reason: str) -> int:
    """Say in ``meta.json`` why an episode whose process died mid-way ended (its writer never
    closed it, so it stays unfinished and readers trim it to its last complete step).
    Returns the complete steps it holds: 0 if it died before its recording existed."""
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if meta.get("finished"):
        return int(meta.get("steps") or 0)
    meta["end_reason"] = reason
    _write_json_atomic(path, meta)
    try:
        return (Path(directory) / STEPS).read_bytes().count(b"\n")
    except OSError:
        return 0


class _Writer:
    """The writer thread of one recorder and its bounded queue. It holds no reference to
    the recorder, so a recorder dropped without ``close()`` can be collected and drained.

    It takes what is queued as one batch: compresses each frame, writes the batch's frame
    records in one ``write`` and then its step lines in another. It sleeps while the queue
    is empty; the first step queued then wakes it, and it waits up to ``WRITE_DELAY`` (or
    until ``WAKE_AT`` steps are queued) for more before writing."""

    def __init__(self, frames: IO[bytes], steps: IO[bytes], codec: int, name: str):
        self._frames, self._steps, self._codec = frames, steps, codec
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Item | None] = []
        self._pending = 0  # queued or being written
        self._pending_bytes = 0
        self._queued = self._written = 0  # items ever queued, ever done with
        self._idle = False  # waiting for a first item: put() wakes it
        self._urgent = False  # stop(), wait_written() or a full queue: write without delay
        self._stopping = False
        self.error: BaseException | None = None
        # Set when the thread has closed the files and is about to return. Waited on instead
        # of join(): on Python 3.11 a join() interrupted by Ctrl-C marks the thread stopped
        # while it still runs, and a second join() returns at once.
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, item: _Item) -> None:
        size = len(item[1])
        cond = self._cond
        with cond:
            while self._pending and (self._pending >= MAX_PENDING
                                     or self._pending_bytes + size > MAX_PENDING_BYTES):
                if self.done.is_set():  # never: the thread outlives its queue
                    raise RuntimeError("the recording's writer thread is gone")
                self._urgent = True
                cond.notify_all()
                cond.wait(1.0)
            self._queue.append(item)
            self._pending += 1
            self._pending_bytes += size
            self._queued += 1
            if self._idle or len(self._queue) == WAKE_AT:
                self._idle = False
                cond.notify_all()

    def wait_written(self) -> None:
        """Until everything queued so far is written (or dropped after an error)."""
        with self._cond:
            target = self._queued
            while self._written < target and not self.done.is_set():
                self._urgent = True
                self._cond.notify_all()
                self._cond.wait(1.0)

    def stop(self, join: bool = True) -> None:
        """Write what is queued, close the files and end the thread (at most once)."""
        with self._cond:
            if not self._stopping:
                self._queue.append(None)  # past the bound: stopping never waits
                self._stopping = True
            self._urgent = True
            self._cond.notify_all()
        if join and threading.current_thread() is not self.thread:
            self.done.wait()
            self.thread.join()  # it has only to return

    def _take(self) -> list[_Item | None]:
        cond = self._cond
        with cond:
            while not self._queue:
                self._idle = True
                cond.wait()
            self._idle = False
            if not self._urgent and len(self._queue) < WAKE_AT:
                cond.wait(WRITE_DELAY)
            self._urgent = False
            batch, self._queue = self._queue, []
            return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                items = [item for item in batch if item is not None]
                if self.error is None:
                    try:
                        self._write(items)
                    except BaseException as err:  # noqa: BLE001 - reported by the caller
                        self.error = err
                with self._cond:
                    self._pending -= len(items)
                    self._pending_bytes -= sum(len(item[1]) for item in items)
                    self._written += len(items)
                    self._cond.notify_all()
                if len(items) < len(batch):  # stop() queues None last
                    return
        except BaseException as err:  # noqa: BLE001 - never expected; reported all the same
            self.error = self.error or err
        finally:
            for f in (self._frames, self._steps):
                try:
                    f.close()
                except BaseException as err:  # noqa: BLE001
                    self.error = self.error or err
            with self._cond:
                self._written = self._queued
                self._cond.notify_all()
            self.done.set()

    def _write(self, items: list[_Item]) -> None:
        """The frame records, then the step lines: a line on disk implies its frame."""
        codec, records, lines = self._codec, [], []
        for layout, pixels, h, w, c, index, line in items:
            payload = zlib.compress(pixels, 1) if codec == CODEC_ZLIB else pixels
            records.append(HEADER.pack(MAGIC, codec, layout, h, w, c, index, len(payload),
                                       zlib.crc32(payload)))
            records.append(payload)
            if line is not None:
                lines.append(line if isinstance(line, bytes) else _step_line(*line))
        if records:
            _write_all(self._frames, b"".join(records))
        if lines:
            _write_all(self._steps, b"".join(lines))


def _abandon(writer: _Writer) -> None:
    """A recorder collected (or left open at exit) without close(): write what it queued."""
    writer.stop()


class EpisodeRecorder:
    """Writes one episode to ``directory`` as it is played; see the module docstring.

    ``metadata`` is stored verbatim under ``meta["metadata"]``; its ``seed`` (if any) is
    also copied to ``meta["seed"]``. Use as a context manager: an exception closes the
    recording with reason ``"error"`` (its last step is then read back as truncated).
    Frames and step lines are written by a writer thread, which ``close()`` ends.
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
        self._frames_recorded = 0
        self._total_reward = 0.0
        self._last_flags = (False, False)
        self._error_reported = False
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
        frames = open(self.directory / FRAMES, "ab", buffering=0)  # noqa: SIM115
        steps = open(self.directory / STEPS, "ab", buffering=0)  # noqa: SIM115
        self._attempts = open(self.directory / ATTEMPTS, "ab", buffering=0)  # noqa: SIM115
        self._writer = _Writer(frames, steps, self._codec,
                               f"cairn-recorder:{self.directory.name}")
        self._finalizer = weakref.finalize(self, _abandon, self._writer)

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.close("error")
        elif not self.closed:
            terminated, truncated = self._last_flags
            self.close("terminated" if terminated else "truncated" if truncated else "stopped")

    def _raise_writer_error(self) -> None:
        err = self._writer.error
        if err is None or self._error_reported:
            return
        self._error_reported = True
        error = RecordingWriteError(
            f"{self.directory}: the recording's writer thread failed: "
            f"{type(err).__name__}: {err}; the frames and steps recorded after it were not "
            "written")
        error.errno = getattr(err, "errno", None)
        raise error from err

    def _check_writer(self) -> None:
        if self._writer.error is not None:
            self._raise_writer_error()
            raise RuntimeError(f"{self.directory}: the recording's writer thread failed "
                               "earlier; close() the recorder")

    def record_reset(self, frame: np.ndarray, info_extra: dict[str, Any] | None = None) -> None:
        """Record the first observation; ``info_extra`` (small, JSON-able) goes to meta.json."""
        if self.closed or self._frames_recorded:
            raise RuntimeError("record_reset() must come once, first, on an open recorder")
        self._check_writer()
        layout, pixels, h, w, c = _frame_pixels(frame)
        self._meta["frame_shape"] = list(frame.shape)
        self._meta["reset_info"] = info_extra
        self._writer.put((layout, pixels, h, w, c, 0, None))
        self._frames_recorded = 1
        _write_json_atomic(self.directory / META, self._meta)

    def record_step(self, action: int, frame: np.ndarray, reward: float, terminated: bool,
                    truncated: bool, extra: dict[str, Any] | None = None) -> None:
        """Record one step: the frame it led to, then its line (so a line implies a frame)."""
        if self.closed or not self._frames_recorded:
            raise RuntimeError("record_step() needs an open recorder after record_reset()")
        self._check_writer()
        layout, pixels, h, w, c = _frame_pixels(frame)
        fields = (self.steps, int(action), float(reward), bool(terminated), bool(truncated))
        # A line with only numbers is formatted by the writer; ``extra`` may be a live
        # object the caller changes later, so a line with it is serialized now.
        line = fields if extra is None else _step_line(*fields, extra)
        self._writer.put((layout, pixels, h, w, c, self._frames_recorded, line))
        self._frames_recorded += 1
        self.steps += 1
        self._total_reward += fields[2]
        self._last_flags = fields[3:]

    def record_attempt(self, t: ExperienceTuple) -> None:
        if self.closed:
            raise RuntimeError("record_attempt() on a closed recorder")
        self._check_writer()
        data = _encode(t.to_dict()) + "\n"
        _write_all(self._attempts, data.encode())

    def flush(self) -> None:
        """Wait until every frame and step recorded so far is written (given to the OS);
        raise if the writer failed."""
        self._writer.wait_written()
        self._raise_writer_error()

    def close(self, reason: str) -> None:
        """Write what is queued and mark the recording finished with ``reason``; a second
        call does nothing. If the writer thread failed, meta.json is left unfinished (as a
        kill leaves it) and the failure is raised, unless a ``record_*`` call raised it."""
        if self.closed:
            return
        self.closed = True
        self._finalizer.detach()
        self._attempts.close()
        # Writes what is queued and closes frames.bin and steps.jsonl. An interrupt (Ctrl-C,
        # a kill switch's signal) while waiting for that is raised once the recording is
        # closed as it would have been (the wait is short: the queue is bounded); a second
        # one gives up waiting and leaves the recording as a kill would.
        interrupted: BaseException | None = None
        try:
            self._writer.stop()
        except BaseException as err:  # noqa: BLE001 - raised below
            interrupted = err
            self._writer.stop()
        try:
            if self._writer.error is not None:
                log.warning("recording %s left unfinished: its writer failed: %s",
                            self.directory, self._writer.error)
                if interrupted is None:
                    self._raise_writer_error()
                return
            self._meta.update(finished=True, steps=self.steps, end_reason=reason,
                              ended_at=_now(), total_reward=self._total_reward)
            _write_json_atomic(self.directory / META, self._meta)
            log.debug("closed recording %s: %d steps, %s", self.directory, self.steps, reason)
        finally:
            if interrupted is not None:
                raise interrupted
