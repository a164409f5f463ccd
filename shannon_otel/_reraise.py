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


INTERRUPTS = (KeyboardInterrupt, SystemExit)


def outranks(error: BaseException, other: BaseException) -> bool:
    """Whether ``error`` is a ``KeyboardInterrupt`` / ``SystemExit`` and ``other`` is not: where several
    BaseExceptions meet (a hedge's attempts, a saga's step and its rollback), the user's Ctrl-C or exit is the one
    raised, never replaced by a lesser one (a custom BaseException, a cancellation) that came with or after it."""
    return isinstance(error, INTERRUPTS) and not isinstance(other, INTERRUPTS)


def graver(held: BaseException | None, then: BaseException) -> BaseException:
    """Of a BaseException held back to be raised later (or None) and ``then``, raised after it, the one to hold:
    the first, unless only ``then`` is a ``KeyboardInterrupt`` / ``SystemExit`` (see :func:`outranks`)."""
    return then if held is None or outranks(then, held) else held
