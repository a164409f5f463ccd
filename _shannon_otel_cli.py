"""The ``shannon-otel`` script's entry point, outside the package.

The script pip writes runs ``from <module> import main`` before any code of ours: with ``shannon_otel.cli`` there,
the package's 0.3-1 s import ran first, and Ctrl-C during it printed a traceback. Here the package is imported
inside :func:`main`, where that Ctrl-C is the command's one line and exit status 130.
"""

import sys


def main() -> int:
    """Run the ``shannon-otel`` command on ``sys.argv``; returns its exit code (see ``docs/cli.md``)."""
    try:
        from shannon_otel._quit import run_command
        from shannon_otel.cli import main as command
    except KeyboardInterrupt:
        if sys.stderr is not None:  # started with stderr closed (`2>&-`): print(file=None) writes to stdout
            print("shannon-otel: interrupted", file=sys.stderr)
        return 130
    return run_command(command)
