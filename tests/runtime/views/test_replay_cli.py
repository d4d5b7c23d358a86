"""`cairn replay` writing pages and videos: what a user types, end to end."""

from pathlib import Path

import pytest

from cairn.runtime.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_html_finds_the_runs_store_and_links_knowledge(recorded_run, tmp_path, capsys):
    out = tmp_path / "episode.html"
    assert main(["replay", str(recorded_run.episodes[1]), "--html", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert 'href="#guardrail-' in text or 'href="#skill-' in text
    assert "need <code>--store</code>" not in text


@pytest.mark.parametrize("args, message", [
    (["--html", "{tmp}/page.txt"], "--html {tmp}/page.txt: give a file name ending in .html"),
    (["--html", "{tmp}/none/page.html"], "folder {tmp}/none does not exist"),
    (["--html", "{tmp}/p.html", "--store", "{tmp}/missing.sqlite"],
     "--store {tmp}/missing.sqlite: no experience store there"),
])
def test_bad_page_arguments_are_one_line_before_any_work(recorded_run, tmp_path, capsys, args,
                                                         message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["replay", str(recorded_run.episodes[0]), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0]


def test_distill_a_run_folder_into_a_new_store_learns_what_the_run_learned(recorded_run,
                                                                           tmp_path, capsys):
    from cairn.experience.store import ExperienceStore

    rebuilt = tmp_path / "rebuilt.sqlite"
    args = ["replay", str(recorded_run.run_dir), "--distill", "--store", str(rebuilt)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("diagnosed as recorded") == len(recorded_run.episodes) + 1
    with ExperienceStore(recorded_run.store, writable=False) as live, \
            ExperienceStore(rebuilt, writable=False) as offline:
        for kind in ("skill", "guardrail"):
            assert [(e.key, e.status, e.body) for e in offline.knowledge.current(kind)] == \
                [(e.key, e.status, e.body) for e in live.knowledge.current(kind)]
    assert main(args) == 2  # the store holds these episodes now: never counted twice
    assert "already holds the attempts" in capsys.readouterr().err


def test_import_then_distill_a_game_recording_from_the_command_line(tmp_path, capsys):
    from tests.envs.test_crafter_import import crafter_recording

    npz = crafter_recording(tmp_path / "gui")
    config = tmp_path / "small.yaml"
    config.write_text(
        (ROOT / "configs" / "crafter.yaml").read_text().replace("{size: 64, length: 10000}",
                                                                "{size: 64, length: 10000, "
                                                                "area: [32, 32]}"))
    assert main(["import", str(npz), "--config", str(config), "--out", str(tmp_path / "in")]) \
        == 0
    assert f"-> {tmp_path / 'in' / npz.stem}" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "in"), "--distill", "--store",
                 str(tmp_path / "s.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "skills 0 -> " in out and "skills 0 -> 0" not in out
