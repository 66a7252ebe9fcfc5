"""One list of observers with one rule for an observer that fails.

Many parts tell others about what happened (a store change, a PBX state, a
mail attempt, a login).  The notifying code has already done its work, so an
observer that raises, or returns a Deferred that fails, must neither undo it
nor keep the later observers from hearing of it: the failure is logged with
its traceback and the next observer is called.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Generic, ParamSpec

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

log = Logger()

P = ParamSpec("P")


class _Entry(Generic[P]):
    """One subscription; unsubscribing removes exactly this one, even if the same
    callable subscribed twice."""

    def __init__(self, observer: Callable[P, object]) -> None:
        self.observer = observer
        self.active = True


class Observers(Generic[P]):
    """Callables told of something, in the order they subscribed.

    ``what`` names what is observed in the log line of a failing observer;
    ``describe``, if given, turns the arguments into the log event's fields
    (``namespace`` and ``key`` of a store change), else the line shows them
    shortened.  An observer unsubscribed while others are being told is not
    called after.
    """

    def __init__(self, what: str, describe: Callable[P, dict[str, object]] | None = None) -> None:
        self.what = what
        self._describe = describe
        self._entries: list[_Entry[P]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def subscribe(self, observer: Callable[P, object]) -> Callable[[], None]:
        """Call ``observer`` on every `notify`; returns the function that unsubscribes."""
        entry = _Entry(observer)
        self._entries.append(entry)

        def unsubscribe() -> None:
            entry.active = False
            if entry in self._entries:
                self._entries.remove(entry)

        return unsubscribe

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every observer with these arguments; a failing one is logged, not raised."""

        def failed(failure: Failure, observer: Callable[P, object]) -> None:
            self._failed(failure, observer, self._fields(*args, **kwargs))

        for entry in list(self._entries):
            if not entry.active:
                continue
            try:
                result = entry.observer(*args, **kwargs)
            except Exception:
                failed(Failure(), entry.observer)
                continue
            if isinstance(result, Deferred):
                result.addErrback(failed, entry.observer)

    def _fields(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, object]:
        if self._describe is not None:
            fields = self._describe(*args, **kwargs)
            return {**fields, "about": " ".join(f"{name}={value}" for name, value in fields.items())}
        return {"about": reprlib.repr(args)}

    def _failed(self, failure: Failure, observer: Callable[..., object], fields: dict[str, object]) -> None:
        # emit, not failure(): the fields may not be taken for failure()'s own arguments.
        log.emit(
            LogLevel.critical,
            "{what} observer {observer!r} failed on {about}",
            log_failure=failure,
            what=self.what,
            observer=observer,
            **fields,
        )
