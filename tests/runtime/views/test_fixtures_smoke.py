from pathlib import Path

from cairn.experience.store import ExperienceStore
from cairn.runtime.views.evidence import knowledge_by_attempt, links_for, store_ids


def test_recorded_run_links_attempts_to_knowledge(recorded_run, browser, tmp_path):
    from cairn.experience.episodes import load_episode

    episode = load_episode(recorded_run.episodes[0])
    with ExperienceStore(recorded_run.store, writable=False) as store:
        ids = store_ids(store, episode.attempts)
        index = knowledge_by_attempt(store)
        links = [link for t, i in zip(episode.attempts, ids, strict=True)
                 for link in links_for(t, i, index)]
    assert all(i is not None for i in ids)
    assert links
    page = tmp_path / "p.html"
    page.write_text("<p id=x>ok</p>")
    browser.get(Path(page).as_uri())
    assert browser.find_element("id", "x").text == "ok"
