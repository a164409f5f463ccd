"""docs/cli.md and the command's own --help say the same thing: every flag of each subcommand in the
synopsis, and the same exit codes in the table and in the help's epilog."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from shannon_otel.cli import EPILOG, build_parser

DOC = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")


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
    assert table == epilog == {"0", "1", "2", "3", "130"}
