"""The key-value store: one suite for SQLiteStore and MemoryStore, so the fake cannot drift."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, capturedLogs
from zope.interface.verify import verifyObject

from appliance.store import DELETE, Change, IKeyValueStore, SQLiteStore, StoreError, moved
from appliance.testing import MemoryStore

FACTORIES: dict[str, Callable[[Path], IKeyValueStore]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(tmp / "store.sqlite3"),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IKeyValueStore]:
    opened = FACTORIES[request.param](tmp_path)
    yield opened
    opened.close()


def recorder(store: IKeyValueStore) -> list[Change]:
    changes: list[Change] = []
    store.subscribe(changes.append)
    return changes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Any text SQLite can hold: no NUL, no lone surrogates.
names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=12)
# Property tests draw examples inside the test, against the fixture's store:
# hypothesis's own fixture handling does not mix with pytest-twisted.
quick = settings(deadline=None, database=None, max_examples=60)


# --- Shared behaviour -------------------------------------------------------


def test_provides_interface(store: IKeyValueStore) -> None:
    """Both implementations fully provide IKeyValueStore."""
    assert verifyObject(IKeyValueStore, store)


def test_get_missing_returns_default(store: IKeyValueStore) -> None:
    """A missing key gives None, or the given default."""
    assert store.get("settings", "CC_OFFER") is None
    assert store.get("settings", "CC_OFFER", "fallback") == "fallback"


def test_put_then_get(store: IKeyValueStore) -> None:
    """A stored value comes back equal."""
    value = {"name": "Jörg", "numbers": ["100", "+4930123"], "admin": True, "rank": 1.5, "x": None}
    store.put("users", "100", value)
    assert store.get("users", "100") == value


def test_put_overwrites(store: IKeyValueStore) -> None:
    """Storing a key again replaces the value."""
    store.put("settings", "CC_TIMEOUT", 60)
    store.put("settings", "CC_TIMEOUT", 30)
    assert store.get("settings", "CC_TIMEOUT") == 30


def test_json_round_trip(store: IKeyValueStore) -> None:
    """Any JSON value comes back as JSON would return it (tuples as lists)."""

    @quick
    @given(value=json_values)
    def check(value: Any) -> None:
        store.put("journal", "entry", value)
        assert store.get("journal", "entry") == json.loads(json.dumps(value))

    check()


def test_tuples_come_back_as_lists(store: IKeyValueStore) -> None:
    """Tuples are stored as JSON arrays and read back as lists."""
    store.put("forwards", "100", {"targets": ("101", "102")})
    assert store.get("forwards", "100") == {"targets": ["101", "102"]}


def test_caller_mutation_does_not_change_store(store: IKeyValueStore) -> None:
    """Changing the caller's object after put leaves the stored value alone."""
    value: dict[str, Any] = {"targets": ["101"]}
    store.put("forwards", "100", value)
    value["targets"].append("102")
    assert store.get("forwards", "100") == {"targets": ["101"]}


def test_reader_mutation_does_not_change_store(store: IKeyValueStore) -> None:
    """Changing a value returned by get leaves the stored value alone."""
    store.put("forwards", "100", {"targets": ["101"]})
    store.get("forwards", "100")["targets"].append("102")
    assert store.items("forwards") == [("100", {"targets": ["101"]})]


def test_delete(store: IKeyValueStore) -> None:
    """A deleted key is gone."""
    store.put("callbacks", "r1", {"from": "100"})
    store.delete("callbacks", "r1")
    assert store.get("callbacks", "r1", "gone") == "gone"


def test_delete_missing_is_not_an_error(store: IKeyValueStore) -> None:
    """Deleting a key that does not exist does nothing."""
    store.delete("callbacks", "never")
    assert store.items("callbacks") == []


def test_items_sorted_and_limited_to_namespace(store: IKeyValueStore) -> None:
    """items lists one namespace's entries sorted by key."""
    store.put("users", "200", "b")
    store.put("users", "100", "a")
    store.put("contacts", "150", "other namespace")
    assert store.items("users") == [("100", "a"), ("200", "b")]
    assert store.items("empty") == []


def test_items_order_matches_python_sort(store: IKeyValueStore) -> None:
    """items orders any Unicode keys exactly as Python's sorted() does."""

    @quick
    @given(keys=st.lists(names, max_size=8, unique=True))
    def check(keys: list[str]) -> None:
        store.apply([("order", key, DELETE) for key, _ in store.items("order")])
        store.apply([("order", key, key) for key in keys])
        assert [key for key, _ in store.items("order")] == sorted(keys)

    check()


def test_page_continues_after_a_key(store: IKeyValueStore) -> None:
    """page gives at most ``limit`` entries of one namespace after a key, in key order."""
    store.apply([("contacts", f"c{i}", i) for i in range(5)] + [("users", "c9", "other")])
    assert store.page("contacts", limit=2) == [("c0", 0), ("c1", 1)]
    assert store.page("contacts", after="c1", limit=2) == [("c2", 2), ("c3", 3)]
    assert store.page("contacts", after="c3") == [("c4", 4)]
    assert store.page("contacts", after="c4") == []
    assert store.page("contacts", after="c", limit=0) == []


def test_namespaces_are_separate(store: IKeyValueStore) -> None:
    """The same key in two namespaces holds two values."""
    store.put("users", "100", "user")
    store.put("forwards", "100", "forward")
    store.delete("users", "100")
    assert store.get("forwards", "100") == "forward"


def test_apply_writes_and_deletes(store: IKeyValueStore) -> None:
    """apply stores and deletes several keys, the last change of a key winning."""
    store.put("outbox", "old", 1)
    store.apply([("outbox", "a", 1), ("outbox", "old", DELETE), ("journal", "j", [1]), ("outbox", "a", 2)])
    assert store.items("outbox") == [("a", 2)]
    assert store.get("journal", "j") == [1]


def test_moved_carries_a_value_to_a_new_key_or_drops_it(store: IKeyValueStore) -> None:
    """`moved` gives the changes that hand a record to a new key (replacing what was
    there, or clearing it when the old key had none), or remove it; nothing before apply."""
    store.put("forwards", "600", ["mine"])
    store.put("forwards", "601", ["stale"])
    store.put("forwards", "602", ["stale"])
    assert moved(store, "forwards", "600", "600") == []
    changes = moved(store, "forwards", "600", "601") + moved(store, "forwards", "603", "602")
    assert store.get("forwards", "601") == ["stale"]
    store.apply(changes)
    assert store.items("forwards") == [("601", ["mine"])]
    store.apply(moved(store, "forwards", "601", None))
    assert store.items("forwards") == []


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (object(), TypeError),
        ({1, 2}, TypeError),
        (b"bytes", TypeError),
        (float("nan"), ValueError),
        ({"x": float("inf")}, ValueError),
    ],
)
def test_apply_with_bad_value_stores_nothing(
    store: IKeyValueStore, bad: object, error: type[Exception]
) -> None:
    """One non-JSON value in a batch rejects the whole batch before anything is written."""
    store.put("outbox", "kept", "before")
    seen = recorder(store)
    with pytest.raises(error, match="outbox/bad"):
        store.apply([("outbox", "kept", "after"), ("outbox", "new", 1), ("outbox", "bad", bad)])
    assert store.items("outbox") == [("kept", "before")]
    assert seen == []


def test_circular_value_refused(store: IKeyValueStore) -> None:
    """A value containing itself is refused with ValueError."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="users/100"):
        store.put("users", "100", loop)
    assert store.get("users", "100") is None


@pytest.mark.parametrize(
    ("namespace", "key", "error"),
    [
        ("users", "", ValueError),
        ("", "100", ValueError),
        ("users", 100, TypeError),
        (None, "100", TypeError),
        ("users", b"100", TypeError),
        ("users", "a\x00b", ValueError),
        ("users", "\udc80", ValueError),
    ],
)
def test_bad_names_refused(store: IKeyValueStore, namespace: Any, key: Any, error: type[Exception]) -> None:
    """Keys and namespaces must be non-empty text SQLite can hold; others are refused everywhere."""
    with pytest.raises(error, match=r"namespace|key"):
        store.put(namespace, key, 1)
    with pytest.raises(error):
        store.get(namespace, key)
    with pytest.raises(error):
        store.delete(namespace, key)
    with pytest.raises(error):
        store.apply([("users", "ok", 1), (namespace, key, 1)])
    assert store.items("users") == []


def test_observer_sees_create_update_delete(store: IKeyValueStore) -> None:
    """Observers get old and new values; DELETE stands for an absent key."""
    seen = recorder(store)
    store.put("settings", "CC_TIMEOUT", 60)
    store.put("settings", "CC_TIMEOUT", 30)
    store.delete("settings", "CC_TIMEOUT")
    assert seen == [
        Change("settings", "CC_TIMEOUT", DELETE, 60),
        Change("settings", "CC_TIMEOUT", 60, 30),
        Change("settings", "CC_TIMEOUT", 30, DELETE),
    ]


def test_observer_not_called_without_change(store: IKeyValueStore) -> None:
    """Rewriting the same value or deleting a missing key notifies nobody."""
    store.put("settings", "CC_TIMEOUT", 60)
    seen = recorder(store)
    store.put("settings", "CC_TIMEOUT", 60)
    store.delete("settings", "missing")
    store.apply([])
    assert seen == []


def test_observer_gets_one_change_per_key_of_a_batch(store: IKeyValueStore) -> None:
    """A batch notifies each changed key once, with its value before and after the batch."""
    store.put("outbox", "a", 1)
    seen = recorder(store)
    store.apply([("outbox", "a", 2), ("outbox", "b", 1), ("outbox", "a", 3), ("outbox", "b", DELETE)])
    assert seen == [Change("outbox", "a", 1, 3)]


def test_observer_called_after_commit(store: IKeyValueStore) -> None:
    """When an observer runs, the whole batch is already readable."""
    reads: list[Any] = []
    store.subscribe(lambda change: reads.append([store.get("outbox", "a"), store.get("outbox", "b")]))
    store.apply([("outbox", "a", 1), ("outbox", "b", 2)])
    assert reads == [[1, 2], [1, 2]]


def test_unsubscribe(store: IKeyValueStore) -> None:
    """After unsubscribing an observer hears nothing; unsubscribing twice is harmless."""
    seen: list[Change] = []
    unsubscribe = store.subscribe(seen.append)
    unsubscribe()
    unsubscribe()
    store.put("settings", "CC_OFFER", True)
    assert seen == []


def test_failing_observer_is_logged_and_isolated(store: IKeyValueStore) -> None:
    """An observer raising neither undoes the write nor silences later observers, and is logged."""

    def broken(change: Change) -> None:
        raise ZeroDivisionError("observer bug")

    store.subscribe(broken)
    seen = recorder(store)
    with capturedLogs() as events:
        store.put("settings", "CC_OFFER", False)
    assert store.get("settings", "CC_OFFER") is False
    assert seen == [Change("settings", "CC_OFFER", DELETE, False)]
    failures = [e for e in events if e.get("log_level") == LogLevel.critical]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ZeroDivisionError)
    assert failures[0]["key"] == "CC_OFFER"


def test_observer_may_write(store: IKeyValueStore) -> None:
    """An observer can itself write to the store while being notified."""

    def mirror(change: Change) -> None:
        if change.namespace == "settings":
            store.put("mirror", change.key, change.new)

    store.subscribe(mirror)
    store.put("settings", "CC_TIMEOUT", 5)
    assert store.get("mirror", "CC_TIMEOUT") == 5


def test_closed_store_refuses_use(store: IKeyValueStore) -> None:
    """Every operation on a closed store raises StoreError; closing again is harmless."""
    store.close()
    store.close()
    operations: list[Callable[[], object]] = [
        lambda: store.get("users", "1"),
        lambda: store.put("users", "1", 1),
        lambda: store.delete("users", "1"),
        lambda: store.items("users"),
        lambda: store.apply([]),
    ]
    for operation in operations:
        with pytest.raises(StoreError, match="closed"):
            operation()


@settings(deadline=None, database=None, max_examples=40)
@given(
    operations=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b"]),
                st.sampled_from(["k1", "k2", "k3"]),
                st.just(DELETE) | json_values,
            ),
            max_size=4,
        ),
        max_size=6,
    )
)
def test_memory_and_sqlite_agree(operations: list[list[tuple[str, str, Any]]]) -> None:
    """Any sequence of batches leaves both implementations with the same data and notifications."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = [MemoryStore(), SQLiteStore(Path(tmp) / "s.sqlite3")]
        logs = [recorder(s) for s in stores]
        for batch in operations:
            for s in stores:
                s.apply(batch)
        assert stores[0].items("a") == stores[1].items("a")
        assert stores[0].items("b") == stores[1].items("b")
        assert stores[0].page("a", after="k1", limit=1) == stores[1].page("a", after="k1", limit=1)
        assert logs[0] == logs[1]
        for s in stores:
            s.close()


# --- SQLiteStore only --------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    """What one SQLiteStore wrote, the next one on the same file reads."""
    path = tmp_path / "store.sqlite3"
    first = SQLiteStore(path)
    first.apply([("users", "100", {"name": "A"}), ("settings", "CC_OFFER", False)])
    first.close()
    second = SQLiteStore(path)
    assert second.get("users", "100") == {"name": "A"}
    assert second.get("settings", "CC_OFFER") is False
    second.close()


def test_sqlite_durability_settings(tmp_path: Path) -> None:
    """The file is in WAL mode and the connection syncs fully, so writes are durable on return."""
    path = tmp_path / "store.sqlite3"
    store = SQLiteStore(path)
    db = store._db
    assert db is not None
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    """A new store file is readable by its owner only: it holds user data."""
    path = tmp_path / "store.sqlite3"
    SQLiteStore(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sqlite_missing_directory(tmp_path: Path) -> None:
    """A store in a directory that does not exist fails with StoreError naming the path."""
    path = tmp_path / "missing" / "store.sqlite3"
    with pytest.raises(StoreError, match=re.escape(str(path))):
        SQLiteStore(path)
    assert not path.parent.exists()


def test_sqlite_path_is_directory(tmp_path: Path) -> None:
    """A directory at the store path fails with StoreError naming the path."""
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        SQLiteStore(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"[settings]\nCC_OFFER = on\n" * 20, b"SQLite format 3\x00" + b"\xff" * 200, os.urandom(4096)],
)
def test_sqlite_refuses_foreign_file_untouched(tmp_path: Path, content: bytes) -> None:
    """A file that is not an SQLite database gives StoreError and is left exactly as it was."""
    path = tmp_path / "store.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        SQLiteStore(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite3"]


def test_sqlite_write_failure_is_store_error(tmp_path: Path) -> None:
    """A write SQLite cannot do raises StoreError and leaves the store usable and unchanged."""
    path = tmp_path / "store.sqlite3"
    store = SQLiteStore(path)
    store.put("users", "100", "a")
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    store._connection().execute("PRAGMA busy_timeout = 0")
    with pytest.raises(StoreError, match=re.escape(str(path))):
        store.put("users", "100", "b")
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.get("users", "100") == "a"
    store.put("users", "100", "c")
    assert store.get("users", "100") == "c"
    store.close()
