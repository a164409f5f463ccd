"""What ``Wave.run`` returns: results in input order, the report, and the error group that keeps both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._events import TaskResult
from ..reporting._advice import plural
from ._report import WaveReport

T = TypeVar("T")


class WaveError(ExceptionGroup[Exception]):
    """The failures of a wave, as an ExceptionGroup; ``result`` keeps every task's result."""

    result: WaveResult[Any]

    def __new__(cls, message: str, exceptions: list[Exception], result: WaveResult[Any]) -> WaveError:
        self = super().__new__(cls, message, exceptions)
        self.result = result
        return self

    def derive(self, excs: list[Exception]) -> WaveError:  # type: ignore[override]
        """The ``ExceptionGroup`` protocol (``split`` / ``subgroup``): a group of ``excs`` keeping ``result``."""
        return WaveError(self.message, excs, self.result)


# no slots=True: with it, Python 3.11/3.12 raise TypeError on WaveResult[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class WaveResult(Generic[T]):
    """Results in input order plus the wave report. Never raises by itself."""

    results: list[TaskResult[T]]
    report: WaveReport

    @property
    def errors(self) -> list[TaskResult[T]]:
        """The results of the tasks that failed or timed out (an ``error`` set), in input order."""
        return [r for r in self.results if r.error is not None]

    def values(self) -> list[T | None]:
        """The task values in input order; raises :class:`WaveError` if any task failed or timed out.

        A cancelled task (outcome ``cancellation``: a task that raised ``CancelledError`` itself, or an
        ``asyncio.Task`` cancelled from outside) is not an error: its place holds ``None``, hence ``T | None``."""
        self.raise_for_errors()
        return [r.value for r in self.results]

    def raise_for_errors(self) -> None:
        """Raise :class:`WaveError` (an ``ExceptionGroup`` of the failed tasks' exceptions, each noted with its
        task and wave, unless it takes no note: a frozen dataclass exception; ``.result`` is this result) if any
        task failed; return ``None`` otherwise."""
        failed = self.errors
        if not failed:
            return
        errors: list[Exception] = []
        for r in failed:
            assert isinstance(r.error, Exception)
            note = f"in task {r.index} ({r.name}) of wave {self.report.wave!r}"
            try:
                if note not in getattr(r.error, "__notes__", ()):
                    r.error.add_note(note)
            except Exception:
                # An exception that takes no note (a frozen dataclass's, whose __setattr__ refuses __notes__; one
                # whose __notes__ is not a list) goes into the group without it: the note failed the call, which
                # raised that error in place of the WaveError, and every result of the wave was lost with it.
                pass
            errors.append(r.error)
        by_type = ", ".join(f"{k} x{v}" for k, v in sorted(self.report.errors_by_type.items()))  # "ValueError x2"
        raise WaveError(
            f"wave {self.report.wave!r}: {len(failed)} of {plural(len(self.results), 'task')} failed ({by_type})",
            errors, self,
        )
