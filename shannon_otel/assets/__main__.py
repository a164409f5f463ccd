"""``python -m shannon_otel.assets --write ROOT | --check ROOT``: write (or check) the generated assets under ROOT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import stale_files, write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shannon_otel.assets", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="ROOT", type=Path, help="write the files under ROOT")
    action.add_argument("--check", metavar="ROOT", type=Path, help="exit 1 if a file under ROOT is missing or stale")
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write_all(args.write):
            print(path)
        return 0
    stale = stale_files(args.check)
    for relative in stale:  # an absent file is "missing", not "stale": a mistyped ROOT said stale six times
        print(f"{'stale' if (args.check / relative).is_file() else 'missing'}: {relative}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
