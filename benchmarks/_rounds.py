"""The command line of the per-call suites (``recovery``, ``logs``): ``N`` calls per round and variant, ``R`` rounds."""

from __future__ import annotations

import argparse


def calls_and_rounds(suite: str, argv: list[str], *, quick_rounds: int, full_rounds: int) -> tuple[int, int]:
    """``(N, R)`` from ``--calls`` / ``--rounds``, else 5,000 calls and ``quick_rounds`` with ``--quick``, 50,000
    and ``full_rounds`` without. Exits with argparse's usage message on a bad command line."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {suite}")
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (well under 60 s)")
    parser.add_argument("--calls", type=int, default=None, help="calls per round and variant")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.calls or (5_000 if args.quick else 50_000)
    rounds = args.rounds or (quick_rounds if args.quick else full_rounds)
    return n, rounds
