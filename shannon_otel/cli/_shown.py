"""What the CLI shows of a text it did not write: one line, every character visible.

An exporter's or a server's error message, an OTLP partial-success message, an exception's text: a server
answering ``\\x1b[31m`` recoloured the terminal, ``\\r`` or ``\\n`` forged a line of the command's own, a bidi
override reordered what was read. :func:`visible` shows each such character as its Python escape (``\\x1b``,
``\\r``, ``\\u202e``), and :func:`literal` also escapes rich markup for the renderables that parse it (a table
cell, a rule's title): ``[bold red]x[/]`` from a server is shown as those characters, not as a style.
"""

from __future__ import annotations

import re

# C0 (tab and newline included: one cell, one line), DEL, C1, the line and paragraph separators, and the
# bidi controls (marks, embeddings, overrides, isolates: the "Trojan Source" set).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with each control character shown as its escape (``repr`` style, no quotes); else unchanged."""
    return _HIDDEN.sub(lambda m: repr(m.group())[1:-1], text)


def literal(text: str) -> str:
    """:func:`visible` ``text`` for rich markup: its square brackets shown, never taken for a style or a link."""
    from rich.markup import escape

    return escape(visible(text))
