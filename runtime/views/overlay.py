"""A recording as a video that explains itself: each frame, enlarged, above a panel that says
which attempt is running, what the last attempt's diagnosis was and which guardrail, if any,
stopped it.

The panel is drawn with OpenCV's own font, so no font file or GUI toolkit is needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cairn.experience.episodes import Episode, check_video_args, write_frames
from cairn.experience.records import Cause, ExperienceTuple

#: Frames are enlarged to at least this width, so the panel's text stays readable.
MIN_WIDTH = 480
LINE_HEIGHT = 22
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
WHITE, GREEN, RED, AMBER, GREY = (235, 235, 235), (90, 200, 110), (235, 90, 80), \
    (240, 180, 60), (160, 160, 160)
PANEL = (30, 30, 30)
#: How long (in frames) a diagnosis or a guardrail stays highlighted after its attempt ends.
HIGHLIGHT_FRAMES = 8


@dataclass
class Caption:
    """What the panel says under one frame: (text, colour) per line."""

    lines: list[tuple[str, tuple[int, int, int]]]


def captions(episode: Episode) -> Iterator[Caption]:
    """One caption per frame. Frame ``t`` shows the world after step ``t`` (0: the reset)."""
    attempts = sorted(episode.attempts, key=lambda a: (a.step_start, a.step_end))
    ends = [a.step_end for a in attempts]
    names = list((episode.metadata.get("metadata") or {}).get("action_names") or [])
    for t in range(len(episode.frames)):
        yield Caption(_lines(t, episode, attempts, ends, names))


def _lines(t: int, episode: Episode, attempts: list[ExperienceTuple], ends: list[int],
           names: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    reward = float(episode.rewards[t - 1]) if t else 0.0
    action = _action_name(int(episode.actions[t - 1]), names) if t else "reset"
    lines = [(f"step {t}/{episode.num_steps}  action {action}  reward {reward:+.1f}", WHITE)]
    running = _running(t, attempts)
    if running is not None:
        i, a = running
        lines.append((f"attempt {i + 1}/{len(attempts)}: {a.subgoal.key}  "
                      f"(steps {a.step_start}-{a.step_end})", WHITE))
    else:
        lines.append(("no attempt running", GREY))
    done = bisect.bisect_right(ends, t) - 1  # the last attempt that ended at or before t
    if done < 0:
        lines.append(("no diagnosis yet", GREY))
        return lines
    last = attempts[done]
    d = last.diagnosis
    fresh = t - last.step_end < HIGHLIGHT_FRAMES
    verdict = "success" if d.success else str(d.cause)
    effects = ", ".join(d.effects) if d.effects else "no effect"
    colour = (GREEN if d.success else RED) if fresh else GREY
    lines.append((f"last: {last.subgoal.key} -> {verdict} ({effects})", colour))
    if d.cause == Cause.GUARDRAIL_BLOCKED and fresh:
        lines.append((f"guardrail {d.detail or '?'} blocked {last.subgoal.key}", AMBER))
    elif d.detail and fresh:
        lines.append((d.detail, colour))
    return lines


def _running(t: int, attempts: list[ExperienceTuple]) -> tuple[int, ExperienceTuple] | None:
    """The attempt that took step ``t`` (frame ``t`` is its result), else one starting at t."""
    starting = None
    for i, a in enumerate(attempts):
        if a.step_start < t <= a.step_end:
            return i, a
        if starting is None and a.step_start == t:
            starting = (i, a)
    return starting


def _action_name(index: int, names: list[str]) -> str:
    return names[index] if 0 <= index < len(names) else f"#{index}"


def annotate(frame: np.ndarray, caption: Caption, scale: int, panel_lines: int) -> np.ndarray:
    """``frame`` enlarged ``scale`` times above a panel of ``panel_lines`` lines of text."""
    big = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    width = big.shape[1]
    panel = np.empty((panel_lines * LINE_HEIGHT + 8, width, 3), np.uint8)
    panel[:] = PANEL
    for row, (text, colour) in enumerate(caption.lines[:panel_lines]):
        cv2.putText(panel, _fit(text, width), (6, LINE_HEIGHT * (row + 1)), FONT, FONT_SCALE,
                    colour, 1, cv2.LINE_AA)
    return np.concatenate([big, panel], axis=0)


def _fit(text: str, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    while len(text) > 4 and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > width - 12:
        text = text[:-4] + "..."
    return text


def export_annotated(episode: Episode, path: Path | str, fps: float = 10,
                     scale: int | None = None) -> Path:
    """Write the episode as an annotated GIF, MP4 or AVI (by ``path``'s suffix)."""
    check_video_args(path, fps)
    if not len(episode.frames):
        raise ValueError(f"{episode.directory}: no frames to export")
    height, width = episode.frames.shape[1:3]
    scale = scale or max(1, -(-MIN_WIDTH // width))
    frames = (annotate(frame, caption, scale, panel_lines=4)
              for frame, caption in zip(episode.frames, captions(episode), strict=True))
    return write_frames(frames, path, fps)
