"""`cairn report`: the figures, the summary, the knowledge browser and its frames, on a real
recorded Crafter run and its real store, looked at in Chromium."""

import base64
import json
import shutil
import sys

import cv2
import numpy as np
import pytest

from cairn.experience.episodes import find_recordings, load_episode
from cairn.experience.store import ExperienceStore
from cairn.runtime.views.knowledge_pages import entry_filename, write_knowledge
from cairn.runtime.views.report import resolve_target, write_report

FIGURES = ("learning", "subgoals", "knowledge", "failures")


@pytest.fixture(scope="module")
def report(recorded_run, tmp_path_factory):
    """The report of the recorded run, written once: (index.html, store path, recordings)."""
    store, runs = resolve_target(recorded_run.run_dir)
    index = write_report(store, tmp_path_factory.mktemp("report") / "out", runs)
    return index, store, runs


def _data_uri_image(uri: str) -> np.ndarray:
    head, _, data = uri.partition(",")
    assert head == "data:image/png;base64"
    image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _loaded(browser, css: str) -> list[int]:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(i => i.naturalWidth)", css)


def test_resolve_target_finds_the_runs_store(recorded_run, tmp_path):
    assert resolve_target(recorded_run.run_dir) == (recorded_run.store, recorded_run.run_dir)
    assert resolve_target(recorded_run.store) == (recorded_run.store, None)
    assert resolve_target(recorded_run.store, recorded_run.run_dir.parent) == \
        (recorded_run.store, recorded_run.run_dir.parent)


def test_resolve_target_refuses_what_it_cannot_use(recorded_run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no recordings in this folder"):
        resolve_target(tmp_path / "empty")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a store\n")
    with pytest.raises(ValueError, match=r"notes.txt is not a Cairn experience store"):
        resolve_target(notes)
    with pytest.raises(ValueError, match=r"no such file or folder"):
        resolve_target(tmp_path / "missing")
    # a run whose store was deleted since
    run = tmp_path / "run"
    shutil.copytree(recorded_run.episodes[0], run / "episode-000")
    meta_path = run / "episode-000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["metadata"]["config"]["store"] = str(tmp_path / "gone.sqlite")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"the run's store .*gone.sqlite is gone"):
        resolve_target(run)


def test_figures_are_real_pictures(report):
    index, _, _ = report
    for name in FIGURES:
        image = cv2.imread(str(index.parent / f"{name}.png"))
        assert image is not None, name
        h, w = image.shape[:2]
        assert 250 <= h <= 2500 and 600 <= w <= 2500, (name, image.shape)
        # drawn, not blank: many colours, and plenty of pixels that are not the background
        colours = image.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1],
                                                                      np.uint32)
        assert len(np.unique(colours)) > 20, name
        assert (image.min(axis=2) < 200).mean() > 0.02, name


def test_index_summary_is_the_stores(report, browser):
    index, store_path, _ = report
    browser.get(index.as_uri())
    shown = {e.get_attribute("data-key"): e.text
             for e in browser.find_elements("css selector", "[data-key]")}
    with ExperienceStore(store_path, writable=False) as store:
        assert shown["attempts"] == str(store.count())
        assert shown["episodes"] == str(len({t.episode for i in range(1, store.count() + 1)
                                              if (t := store.get(i))}))
        assert shown["subgoals"] == str(len(store.subgoal_stats()))
        for kind in ("skill", "guardrail"):
            entries = store.knowledge.current(kind)
            assert shown[kind] == str(len(entries))
            for status in {e.status for e in entries}:
                assert shown[f"{kind}-{status}"] == str(
                    sum(e.status == status for e in entries))
    widths = _loaded(browser, "img.plot")
    assert len(widths) == len(FIGURES) and all(w > 0 for w in widths)
    browser.find_element("id", "knowledge-link").click()
    assert browser.current_url.endswith("knowledge/index.html")
    links = browser.find_elements("css selector", "a.entry")
    assert len(links) == int(shown["skill"]) + int(shown["guardrail"])


def test_guardrail_page_shows_the_frames_of_its_evidence(report, browser):
    index, store_path, runs = report
    with ExperienceStore(store_path, writable=False) as store:
        active = [e for e in store.knowledge.current("guardrail")
                  if e.status == "active" and e.body["evidence"]]
        guard = max(active, key=lambda e: len(e.body["evidence"]))
        shown_ids = guard.body["evidence"][-12:]
        first = store.get(shown_ids[0])
    browser.get((index.parent / "knowledge" / entry_filename("guardrail", guard.key)).as_uri())
    blocks = browser.find_elements("css selector", "#evidence .evidence")
    assert [int(b.get_attribute("data-attempt")) for b in blocks] == shown_ids
    for role in ("before", "after"):
        widths = _loaded(browser, f"#evidence .evidence img.frame.{role}")
        assert len(widths) == len(shown_ids) and all(w > 0 for w in widths)
    episode = load_episode(find_recordings(runs)[first.episode])
    for role, step in (("before", first.step_start), ("after", first.step_end)):
        img = blocks[0].find_element("css selector", f"img.frame.{role}")
        shown = _data_uri_image(img.get_attribute("src"))
        frame = episode.frames[step]
        k = shown.shape[0] // frame.shape[0]
        assert k >= 2
        assert np.array_equal(shown, frame.repeat(k, axis=0).repeat(k, axis=1)), role
    assert len(shown_ids) > 1  # the frames of two attempts differ, so the check above bites


def test_skill_page_lists_every_version(report, browser):
    index, store_path, _ = report
    with ExperienceStore(store_path, writable=False) as store:
        skill = max(store.knowledge.current("skill"), key=lambda e: e.version)
        history = store.knowledge.history("skill", skill.key)
    browser.get((index.parent / "knowledge" / entry_filename("skill", skill.key)).as_uri())
    rows = browser.find_elements("css selector", "#history tr.version")
    assert len(rows) == len(history)
    cells = [[c.text for c in row.find_elements("css selector", "td")] for row in rows]
    assert [c[0] for c in cells] == [str(e.version) for e in history]
    assert [c[1] for c in cells] == [e.status for e in history]
    assert cells[0][3] == "first version"
    assert all(c[3] and c[3] != "first version" for c in cells[1:])


def test_pages_say_when_recordings_are_missing(recorded_run, tmp_path):
    with ExperienceStore(recorded_run.store, writable=False) as store:
        write_knowledge(store, tmp_path, {}, tmp_path / "elsewhere")
        guard = next(e for e in store.knowledge.current("guardrail") if e.body["evidence"])
    text = (tmp_path / entry_filename("guardrail", guard.key)).read_text()
    assert 'class="frame' not in text
    assert "was not found under" in text and str(tmp_path / "elsewhere") in text


def test_a_store_without_attempts_says_so(tmp_path, browser):
    ExperienceStore(tmp_path / "new.sqlite").close()
    index = write_report(tmp_path / "new.sqlite", tmp_path / "out")
    browser.get(index.as_uri())
    assert "Nothing yet" in browser.find_element("id", "nothing").text
    assert browser.find_element("css selector", "[data-key=attempts]").text == "0"
    assert not list((tmp_path / "out").glob("*.png"))
    assert (tmp_path / "out" / "knowledge" / "index.html").is_file()


def test_without_matplotlib_it_names_the_extra_and_writes_nothing(recorded_run, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'cairn\[report\]'"):
        write_report(recorded_run.store, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_in_the_way_of_the_report_is_refused(recorded_run, tmp_path):
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(ValueError, match=r"out is a file"):
        write_report(recorded_run.store, tmp_path / "out")
    assert (tmp_path / "out").read_text() == "keep me"
