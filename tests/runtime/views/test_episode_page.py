"""The episode page, opened in headless Chromium: timeline, filters, scrubber, knowledge links,
and a hostile recording shown as text."""

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from cairn.experience.episodes import Episode, load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.views.episode_page import (
    anchor_id,
    render_episode_page,
    scrub_stride,
    write_episode_page,
)
from cairn.runtime.views.html import png_data_uri

PWNED = "return window.__pwned === undefined"


@dataclass
class Shown:
    path: Path
    episode: Episode
    guarded: list[tuple[int, str, str]]
    """(attempt index, guardrail id, readable trigger) for every guardrail whose evidence
    holds one of the episode's attempts."""


def _guardrail_evidence(store: ExperienceStore) -> dict[tuple[str, int], list[tuple[str, str]]]:
    """(episode, first step) of each attempt a current guardrail rests on -> (id, trigger)."""
    found: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for entry in store.knowledge.current("guardrail"):
        for attempt_id in entry.body["evidence"]:
            t = store.get(attempt_id)
            found.setdefault((t.episode, t.step_start), []).append((entry.key, entry.trigger))
    return found


@pytest.fixture(scope="module")
def shown(recorded_run, tmp_path_factory) -> Shown:
    """The page of the first recorded episode that has both outcomes and an attempt some
    guardrail rests on, written with the run's store."""
    with ExperienceStore(recorded_run.store, writable=False) as store:
        evidence = _guardrail_evidence(store)
        for directory in recorded_run.episodes:
            episode = load_episode(directory)
            guarded = [(i, key, trigger) for i, t in enumerate(episode.attempts)
                       for key, trigger in evidence.get((t.episode, t.step_start), [])]
            outcomes = {t.diagnosis.success for t in episode.attempts}
            if guarded and outcomes == {True, False}:
                break
        else:
            pytest.fail("no recorded episode has successes, failures and a guardrail's evidence")
        path = write_episode_page(episode, tmp_path_factory.mktemp("page") / "episode.html",
                                  store)
    return Shown(path, episode, guarded)


def _visible_indices(browser) -> list[int]:
    rows = browser.find_elements(By.CSS_SELECTOR, ".attempt")
    return [int(r.get_attribute("id").removeprefix("attempt-")) for r in rows if r.is_displayed()]


def _scrub(browser, step: int) -> None:
    browser.execute_script(
        "const s = document.getElementById('scrubber'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));", step)


def test_timeline_shows_exactly_the_attempts_in_order(shown, browser):
    browser.get(shown.path.as_uri())
    attempts = load_episode(shown.episode.directory).attempts
    rows = browser.find_elements(By.CSS_SELECTOR, ".attempt")
    assert [r.find_element(By.CSS_SELECTOR, ".subgoal").text for r in rows] == \
        [t.subgoal.key for t in attempts]
    assert [r.get_attribute("id") for r in rows] == [f"attempt-{i}" for i in range(len(rows))]
    assert [(int(r.get_attribute("data-start")), int(r.get_attribute("data-end")),
             r.get_attribute("data-outcome"), r.get_attribute("data-cause")) for r in rows] == \
        [(t.step_start, t.step_end, "success" if t.diagnosis.success else "failure",
          str(t.diagnosis.cause)) for t in attempts]
    last = len(attempts) - 1
    thumbs = rows[last].find_elements(By.CSS_SELECTOR, "img.thumb")
    assert [img.get_attribute("src") for img in thumbs] == [
        png_data_uri(shown.episode.frames[attempts[last].step_start]),
        png_data_uri(shown.episode.frames[attempts[last].step_end])]
    names = shown.episode.metadata["metadata"]["action_names"]
    assert names[attempts[last].primitives[0]] in rows[last].text
    assert browser.find_element(By.ID, "shown-count").text.startswith(f"{len(rows)} of ")


def test_filters_hide_attempts_and_count_them(shown, browser):
    browser.get(shown.path.as_uri())
    attempts = shown.episode.attempts
    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("failure")
    failures = [i for i, t in enumerate(attempts) if not t.diagnosis.success]
    assert _visible_indices(browser) == failures
    assert browser.find_element(By.ID, "shown-count").text == \
        f"{len(failures)} of {len(attempts)} attempts shown"

    causes = sorted({str(t.diagnosis.cause) for t in attempts})
    cause_select = Select(browser.find_element(By.ID, "cause-filter"))
    assert [o.get_attribute("value") for o in cause_select.options] == ["all", *causes]
    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("all")
    rarest = min(causes, key=lambda c: sum(str(t.diagnosis.cause) == c for t in attempts))
    cause_select.select_by_value(rarest)
    expected = [i for i, t in enumerate(attempts) if str(t.diagnosis.cause) == rarest]
    assert _visible_indices(browser) == expected
    assert browser.find_element(By.ID, "shown-count").text.startswith(f"{len(expected)} of ")


def test_scrubber_shows_the_step_and_highlights_its_attempt(shown, browser):
    browser.get(shown.path.as_uri())
    episode = shown.episode
    k = len(episode.attempts) // 2
    while episode.attempts[k].step_end == episode.attempts[k].step_start:
        k += 1
    t = episode.attempts[k]
    step = (t.step_start + t.step_end) // 2
    frame = browser.find_element(By.ID, "frame")
    assert frame.get_attribute("src") == png_data_uri(episode.frames[0])
    _scrub(browser, step)
    assert frame.get_attribute("src") == png_data_uri(episode.frames[step])
    assert browser.find_element(By.ID, "step-number").text == str(step)
    names = episode.metadata["metadata"]["action_names"]
    assert browser.find_element(By.ID, "step-action").text == names[episode.actions[step]]
    current = browser.find_elements(By.CSS_SELECTOR, ".attempt.current")
    assert [c.get_attribute("id") for c in current] == [f"attempt-{k}"]
    assert browser.find_element(By.ID, "step-attempt").text.startswith(f"#{k} ")
    _scrub(browser, t.step_start)  # where the attempt before it ended
    current = browser.find_elements(By.CSS_SELECTOR, ".attempt.current")
    assert [c.get_attribute("id") for c in current] == [f"attempt-{k}"]
    _scrub(browser, episode.num_steps)
    assert browser.find_element(By.ID, "step-number").text == str(episode.num_steps)
    assert browser.find_element(By.ID, "step-attempt").text == "none"
    assert not browser.find_elements(By.CSS_SELECTOR, ".attempt.current")
    assert frame.get_attribute("src") == png_data_uri(episode.frames[-1])


def test_attempt_links_to_the_guardrail_it_produced(shown, browser):
    browser.get(shown.path.as_uri())
    index, key, trigger = shown.guarded[0]
    row = browser.find_element(By.ID, f"attempt-{index}")
    hrefs = [a.get_attribute("href") for a in row.find_elements(By.CSS_SELECTOR, ".links a")]
    target = anchor_id("guardrail", key)
    assert any(h.endswith(f"#{target}") for h in hrefs)
    section = browser.find_element(By.ID, target)
    assert section.find_element(By.CSS_SELECTOR, "h3").text == f"guardrail {key}"
    assert trigger in section.text
    back = [a.get_attribute("href") for a in section.find_elements(By.CSS_SELECTOR, "p a")]
    assert any(h.endswith(f"#attempt-{index}") for h in back)


def test_anchor_ids_are_safe_and_distinct():
    made = {anchor_id("skill", k) for k in ("use:place", "use_place", "use-place", "u\"><b>")}
    assert len(made) == 4
    assert all(set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_") for a in made)


HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
HOSTILE_DETAIL = "</script><script>window.__pwned=3</script><!--"
HOSTILE_ACTION = "</script><script>window.__pwned=4</script>"


def test_hostile_recording_is_shown_as_text(recorded_run, browser, tmp_path):
    directory = shutil.copytree(recorded_run.episodes[0], tmp_path / "hostile")
    meta = json.loads((directory / "meta.json").read_text())
    meta["metadata"]["episode"] = HOSTILE_NAME
    action = load_episode(directory).attempts[0].primitives[0]
    meta["metadata"]["action_names"][action] = HOSTILE_ACTION
    (directory / "meta.json").write_text(json.dumps(meta))
    lines = (directory / "attempts.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["diagnosis"]["detail"] = HOSTILE_DETAIL
    first["subgoal"] = "explore:" + HOSTILE_NAME
    (directory / "attempts.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")

    path = write_episode_page(load_episode(directory), tmp_path / "hostile.html")
    browser.get(path.as_uri())
    assert browser.execute_script(PWNED)
    assert browser.find_element(By.ID, "episode-name").text == HOSTILE_NAME
    assert len(browser.find_elements(By.CSS_SELECTOR, "script")) == 2
    row = browser.find_element(By.ID, "attempt-0")
    assert HOSTILE_DETAIL in row.text
    assert row.find_element(By.CSS_SELECTOR, ".subgoal").text == "explore:" + HOSTILE_NAME
    _scrub(browser, 0)
    assert browser.find_element(By.ID, "step-action").text == HOSTILE_ACTION
    assert browser.execute_script(PWNED)
    assert "Knowledge links need --store" in browser.find_element(By.ID, "knowledge").text


def test_killed_recording_without_attempts_still_renders(recorded_run, tmp_path):
    directory = shutil.copytree(recorded_run.episodes[0], tmp_path / "killed")
    meta = json.loads((directory / "meta.json").read_text())
    meta["finished"] = False
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "attempts.jsonl").write_text("")
    frames = (directory / "frames.bin").read_bytes()
    (directory / "frames.bin").write_bytes(frames[:len(frames) * 2 // 3])
    episode = load_episode(directory)
    assert episode.attempts == [] and episode.torn == ["frames.bin"]

    text = render_episode_page(episode)
    assert "no attempts were recorded" in text
    assert "torn: the last record of frames.bin was cut off" in text
    assert f"not finished (the recording stops at step {episode.num_steps})" in text


def test_faults_and_missing_frames_are_named(recorded_run, tmp_path):
    directory = shutil.copytree(recorded_run.episodes[0], tmp_path / "damaged")
    steps = (directory / "steps.jsonl").read_text().splitlines(keepends=True)
    (directory / "steps.jsonl").write_text("".join(steps[:-1]) + steps[-1][:5])
    episode = load_episode(directory)
    assert episode.faults

    text = render_episode_page(episode)
    for fault in episode.faults:
        assert f"fault: {fault}" in text
    last = episode.attempts[-1]
    cut = replace(episode, frames=episode.frames[:last.step_end])
    assert f"frame {last.step_end} not recorded" in render_episode_page(cut)


def test_long_episode_embeds_every_kth_frame(shown, browser, tmp_path):
    episode = shown.episode
    n = 4100
    frames = np.repeat(episode.frames[:1], n + 1, axis=0)
    frames[:, 0, 0] = np.arange(n + 1)[:, None] % 256
    long = replace(episode, frames=frames, actions=np.zeros(n, np.int64),
                   rewards=np.zeros(n), terminated=np.zeros(n, bool),
                   truncated=np.zeros(n, bool), extras=[None] * n)
    assert scrub_stride(frames) == 3
    path = write_episode_page(long, tmp_path / "long.html")
    browser.get(path.as_uri())
    assert "one in every 3 is embedded" in browser.find_element(By.ID, "stride-note").text
    _scrub(browser, 5)
    assert browser.find_element(By.ID, "frame").get_attribute("src") == png_data_uri(frames[3])
    assert "step 3" in browser.find_element(By.ID, "frame-note").text


def test_bad_arguments_are_refused(shown, tmp_path):
    with pytest.raises(ValueError, match="thumb_scale"):
        render_episode_page(shown.episode, thumb_scale=0)
    with pytest.raises(ValueError, match="is a folder"):
        write_episode_page(shown.episode, tmp_path)
