"""`cairn replay` writing pages and videos: what a user types, end to end."""

import pytest

from cairn.runtime.cli import main


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
