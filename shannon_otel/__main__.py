"""``python -m shannon_otel``: the ``shannon-otel`` command."""

import sys

from ._quit import run_command
from .cli import main

if __name__ == "__main__":
    sys.exit(run_command(main))
