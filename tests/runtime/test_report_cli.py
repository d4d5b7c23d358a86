"""`cairn report` as a user types it."""

from cairn.runtime.cli import main


def test_report_of_a_run_folder_uses_the_store_its_recordings_name(recorded_run, tmp_path,
                                                                    capsys):
    out = tmp_path / "report"
    assert main(["report", str(recorded_run.run_dir), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"from {recorded_run.store}" in printed
    assert (out / "index.html").is_file() and (out / "knowledge" / "index.html").is_file()
    assert len(list((out / "knowledge").glob("guardrail-*.html"))) > 0


def test_a_target_that_is_neither_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["report", str(tmp_path / "notes.txt"), "--html", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cairn: error: {tmp_path / 'notes.txt'}")
    assert not (tmp_path / "r").exists()


def test_export_writes_every_episode_of_a_run_and_refuses_to_clobber(recorded_run, tmp_path,
                                                                      capsys, monkeypatch):
    import minari  # the minari extra, as installed by .ci/test

    args = ["export", str(recorded_run.run_dir), "--minari", "cairn/test-v0",
            "--minari-root", str(tmp_path)]
    assert main(args) == 0
    assert "wrote 3 episode(s)" in capsys.readouterr().out
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert minari.load_dataset("cairn/test-v0").total_episodes == 3
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
