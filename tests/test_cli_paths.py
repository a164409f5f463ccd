"""Paths the user gives the command (``--out``): blank ones refused as usage errors, spaces and non-ASCII
names written as given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shannon_otel.cli import main


@pytest.mark.parametrize("command", ["dashboards", "rules"])
@pytest.mark.parametrize("blank", ["", " "])
def test_a_blank_out_path_is_a_usage_error_writing_nothing(
    command: str, blank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--out "$DIR"` with DIR unset: `dashboards` wrote its five files into the working directory (an empty
    path is "."), `rules` failed with "cannot write .: Is a directory" (exit 1, not a usage error)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([command, "--out", blank])
    assert exit_.value.code == 2
    assert f"argument --out: expected a path, got {blank!r}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_out_paths_with_spaces_and_non_ascii_are_written_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    where = tmp_path / "my d\u00e9mo dir"
    assert main(["dashboards", "overview", "--out", str(where)]) == 0
    assert main(["rules", "--out", str(where / "r\u00e8gles.yml")]) == 0
    assert (where / "shannon-otel-overview.json").is_file()
    assert (where / "r\u00e8gles.yml").read_text(encoding="utf-8").startswith("# Generated")
    assert str(where / "r\u00e8gles.yml") in capsys.readouterr().out


@pytest.mark.parametrize("command", ["dashboards", "rules"])
def test_an_out_path_under_a_file_says_the_file_is_not_a_directory(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: "cannot write .../notes.txt: File exists", read as a refusal to overwrite it.
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "rules.yml" if command == "rules" else tmp_path / "notes.txt"  # dashboards: DIR
    assert main([command, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"shannon-otel {command}: cannot write {tmp_path / 'notes.txt'}: a file, not a directory\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_rules_out_path_ending_with_a_slash_is_refused_as_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: `rules --out rules/` (a directory not there yet) wrote a file named "rules" (Path() drops the
    slash), exit 0; an existing directory failed "Is a directory". Both now fail alike, writing nothing."""
    out = f"{tmp_path / 'rules'}/"
    assert main(["rules", "--out", out]) == 1
    assert capsys.readouterr().err == (
        f"shannon-otel rules: cannot write {out}: a directory (it ends with a slash), not a file\n")
    assert os.listdir(tmp_path) == []
