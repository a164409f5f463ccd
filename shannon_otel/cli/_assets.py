"""``shannon-otel dashboards`` / ``rules``: the bundled Grafana dashboards and Prometheus alert rules.

They are generated from the telemetry contract by :mod:`shannon_otel.assets`, so a pip-installed user
gets exactly the files the repository ships, without cloning it.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .. import assets
from ._pipe import encodes, lost


def _short(file_name: str) -> str:
    """``shannon-otel-overview.json`` -> ``overview``."""
    return file_name.removesuffix(".json").rsplit("-", 1)[-1]


def _dashboards(args: argparse.Namespace) -> int:
    models = assets.dashboards()
    if args.name is not None:
        wanted = [f for f in models if args.name in (f, f.removesuffix(".json"), _short(f))]
        if not wanted:
            names = ", ".join(_short(f) for f in models)
            # a usage error like any bad argument: the usage, then the argument named (exit 2)
            args.subparser.error(f"argument name: no dashboard {args.name!r}; choose one of: {names}")
        models = {wanted[0]: models[wanted[0]]}
    if args.out is None:
        document = next(iter(models.values())) if args.name is not None else models
        print(json.dumps(document, indent=2))
        return 0
    root = Path(args.out)
    written = []
    for name, model in models.items():
        written.append(_write(root / name, json.dumps(model, indent=2) + "\n"))
    # With one dashboard too: --help and docs/cli.md promise DIR/provisioning/ (the Jaeger datasource the
    # trace links open, the provider that loads DIR), and a dashboard alone links to no datasource.
    written += [_write(root / "provisioning" / rel, text) for rel, text in assets.provisioning_files().items()]
    for path in written:
        print(path)
    return 0


def _write(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a directory must be: "File exists" read as "will not overwrite"
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a directory", exc.filename) from exc
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a full disk fails in write(), whose error names no file: name it
        if exc.filename is None:
            exc.filename = str(path)
        raise
    return path


# alert_rules() names its parameters; the user typed the flags (stall_after_wave before its prefix stall_after)
_FLAGS = (("slo_target", "--slo-target"), ("stall_after_wave", "--stall-after-wave"), ("stall_after", "--stall-after"))


def _rules(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        k: v for k, v in (("jaeger_url", args.jaeger_url), ("runbook_url", args.runbook_url),
                          ("slo_target", args.slo_target), ("stall_after", args.stall_after)) if v is not None
    }
    per_wave = dict(item.partition("=")[::2] for item in args.stall_after_wave)
    if any(not wave for wave in per_wave) or any("=" not in item for item in args.stall_after_wave):
        args.subparser.error("argument --stall-after-wave: expected WAVE=DURATION, e.g. train=40m")
    if len(per_wave) < len(args.stall_after_wave):  # the later one silently replaced the earlier
        waves = [item.partition("=")[0] for item in args.stall_after_wave]
        twice = next(w for w in waves if waves.count(w) > 1)
        args.subparser.error(f"argument --stall-after-wave: wave {twice!r} is given more than once")
    try:
        text = assets.alert_rules_yaml(**options, stall_after_wave=per_wave)
    except ValueError as exc:  # a usage error like any bad flag value: the usage, then the flag named
        flag = next((f for p, f in _FLAGS if str(exc).startswith(p)), None)
        args.subparser.error(f"argument {flag}: {exc}" if flag else str(exc))
    if options or per_wave:  # the header's `python -m shannon_otel.assets --write .` makes the default file only
        text = _headed(text, _rules_command(args))
    if args.out is None:
        if not encodes(sys.stdout, text):  # a '?' in a wave name's matcher would be a rule for another wave
            encoding = getattr(sys.stdout, "encoding", None)
            print(f"shannon-otel rules: cannot write the rules to stdout: its encoding ({encoding}) cannot write "
                  "every character of them (a wave name or URL given); use --out FILE (written in UTF-8), or "
                  "PYTHONIOENCODING=utf-8", file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    if args.out.endswith(("/", os.sep)):  # Path() drops the slash: `--out rules/` wrote a file named "rules"
        raise IsADirectoryError(errno.EISDIR, "a directory (it ends with a slash), not a file", args.out)
    print(_write(Path(args.out), text))
    return 0


def _rules_command(args: argparse.Namespace) -> str:
    """The ``shannon-otel rules`` command line making this file again (``--out`` left out)."""
    words = ["shannon-otel", "rules"]
    for flag, value in (("--jaeger-url", args.jaeger_url), ("--runbook-url", args.runbook_url),
                        ("--slo-target", args.slo_target), ("--stall-after", args.stall_after)):
        if value is not None:
            words += [flag, str(value)]
    for item in args.stall_after_wave:
        words += ["--stall-after-wave", item]
    return shlex.join(words)


def _headed(text: str, command: str) -> str:
    """``text`` whose first line (the generator's header) names ``command`` instead: the file of non-default
    options said it was made by ``python -m shannon_otel.assets --write .``, which makes the default one."""
    one_line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in command)
    return f"# Generated by `{one_line}` from shannon_otel/assets; do not edit.\n" + text.partition("\n")[2]


def run(args: argparse.Namespace) -> int:
    """Print or write; OSError (unwritable path) becomes exit 1 with a message."""
    try:
        return _dashboards(args) if args.command == "dashboards" else _rules(args)
    except BrokenPipeError:  # stdout's reader left (`| head`), not a file that could not be written
        raise
    except OSError as exc:
        if exc.filename is None:  # stdout (`> /dev/full`): main() says so; a file's error names it (_write)
            lost(sys.stdout, exc)
            return 1
        print(f"shannon-otel {args.command}: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
