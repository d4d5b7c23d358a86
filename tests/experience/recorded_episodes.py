"""Real Crafter episodes recorded to disk, and where their frame records lie, for fault tests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from cairn.envs.crafter import CrafterEnv
from cairn.experience.recording import EpisodeRecorder
from cairn.experience.records import Cause, Diagnosis, ExperienceTuple, State, Subgoal

#: A 32x32 world resets ~5x faster than 64x64; the frames are the same real 64x64 views.
AREA = (32, 32)
SEED = 3
STEPS = 40
#: The attempts recorded with every episode: (first step, end step, subgoal, cause).
SPANS = [(0, 5, "interact:tree", "success"), (5, 13, "explore", "path_blocked"),
         (13, 25, "interact:cow", "timeout"), (25, 33, "explore", "no_effect"),
         (33, 40, "sleep", "stagnation")]
#: frames.bin's record header (recording.py's module docstring): magic, codec, layout,
#: height, width, channels, frame index, payload length, CRC-32.
HEADER = struct.Struct("<4sBBHHHIII")


def play(steps: int = STEPS) -> dict:
    """Real Crafter steps with seeded random actions; frames are the env's own arrays."""
    env = CrafterEnv(size=64, area=AREA)
    try:
        obs, _ = env.reset(seed=SEED)
        rng = np.random.default_rng(0)
        played = []
        for _ in range(steps):
            action = int(rng.integers(0, 17))
            frame, reward, terminated, truncated, _ = env.step(action)
            played.append((action, frame, reward, terminated, truncated))
            if terminated or truncated:
                break
    finally:
        env.close()
    return {"reset": obs, "steps": played}


def _state(step: int) -> State:
    return State(step, (16, 16), (0, 1), {"wood": 0}, "grass", [["grass"]], ["grass"], [])


def attempts(spans: list[tuple[int, int, str, str]] = SPANS) -> list[ExperienceTuple]:
    out = []
    for start, end, subgoal, cause in spans:
        diagnosis = Diagnosis(cause == "success", Cause(cause), {}, 0.0, [], 0.5, 1.0, 0,
                              end - start)
        out.append(ExperienceTuple("ep", start, end, _state(start), Subgoal.parse(subgoal),
                                   [0] * (end - start), diagnosis, _state(end)))
    return out


def record(directory: Path, played: dict, close: str | None = "done") -> Path:
    """Record ``played`` and the attempts over it; ``close=None`` leaves it as a kill would."""
    rec = EpisodeRecorder(directory, {"seed": SEED})
    rec.record_reset(played["reset"])
    for action, frame, reward, terminated, truncated in played["steps"]:
        rec.record_step(action, frame, reward, terminated, truncated)
    for attempt in attempts([s for s in SPANS if s[1] <= len(played["steps"])]):
        rec.record_attempt(attempt)
    if close:
        rec.close(close)
    return directory


def frame_offsets(path: Path) -> list[int]:
    """The byte offset of every frame record in a frames.bin, and the file size last."""
    data = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER.size + HEADER.unpack_from(data, pos)[7]
    return offsets + [len(data)]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
