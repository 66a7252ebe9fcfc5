"""
Fakes of the appliance's interfaces, for tests; not shipped in the package.

A fake that stands in for a real implementation (the memory store) is
verified by the same test suite as the real one, so tests that use it
exercise the behaviour production code will see.  A recorder (the callback
engine's outputs) only keeps what it was asked, for tests to assert on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.task import Cooperator
from zope.interface import implementer

from appliance.callback.engine import IRecallOutputs, Recall, Request
from appliance.store import (
    DELETE,
    ChangeObservers,
    IKeyValueStore,
    JSONValue,
    Observer,
    StoreError,
    check_name,
    decode_value,
    normalize_changes,
)

# --- Key-value store (appliance.store.IKeyValueStore) -----------------------


@implementer(IKeyValueStore)
class MemoryStore:
    """
    ``SQLiteStore`` without the file: values are kept as the same JSON text,
    so round-trip semantics (tuples become lists, no aliasing) are identical.
    """

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], str] | None = {}
        self._observers = ChangeObservers()

    def _entries(self) -> dict[tuple[str, str], str]:
        if self._data is None:
            raise StoreError("store <memory> is closed")
        return self._data

    def get(self, namespace: str, key: str, default: JSONValue = None) -> JSONValue:
        check_name("namespace", namespace)
        check_name("key", key)
        text = self._entries().get((namespace, key))
        return default if text is None else decode_value(text)

    def put(self, namespace: str, key: str, value: JSONValue) -> None:
        self.apply([(namespace, key, value)])

    def delete(self, namespace: str, key: str) -> None:
        self.apply([(namespace, key, DELETE)])

    def items(self, namespace: str) -> list[tuple[str, JSONValue]]:
        check_name("namespace", namespace)
        return [
            (key, decode_value(text))
            for (ns, key), text in sorted(self._entries().items())
            if ns == namespace
        ]

    def page(self, namespace: str, after: str = "", limit: int = 100) -> list[tuple[str, JSONValue]]:
        check_name("namespace", namespace)
        keys = sorted(key for (ns, key) in self._entries() if ns == namespace and key > after)
        return [(key, decode_value(self._entries()[namespace, key])) for key in keys[: max(0, int(limit))]]

    def apply(self, changes: Iterable[tuple[str, str, JSONValue]]) -> None:
        new = normalize_changes(changes)
        data = self._entries()
        old = {name: data.get(name) for name in new}
        for name, text in new.items():
            if text is None:
                data.pop(name, None)
            else:
                data[name] = text
        self._observers.notify_write(old, new)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        return self._observers.subscribe(observer)

    def close(self) -> None:
        self._data = None


# --- end of key-value store --------------------------------------------------


# --- Cooperator that runs a job to the end at once -----------------------------


def synchronous_cooperator() -> Cooperator:
    """A `Cooperator` that runs a sliced job to its end inside the call that started it."""

    def at_once(run: Callable[[], None]) -> Any:
        run()  # the Cooperator only keeps the result to cancel a pending slice: none is pending

    return Cooperator(scheduler=at_once, terminationPredicateFactory=lambda: lambda: False)


# --- Callback engine outputs (appliance.callback.engine.IRecallOutputs) ---------


@implementer(IRecallOutputs)
class RecordingOutputs:
    """Keeps every output of the callback engine in order; its tests assert on ``log``."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def originate(self, recall: Recall) -> None:
        self.log.append(("originate", recall))

    def saved(self, request: Request) -> None:
        self.log.append(("saved", request))

    def removed(self, request: Request, why: str) -> None:
        self.log.append(("removed", (request.id, why)))
