"""Raising the user's exception again, where it surfaces, with the ``__context__`` it was raised with."""

from __future__ import annotations

from typing import NoReturn


def raise_as_is(error: BaseException) -> NoReturn:
    """Raise ``error`` (the user's: a task's, an attempt's, a hook's or a compensation's, caught where it was raised
    and held back) keeping the ``__context__`` it was raised with.

    Called by the executor, the policies and the hook guards where such an error reaches the caller's task. A bare
    ``raise`` sets ``__context__`` to the exception being handled where it runs: the caller's (a wave, hedge or saga
    awaited in an ``except`` block), a saga's step error (its compensation's error, raised in the block's exit), or
    the library's own ``CancelledError``. That replaced the chain the user's code raised (the ``KeyError`` it was
    raised while handling), which the same code called without the library keeps. An error without a context (raised
    outside any ``except``, often in a task of its own) takes the one being handled here, as it would have, raised
    here. Set past the class's ``__setattr__``, as a raise sets it (a frozen dataclass exception refuses it)."""
    context = error.__context__
    try:
        raise error
    finally:
        if context is not None:
            object.__setattr__(error, "__context__", context)
