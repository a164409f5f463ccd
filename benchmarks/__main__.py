"""Entry point: ``python -m benchmarks SUITE [--quick] [suite options]`` (SUITE: see ``SUITES``).

Each suite lives in ``benchmarks/<suite>.py`` and exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

SUITES = ("executor", "recovery", "detector", "nab", "logs", "reliability", "alarms", "dask", "shared")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUITES:
        print(f"usage: python -m benchmarks {{{','.join(SUITES)}}} [--quick] [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
