"""A command run with its stdout on a pseudo-terminal, as a user's shell runs it, read until it exits."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios


def on_a_terminal(args: list[str], env: dict[str, str], columns: int | None = None) -> tuple[int, bytes, bytes]:
    """(exit code, what the terminal showed, stderr) of ``args``; ``columns``: the terminal's width (40 rows), else
    the pseudo-terminal's own size is left as it is."""
    primary, secondary = os.openpty()
    if columns is not None:
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(args, stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side closed (the command has exited)
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
        proc.kill()
    return proc.returncode, b"".join(chunks), err
