"""docs/cli.md and the command's own --help say the same thing: every flag of each subcommand in the
synopsis, and the same exit codes in the table and in the help's epilog; every command line the README and
docs/ show is one the command accepts, and those that need no server run as shown."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from shannon_otel.cli import EPILOG, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _synopsis() -> dict[str, set[str]]:
    """``{subcommand: flags}`` from the synopsis block (the first fenced block)."""
    block = DOC.split("```")[1]
    found: dict[str, set[str]] = {}
    for part in re.split(r"^shannon-otel ", block, flags=re.M)[1:]:
        found.setdefault(part.split()[0], set()).update(re.findall(r"--[a-z][a-z-]*", part))
    return found


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_the_synopsis_lists_exactly_the_flags_of_each_subcommand(name: str) -> None:
    flags = {o for a in _subcommands()[name]._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    assert _synopsis().get(name) == flags


def test_the_exit_code_table_and_the_help_give_the_same_codes() -> None:
    table = set(re.findall(r"^\| (\d+) +\|", DOC, flags=re.M))
    epilog = set(re.findall(r"^  (\d+) ", EPILOG, flags=re.M))
    assert table == epilog == {"0", "1", "2", "3", "130", "143"}


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(file, argv) of every `shannon-otel ...` line of a bash/sh block and every inline `shannon-otel ...`
    span of README.md and docs/*.md (comments, pipes and `&&` split off; `$VAR` and `URL` placeholders become
    a loopback URL). An inline span ending in a flag that takes a value only names the flag, and is left out."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        lines = [line.split(" #")[0] for block in re.findall(r"^ *```(?:bash|sh)\n(.*?)^ *```", text, re.S | re.M)
                 for line in block.splitlines()]
        prose = " ".join(re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M).split())
        lines += [span for span in re.findall(r"`([^`]+)`", prose) if not re.search(r" --[a-z-]+$", span)]
        for line in lines:
            for part in re.split(r"&&|\|(?!\w)", line):
                words = shlex.split(part.replace("$", "")) if part.strip().startswith("shannon-otel ") else []
                if words and not words[1].endswith(":"):  # "shannon-otel demo: cannot write ..." is a message
                    argv = ["http://127.0.0.1:9" if w == "URL" or w.startswith("SHANNON_") else w for w in words[1:]]
                    found.append((path.relative_to(ROOT).as_posix(), argv))
    return found


def test_every_command_line_the_docs_show_is_accepted() -> None:
    parser = build_parser()
    commands = _documented_commands()
    for file, argv in commands:
        try:
            _, unknown = parser.parse_known_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{file}: shannon-otel {' '.join(argv)} is a usage error") from exc
        assert unknown == [], (file, argv)
    assert {"README.md", "docs/cli.md", "docs/stack.md", "docs/runbook.md"} <= {file for file, _ in commands}


@pytest.mark.parametrize(
    "argv", sorted({tuple(a) for _, a in _documented_commands() if a[0] in ("dashboards", "rules")}), ids=" ".join,
)
def test_the_documented_asset_commands_run_as_shown(
    argv: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`shannon-otel dashboards --out grafana/`, `rules --out shannon-alerts.yml` (README), stack.md's
    `rules --slo-target 0.995 ... --out my-rules/shannon-alerts.yml`, runbook.md's `rules --jaeger-url ...`:
    each needs no server, so each runs as shown, in an empty directory (argparse alone does not check every
    value: `--slo-target 1.5` parses and is refused by the command)."""
    monkeypatch.chdir(tmp_path)
    assert main(list(argv)) == 0, capsys.readouterr().err
    written = capsys.readouterr().out
    if "--out" in argv:
        out = tmp_path / argv[argv.index("--out") + 1]
        written = "".join(p.read_text(encoding="utf-8") for p in sorted(out.glob("*.json"))) if out.is_dir() else (
            out.read_text(encoding="utf-8"))
    if argv[0] == "dashboards":
        assert '"panels"' in written
    else:
        assert written.count("alert: ") >= 8
    if argv in (("rules",), ("rules", "--out", "shannon-alerts.yml")):  # the defaults: the repository's file
        assert written == (ROOT / "collector-config" / "rules" / "shannon-alerts.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("argv", [
    ("rules", "--slo-target", "0.995", "--stall-after", "15m", "--stall-after-wave", "train=40m"),
    ("rules", "--jaeger-url", "http://127.0.0.1:26686", "--stall-after-wave", "my wave=40m"),
    ("rules", "--stall-after-wave", "a\nb=40m"),
], ids=["tuned", "quoted", "line-break"])
def test_a_rule_files_header_names_the_command_that_makes_it_again(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str],
) -> None:
    """stack.md's `shannon-otel rules --slo-target 0.995 ... --out my-rules/shannon-alerts.yml` wrote a file headed
    "Generated by `python -m shannon_otel.assets --write .`": that command writes the default rules (SLO 0.99) to
    ./collector-config/rules/, not this file. Its header now names the `shannon-otel rules` command making it,
    on one comment line whatever the wave names hold; the default file keeps the repository's header."""
    assert main(list(argv)) == 0
    text = capsys.readouterr().out
    header, _, body = text.partition("\n")
    command = re.fullmatch(r"# Generated by `shannon-otel (.*)` from shannon_otel/assets; do not edit\.", header)
    assert command is not None, header
    if "\n" not in "".join(argv):
        assert main(shlex.split(command.group(1))) == 0
        assert capsys.readouterr().out == text
    assert body.startswith("groups:\n")
    assert main(["rules"]) == 0
    assert capsys.readouterr().out == (ROOT / "collector-config" / "rules" / "shannon-alerts.yml").read_text(
        encoding="utf-8")
