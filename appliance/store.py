"""The one durable key-value store for settings and feature state.

Every feature keeps its state here, in its own namespace, as JSON values.  A
change is durable once the call that made it returns, so a crash or power cut
never loses something the appliance already acted upon (a callback request
that was confirmed to the caller, a mail marked as sent).  The design follows
Python 3.13's ``dbm.sqlite3``: one SQLite file in WAL mode with
``synchronous=FULL`` and one transaction per change.

Services learn about saved changes through ``subscribe`` instead of polling,
so a setting saved on the web page takes effect without a restart.
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

from twisted.logger import Logger
from zope.interface import Interface, implementer

from appliance.observers import Observers

__all__ = [
    "DELETE",
    "Change",
    "IKeyValueStore",
    "JSONValue",
    "Observer",
    "SQLiteStore",
    "StoreChange",
    "StoreError",
    "moved",
]

log = Logger()

#: Anything ``json.dumps`` accepts (checked at run time); what comes back is
#: what ``json.loads`` returns, hence ``Any`` like the ``json`` module itself.
JSONValue: TypeAlias = Any

StoreChange: TypeAlias = "tuple[str, str, JSONValue]"
"""One change of `IKeyValueStore.apply`: namespace, key, value (or ``DELETE``)."""


class _Sentinel(enum.Enum):
    DELETE = "DELETE"

    def __repr__(self) -> str:
        return self.value


#: In ``apply`` this value deletes the key; in a ``Change`` it means "absent".
DELETE = _Sentinel.DELETE


class StoreError(Exception):
    """The store cannot be opened or used; the message names the file.

    ``retryable``: a write the disk refused (full, I/O error, read-only now)
    that may succeed later, see `appliance.holding`.
    """

    retryable = False


class StoreWriteRefused(StoreError):
    """The database is fine but the disk did not take the write (yet)."""

    retryable = True


#: SQLite primary result codes of a write that may succeed later.
_RETRYABLE = {5: "SQLITE_BUSY", 8: "SQLITE_READONLY", 10: "SQLITE_IOERR", 13: "SQLITE_FULL"}

APPLICATION_ID = 0x41504C31
"""``PRAGMA application_id`` of an appliance store ("APL1"): a file of another program is refused."""


class Change(NamedTuple):
    """One committed change of one key; ``old``/``new`` are ``DELETE`` when the key did
    not exist before/after.
    """

    namespace: str
    key: str
    old: JSONValue
    new: JSONValue


Observer: TypeAlias = Callable[[Change], object]


class IKeyValueStore(Interface):
    """Namespaced durable storage of JSON values."""

    def get(namespace: str, key: str, default: JSONValue = None) -> JSONValue:  # noqa: N805
        """Return a fresh copy of the stored value, or ``default``."""

    def put(namespace: str, key: str, value: JSONValue) -> None:  # noqa: N805
        """Store ``value`` durably; ``TypeError``/``ValueError`` if it is not JSON,
        before anything is written.
        """

    def delete(namespace: str, key: str) -> None:  # noqa: N805
        """Remove the key; a missing key is not an error."""

    def items(namespace: str) -> list[tuple[str, JSONValue]]:  # noqa: N805
        """All entries of the namespace, sorted by key."""

    def page(namespace: str, after: str = "", limit: int = 100) -> list[tuple[str, JSONValue]]:  # noqa: N805
        """At most ``limit`` entries whose key sorts after ``after``, sorted by key: for
        paging and prefix searches in large namespaces without reading all of them.
        """

    def apply(changes: Iterable[tuple[str, str, JSONValue]]) -> None:  # noqa: N805
        """Store ``(namespace, key, value)`` changes atomically: all or nothing. A value
        of ``DELETE`` removes the key; the last change of a key wins.
        """

    def subscribe(observer: Observer) -> Callable[[], None]:  # noqa: N805
        """Call ``observer`` with a ``Change`` for each key whose stored value changed,
        after the commit.  Returns a function that unsubscribes.
        """

    def close() -> None:
        """Release the file; later use raises ``StoreError``."""


# Shared by both implementations so they cannot disagree about what a valid
# name or value is.


class InvalidName(ValueError):
    """A namespace or key the store cannot hold (empty, NUL, not Unicode)."""


def check_name(what: str, name: object) -> str:
    """Reject names that SQLite would store differently from how they compare in Python
    (NUL, lone surrogates), so both implementations agree.
    """
    if not isinstance(name, str):
        raise TypeError(f"store {what} must be a str, not {name!r}")
    if not name:
        raise InvalidName(f"store {what} must not be empty")
    if "\x00" in name:
        raise InvalidName(f"store {what} must not contain NUL: {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"store {what} is not valid Unicode: {name!r}") from None
    return name


def encode_value(namespace: str, key: str, value: JSONValue) -> str:
    """Turn ``value`` into the JSON text that is stored, or raise before any write
    happens.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except TypeError as e:
        raise TypeError(f"value for {namespace}/{key} is not JSON-serialisable: {e}") from None
    except ValueError as e:
        raise ValueError(f"value for {namespace}/{key} cannot be stored as JSON: {e}") from None


def decode_value(text: str) -> JSONValue:
    """Give every reader its own copy, so mutating it cannot change the store."""
    return json.loads(text)


class Unreadable:
    """Stored values that are not JSON (changed by hand, a bad disk): each is
    reported once, with namespace and key, and otherwise treated as absent so one
    bad value cannot stop start-up or make pages fail."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], str] = {}

    def decode(self, namespace: str, key: str, text: str) -> tuple[bool, JSONValue]:
        try:
            return True, decode_value(text)
        except ValueError as error:
            if (namespace, key) not in self.found:
                self.found[namespace, key] = f"not valid JSON ({error})"
                log.error(
                    "store value {namespace}/{key} is not valid JSON and is ignored: {text!r}",
                    namespace=namespace,
                    key=key,
                    text=text[:80],
                )
            return False, None

    def problems(self) -> list[str]:
        """One line per unreadable value, for the admin page."""
        return [f"{ns}/{key}: {why}" for (ns, key), why in sorted(self.found.items())]


def normalize_changes(
    changes: Iterable[tuple[str, str, JSONValue]],
) -> dict[tuple[str, str], str | None]:
    """Validate a whole batch up front: the JSON text per key (``None`` deletes), last
    change of a key winning, in order of first appearance.
    """
    result: dict[tuple[str, str], str | None] = {}
    for namespace, key, value in changes:
        check_name("namespace", namespace)
        check_name("key", key)
        result[namespace, key] = None if value is DELETE else encode_value(namespace, key, value)
    return result


def moved(store: IKeyValueStore, namespace: str, old: str, new: str | None) -> list[StoreChange]:
    """The `IKeyValueStore.apply` changes that carry ``old``'s value to key ``new``
    (whatever ``new`` held goes), or with ``new`` None remove it: records that belong to
    a number follow the number when it changes, in the same transaction as the change."""
    if new == old:
        return []
    if new is None:
        return [(namespace, old, DELETE)]
    value = store.get(namespace, old)
    return [(namespace, new, DELETE if value is None else value), (namespace, old, DELETE)]


class ChangeObservers(Observers[[Change]]):
    """The store's observers, told of each key a write changed, after the write
    (a failing observer is logged, see `appliance.observers`)."""

    def __init__(self) -> None:
        super().__init__("store", lambda change: {"namespace": change.namespace, "key": change.key})

    def notify_write(
        self,
        old: dict[tuple[str, str], str | None],
        new: dict[tuple[str, str], str | None],
    ) -> None:
        """Announce each key in ``new`` whose JSON text differs from ``old``."""
        for (namespace, key), text in new.items():
            before = old.get((namespace, key))
            if before == text:
                continue
            try:
                was = DELETE if before is None else decode_value(before)
            except ValueError:
                was = DELETE  # an unreadable value was as good as absent
            self.notify(Change(namespace, key, was, DELETE if text is None else decode_value(text)))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""


def _uri(path: Path) -> str:
    # A URI keeps names like ":memory:" or "file:x" from meaning something
    # special to SQLite (as dbm.sqlite3 does).
    return path.absolute().as_uri() + "?mode=rwc"


@implementer(IKeyValueStore)
class SQLiteStore:
    """The real store: one SQLite file, durable on return of every change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._observers = ChangeObservers()
        self.unreadable = Unreadable()
        self._created = False
        self._create_file()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                _uri(self.path), uri=True, isolation_level=None, timeout=5.0
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from None
        try:
            self._prepare()
        except (sqlite3.Error, StoreError) as e:
            self._db.close()
            self._db = None
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"{self.path} is not a usable store database: {e}") from None

    def _create_file(self) -> None:
        # Created here rather than by SQLite so that the file (and the WAL
        # files, which SQLite gives the same mode) is private: the store
        # holds user data.
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open store {self.path}: directory {self.path.parent} does not exist")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if self.path.is_file() and self.path.stat().st_size == 0:
                # SQLite would take it for a new database and start afresh.
                raise StoreError(
                    f"store {self.path} is empty (0 bytes): restore it from a backup, "
                    "or remove it to start with an empty store"
                ) from None
            return
        except OSError as e:
            raise StoreError(f"cannot create store {self.path}: {e}") from None
        os.close(fd)
        self._created = True

    def _prepare(self) -> None:
        db = self._connection()
        # Reads the header first, so a foreign file fails here untouched.
        ok = db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise StoreError(f"store {self.path} is damaged: {ok}")
        self._check_ours(db)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            # 16 MB of page cache (SQLite's default is 2 MB): with 100,000 contacts the
            # pages a call reads (settings, forwards, index nodes) stay in memory, so the
            # cost per call does not grow with the address book (bench/directory.py).
            db.execute("PRAGMA cache_size = -16000")
            # A write at start: a store that cannot be written stops start-up
            # instead of failing every login later.
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"store {self.path} is not writable: {e}") from None

    def _check_ours(self, db: sqlite3.Connection) -> None:
        """A database of another program is refused (the stores before application_id
        had only the ``kv`` table, and are adopted)."""
        if self._created:
            return
        found = db.execute("PRAGMA application_id").fetchone()[0]
        if found == APPLICATION_ID:
            return
        tables = sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if found == 0 and tables in ([], ["kv"]):
            return
        raise StoreError(
            f"{self.path} is not an appliance store (application_id {found:#x}, tables {', '.join(tables)})"
        )

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"store {self.path} is closed")
        return self._db

    def _query(self, sql: str, params: tuple[str | int, ...]) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"reading store {self.path} failed: {e}") from None

    def get(self, namespace: str, key: str, default: JSONValue = None) -> JSONValue:
        check_name("namespace", namespace)
        check_name("key", key)
        rows = self._query("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        if not rows:
            return default
        ok, value = self.unreadable.decode(namespace, key, rows[0][0])
        return value if ok else default

    def put(self, namespace: str, key: str, value: JSONValue) -> None:
        self.apply([(namespace, key, value)])

    def delete(self, namespace: str, key: str) -> None:
        self.apply([(namespace, key, DELETE)])

    def items(self, namespace: str) -> list[tuple[str, JSONValue]]:
        check_name("namespace", namespace)
        # BINARY collation on UTF-8 is code point order, the same as sorted().
        rows = self._query(
            "SELECT key, value FROM kv WHERE namespace = ? ORDER BY key",
            (namespace,),
        )
        decoded = [(key, self.unreadable.decode(namespace, key, text)) for key, text in rows]
        return [(key, value) for key, (ok, value) in decoded if ok]

    def page(self, namespace: str, after: str = "", limit: int = 100) -> list[tuple[str, JSONValue]]:
        check_name("namespace", namespace)
        rows = self._query(
            "SELECT key, value FROM kv WHERE namespace = ? AND key > ? ORDER BY key LIMIT ?",
            (namespace, after, max(0, int(limit))),
        )
        decoded = [(key, self.unreadable.decode(namespace, key, text)) for key, text in rows]
        return [(key, value) for key, (ok, value) in decoded if ok]

    def apply(self, changes: Iterable[tuple[str, str, JSONValue]]) -> None:
        new = normalize_changes(changes)
        db = self._connection()
        if not new:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                old = self._write(db, new)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            refused = StoreWriteRefused if code in _RETRYABLE else StoreError
            raise refused(f"writing store {self.path} failed: {e}") from None
        self._observers.notify_write(old, new)

    @staticmethod
    def _write(
        db: sqlite3.Connection, new: dict[tuple[str, str], str | None]
    ) -> dict[tuple[str, str], str | None]:
        """Write ``new`` inside the open transaction; return the previous texts."""
        old: dict[tuple[str, str], str | None] = {}
        for (namespace, key), text in new.items():
            row = db.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchone()
            old[namespace, key] = row[0] if row else None
            if text is None:
                db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
            else:
                db.execute(
                    "REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
                    (namespace, key, text),
                )
        return old

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        return self._observers.subscribe(observer)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
