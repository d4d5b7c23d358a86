"""Fault suite, configs and the CLI: every mistake a user can make in a config or on the
command line ends with exit status 2 and one line that names the thing and what is wrong,
before anything is played or written."""

from pathlib import Path

import pytest

from cairn.runtime.cli import main

pytestmark = pytest.mark.fault

MAP = "game: crafter\nactions: {noop: noop, interact: do, moves: {move_up: [-1, 0]}}\n"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("cairn: error: ")
    return err[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "says"), [
    (MAP + "episodes: 0\n", "'episodes' must be at least 1, got 0"),
    (MAP + "episodes: -1\n", "'episodes' must be at least 1, got -1"),
    (MAP + "max_steps: 0\n", "'max_steps' must be at least 1, got 0"),
    (MAP + "agent: {max_attempt_steps: -1}\n", "'agent.max_attempt_steps' must be at least 1"),
    (MAP + "board: {max_clicks: 0}\n", "'board.max_clicks' must be at least 1"),
    (MAP + "learning: maybe\n", "'learning' must be one of learn, frozen, off"),
    ("", "missing key 'game'"),
    ("game: crafter\n", "missing key 'actions.noop'"),
    ("game: chess\n", "unknown game 'chess'"),
    (MAP + "env: {id: Cairn/Crafter-v0}\n", "unknown key 'env.id'"),
    (MAP + "env: {kwargs: {colour: 3}}\n", "unexpected keyword argument 'colour'"),
    (MAP + "episodes: [1,\n", "not valid YAML at line 4"),
])
def test_a_bad_config_is_refused_in_one_line_before_playing(tmp_path, capsys, text, says):
    config = write(tmp_path, text)
    store = tmp_path / "store.sqlite"
    code = main(["run", str(config), "--store", str(store), "--out", str(tmp_path / "runs")])
    assert code == 2
    line = one_error_line(capsys)
    assert says in line and str(config) in line
    assert not store.exists() or says.startswith("unexpected")  # the env is made after it
    assert not list(tmp_path.glob("runs/*/episode-*"))


def test_a_folder_or_a_missing_file_as_config(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == 2
    assert "is a directory: give a YAML config file" in one_error_line(capsys)
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in one_error_line(capsys)


@pytest.mark.parametrize("option", ["--out", "--store"])
def test_an_output_under_a_regular_file_is_refused_before_playing(tmp_path, capsys, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = write(tmp_path, MAP + "max_steps: 5\n")
    args = {"--out": str(tmp_path / "runs"), "--store": str(tmp_path / "s.sqlite")}
    args[option] = str(blocker / "inside" / ("s.sqlite" if option == "--store" else "runs"))
    code = main(["run", str(config), *(v for kv in args.items() for v in kv)])
    assert code == 2
    line = one_error_line(capsys)
    assert f"{blocker} is a file, not a folder; pass another {option}" in line
    assert blocker.read_text() == "not a folder"


def test_export_to_a_bad_path_keeps_the_old_file(tmp_path, capsys):
    from cairn.experience.store import ExperienceStore

    store = tmp_path / "s.sqlite"
    ExperienceStore(store).close()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["guardrails", "export", "--store", str(store), "-o",
                 str(blocker / "g.json")]) == 2
    assert "cannot write" in one_error_line(capsys)
    assert main(["guardrails", "export", "--store", str(store), "-o", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys)
    good = tmp_path / "g.json"
    assert main(["guardrails", "export", "--store", str(store), "-o", str(good)]) == 0
    assert good.read_text().strip() == "[]"
    assert not list(tmp_path.glob(".*.tmp"))
