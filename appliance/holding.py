"""Keep writes that the disk refuses, and write them when it takes them again.

A full disk (or a failing one) must not lose what the appliance already acted
on: a missed-call journal entry, a queued mail, a callback request the caller
confirmed.  `HoldingStore` wraps the real store: a change the disk refuses is
held in memory, in order, and every read sees it, so features go on as if it
had been written (the outbox still sends the mail; the next missed call
appends to the held journal, not to the older one on disk).  A timer retries
every `RETRY_SECONDS`; the held changes are written in one transaction when
space returns.  Entering and leaving that state is logged loudly, and
`problem` gives the admin page its banner.  Held changes live only in memory:
a crash while the disk is full loses them, which nothing can avoid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from appliance.metering import NO_METRICS, IMetrics
from appliance.observers import Observers
from appliance.store import (
    DELETE,
    IKeyValueStore,
    JSONValue,
    Observer,
    StoreError,
    check_name,
    decode_value,
    normalize_changes,
)

log = Logger()

RETRY_SECONDS = 5.0
MAX_HELD_KEYS = 100_000
"""Beyond this many held keys a write fails like the disk did: memory is finite too."""


@implementer(IKeyValueStore)
class HoldingStore:
    """An `IKeyValueStore` over ``store`` that holds refused writes and retries them."""

    def __init__(
        self,
        store: Any,
        clock: IReactorTime,
        retry: float = RETRY_SECONDS,
        metrics: IMetrics = NO_METRICS,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.timer = timer
        """Measures write durations for the metrics (a measurement, not logic time)."""
        self.clock = clock
        self.retry = retry
        self._held: dict[tuple[str, str], str | None] = {}
        self._timer: IDelayedCall | None = None
        self.last_error = ""
        self._listeners: Observers[[bool]] = Observers("store holding")

    # --- state ------------------------------------------------------------

    @property
    def holding(self) -> int:
        """How many keys wait to be written (0: everything is on disk)."""
        return len(self._held)

    def problem(self) -> str | None:
        """One line for the admin banner while writes are held."""
        if not self._held:
            return None
        return f"store not writable ({self.last_error}): {len(self._held)} changes kept in memory"

    def on_holding(self, listener: Callable[[bool], object]) -> None:
        """``listener(True)`` when writes start being held, ``listener(False)`` when written."""
        self._listeners.subscribe(listener)

    # --- writes -----------------------------------------------------------

    def put(self, namespace: str, key: str, value: JSONValue) -> None:
        self.apply([(namespace, key, value)])

    def delete(self, namespace: str, key: str) -> None:
        self.apply([(namespace, key, DELETE)])

    def apply(self, changes: Iterable[tuple[str, str, JSONValue]]) -> None:
        new = normalize_changes(changes)  # bad values fail here, never held
        if not new:
            return
        batch = [(ns, key, DELETE if text is None else decode_value(text)) for (ns, key), text in new.items()]
        if not self._held:
            try:
                self._write(batch)
                return
            except StoreError as error:
                if not getattr(error, "retryable", False):
                    raise
                self._start_holding(str(error))
        if len(self._held) + len(new) > MAX_HELD_KEYS:
            raise StoreError(f"store not writable and {MAX_HELD_KEYS} changes kept: {self.last_error}")
        self._held.update(new)

    def _write(self, batch: list[tuple[str, str, JSONValue]]) -> None:
        """One transaction on disk, its duration reported when it is written."""
        started = self.timer()
        self.store.apply(batch)
        self.metrics.store_written(self.timer() - started)

    def _start_holding(self, error: str) -> None:
        self.last_error = error
        log.critical(
            "STORE NOT WRITABLE: {error}; keeping changes in memory and retrying every {retry}s "
            "- free disk space now",
            error=error,
            retry=self.retry,
        )
        self._schedule()
        self._listeners.notify(True)

    def _schedule(self) -> None:
        if self._timer is None or not self._timer.active():
            self._timer = self.clock.callLater(self.retry, self.flush)

    def flush(self) -> bool:
        """Try to write what is held; True when nothing is held any more."""
        self._timer = None
        if not self._held:
            return True
        held = dict(self._held)
        try:
            self._write(
                [
                    (ns, key, DELETE if text is None else decode_value(text))
                    for (ns, key), text in held.items()
                ]
            )
        except StoreError as error:
            if str(error) != self.last_error:
                log.error("store still not writable: {error}", error=error)
            self.last_error = str(error)
            self._schedule()
            return False
        self._held.clear()
        log.warn("store writable again: {count} kept changes written", count=len(held))
        self._listeners.notify(False)
        return True

    # --- reads see held changes -------------------------------------------

    def get(self, namespace: str, key: str, default: JSONValue = None) -> JSONValue:
        check_name("namespace", namespace)
        check_name("key", key)
        if (namespace, key) in self._held:
            text = self._held[namespace, key]
            return default if text is None else decode_value(text)
        return self.store.get(namespace, key, default)

    def items(self, namespace: str) -> list[tuple[str, JSONValue]]:
        found = dict(self.store.items(namespace))
        for (ns, key), text in self._held.items():
            if ns != namespace:
                continue
            if text is None:
                found.pop(key, None)
            else:
                found[key] = decode_value(text)
        return sorted(found.items())

    def page(self, namespace: str, after: str = "", limit: int = 100) -> list[tuple[str, JSONValue]]:
        held = {key: text for (ns, key), text in self._held.items() if ns == namespace and key > after}
        deleted = sum(1 for text in held.values() if text is None)
        found = dict(self.store.page(namespace, after, limit + deleted))
        for key, text in held.items():
            if text is None:
                found.pop(key, None)
            else:
                found[key] = decode_value(text)
        return sorted(found.items())[: max(0, int(limit))]

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        return self.store.subscribe(observer)

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._held and not self.flush():
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            log.critical(
                "STORE NOT WRITABLE at shutdown: {count} kept changes are lost", count=len(self._held)
            )
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        # The real store's own extras (its path, tests' hooks).
        return getattr(self.store, name)
