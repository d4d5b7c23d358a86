"""The annotated video: every frame of the recording, enlarged, above a panel that names the
running attempt, the last diagnosis and a guardrail that blocked."""

import dataclasses

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

from cairn.experience.episodes import load_episode
from cairn.experience.records import Cause
from cairn.runtime.views.overlay import annotate, captions, export_annotated


@pytest.fixture(scope="module")
def episode(recorded_run):
    return load_episode(max(recorded_run.episodes, key=lambda d: load_episode(d).num_steps))


def texts(caption):
    return [text for text, _ in caption.lines]


def test_each_frame_names_its_attempt_and_the_last_diagnosis(episode):
    caps = list(captions(episode))
    assert len(caps) == len(episode.frames)
    checked = 0
    for i, a in enumerate(episode.attempts):
        if a.step_end == a.step_start:
            continue
        during = texts(caps[a.step_end])
        assert during[0].startswith(f"step {a.step_end}/{episode.num_steps}")
        assert during[1].startswith(f"attempt {i + 1}/{len(episode.attempts)}: {a.subgoal.key}")
        # An attempt that took no step right after this one ends on the same frame: the
        # frame names the latest diagnosis, theirs.
        later = episode.attempts[i + 1:]
        last = next((b for b in reversed(later) if b.step_end == a.step_end
                     and b.step_start == a.step_end), a)
        checked += last is a
        verdict = "success" if last.diagnosis.success else str(last.diagnosis.cause)
        assert f"last: {last.subgoal.key} -> {verdict}" in during[2]
    assert checked > len(episode.attempts) // 2
    names = episode.metadata["metadata"]["action_names"]
    assert f"action {names[int(episode.actions[4])]}" in texts(caps[5])[0]


def test_a_blocked_attempt_names_its_guardrail(episode):
    blocked = dataclasses.replace(
        episode.attempts[1], diagnosis=dataclasses.replace(
            episode.attempts[1].diagnosis, cause=Cause.GUARDRAIL_BLOCKED, success=False,
            detail="g-0badc0de"))
    edited = dataclasses.replace(episode, attempts=[episode.attempts[0], blocked,
                                                    *episode.attempts[2:]])
    shown = texts(list(captions(edited))[blocked.step_end])
    assert f"guardrail g-0badc0de blocked {blocked.subgoal.key}" in shown


def test_frame_is_shown_exactly_above_the_panel(episode):
    caps = list(captions(episode))
    image = annotate(episode.frames[7], caps[7], 8, panel_lines=4)
    h, w = episode.frames.shape[1:3]
    top = image[: h * 8]
    assert np.array_equal(top[::8, ::8], episode.frames[7])
    panels = {annotate(episode.frames[t], caps[t], 8, 4)[h * 8:].tobytes() for t in (1, 7, 40)}
    assert len(panels) == 3  # different captions draw different panels


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_every_frame_at_a_readable_size(episode, tmp_path, suffix):
    out = export_annotated(episode, tmp_path / f"episode{suffix}", fps=15)
    if suffix == ".mp4":
        video = cv2.VideoCapture(str(out))
        count, width = int(video.get(cv2.CAP_PROP_FRAME_COUNT)), int(video.get(3))
        video.release()
    else:
        frames = iio.imread(out, index=None)
        count, width = len(frames), frames.shape[2]
    assert count == len(episode.frames)
    assert width >= 480
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_refuses_an_unknown_file_type(episode, tmp_path):
    with pytest.raises(ValueError, match="cannot write '.webm' files"):
        export_annotated(episode, tmp_path / "x.webm")


def test_cli_writes_the_video_and_refuses_a_bad_name_in_one_line(recorded_run, tmp_path,
                                                                 capsys):
    from cairn.runtime.cli import main

    episode = str(recorded_run.episodes[0])
    assert main(["replay", episode, "--video", str(tmp_path / "e.mp4")]) == 0
    assert f"wrote {tmp_path / 'e.mp4'}" in capsys.readouterr().out
    assert (tmp_path / "e.mp4").stat().st_size > 0
    assert main(["replay", episode, "--video", str(tmp_path / "e.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cairn: error: --video {tmp_path / 'e.txt'}")
    assert not (tmp_path / "e.txt").exists()
