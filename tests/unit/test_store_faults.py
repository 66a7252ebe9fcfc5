"""Store faults: a store that is empty, foreign or not writable stops start-up with
one line; a value that is not JSON is reported with namespace and key and skipped;
writes a full disk refuses are held and written when space returns."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from appliance import tap
from appliance.directory import Directory, User
from appliance.holding import HoldingStore
from appliance.settings import Settings
from appliance.store import SQLiteStore, StoreError, StoreWriteRefused
from appliance.testing import MemoryStore
from tests.unit.test_config import shipped, write
from tests.unit.test_tap import run_twistd


def start_line(config: Path) -> str:
    """The SystemExit message of makeService for this config: must be one line."""
    options = tap.Options()
    options.parseOptions(["--config", str(config)])
    with pytest.raises(SystemExit) as caught:
        tap.makeService(options, reactor=MemoryReactorClock())
    message = str(caught.value.code)
    assert message.startswith("appliance: ") and "\n" not in message
    return message


def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "var" / "appliance.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_empty_store_file_stops_start_up(tmp_path: Path) -> None:
    """A zero-length store file is not taken for a new empty store."""
    store_file(tmp_path).write_bytes(b"")
    assert "is empty (0 bytes)" in start_line(write(tmp_path, shipped()))


def test_foreign_sqlite_database_stops_start_up(tmp_path: Path) -> None:
    """An SQLite file of another program is refused, and left as it was."""
    path = store_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    assert "is not an appliance store" in start_line(write(tmp_path, shipped()))
    assert path.read_bytes() == before


def test_foreign_file_stops_start_up(tmp_path: Path) -> None:
    """A file that is no database at all is refused too."""
    store_file(tmp_path).write_bytes(b"hello, this is a text file\n" * 100)
    assert "not a usable store database" in start_line(write(tmp_path, shipped()))


def test_store_of_an_earlier_version_is_adopted(tmp_path: Path) -> None:
    """A store with only the kv table and no application_id (made before the marker) opens."""
    path = store_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE kv (namespace TEXT, key TEXT, value TEXT, PRIMARY KEY (namespace, key))")
        db.execute("INSERT INTO kv VALUES ('settings', 'CC_TIMEOUT', '90')")
    store = SQLiteStore(path)
    try:
        assert store.get("settings", "CC_TIMEOUT") == 90
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] != 0


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A store on a file system that refuses writes (a read-only tmpfs as root, where
    file modes do not bind; a read-only file and directory otherwise)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        SQLiteStore(mount / "appliance.sqlite3").close()
        if as_root:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        else:
            (mount / "appliance.sqlite3").chmod(0o400)
            mount.chmod(0o500)
        yield mount / "appliance.sqlite3"
    finally:
        if as_root:
            subprocess.run(["umount", str(mount)], check=True)
        else:
            mount.chmod(0o700)


def test_read_only_store_stops_start_up(tmp_path: Path, read_only_store: Path) -> None:
    """A store that cannot be written stops makeService with one line, instead of
    starting and failing every login."""
    config = write(tmp_path, shipped(path=str(read_only_store)))
    assert "[store] path: " in start_line(config)


def test_twistd_exits_non_zero_with_one_line_for_an_empty_store(tmp_path: Path) -> None:
    """The real twistd: non-zero exit and one line on stderr."""
    store_file(tmp_path).write_bytes(b"")
    config = write(tmp_path, shipped())
    result = run_twistd(config)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is empty (0 bytes)" in lines[0], result.stderr


def put_raw(path: Path, namespace: str, key: str, text: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("REPLACE INTO kv VALUES (?, ?, ?)", (namespace, key, text))


def test_value_that_is_not_json_is_reported_and_skipped(tmp_path: Path) -> None:
    """A hand-edited value breaks neither reads nor pages: it is skipped, and reported
    once with its namespace and key."""
    path = store_file(tmp_path)
    store = SQLiteStore(path)
    Directory(store).put_users([User("100", "Anna"), User("200", "Ben")])
    put_raw(path, "users", "100", "{not json")
    put_raw(path, "settings", "CC_TIMEOUT", "sixty")
    directory = Directory(store)  # the directory reads the users once, at start
    try:
        assert [user.extension for user in directory.users()] == ["200"]
        assert directory.user("100") is None
        settings = Settings(store)
        assert settings.get("CC_TIMEOUT") == 60
        problems = store.unreadable.problems()
        assert [line.split(":")[0] for line in problems] == ["settings/CC_TIMEOUT", "users/100"]
        [line] = settings.stored_problems()
        assert line.startswith("settings/CC_TIMEOUT: stored value is invalid") and "60" in line
    finally:
        store.close()


def test_bad_setting_is_one_log_line_at_start_and_the_appliance_starts(tmp_path: Path) -> None:
    """A non-JSON or out-of-range settings value does not stop start-up; the service
    uses the default and says which key, and the admin page shows it."""
    path = store_file(tmp_path)
    SQLiteStore(path).close()
    put_raw(path, "settings", "CC_TIMEOUT", "{")
    put_raw(path, "settings", "CC_WAIT_TIME", "-5")
    service = tap.build(str(write(tmp_path, shipped())), MemoryReactorClock())
    try:
        assert service.settings.get("CC_TIMEOUT") == 60
        problems = service.settings.stored_problems()
        assert [line.split(":")[0] for line in problems] == ["settings/CC_TIMEOUT", "settings/CC_WAIT_TIME"]
        alerts = service.web.current_alerts()
        assert [alert.split(":")[0] for alert in alerts] == ["settings/CC_TIMEOUT", "settings/CC_WAIT_TIME"]
    finally:
        service.store.close()


class FullDisk(MemoryStore):
    """A memory store whose disk can be made full: writes fail like SQLite's SQLITE_FULL."""

    full = False

    def apply(self, changes: Iterable[tuple[str, str, Any]]) -> None:
        if self.full:
            raise StoreWriteRefused("writing store x failed: database or disk is full")
        super().apply(changes)


def test_full_disk_holds_writes_and_writes_them_later() -> None:
    """While the disk is full, writes are held in order and reads see them; when space
    returns the retry timer writes them all, and observers hear of them then."""
    disk, clock = FullDisk(), Clock()
    store = HoldingStore(disk, clock, retry=5.0)
    heard: list[str] = []
    store.subscribe(lambda change: heard.append(change.key))
    states: list[bool] = []
    store.on_holding(states.append)
    store.put("journal", "100", ["first"])
    disk.full = True
    store.put("journal", "100", ["first", "second"])
    store.put("outbox", "m1", {"state": "pending"})
    store.delete("journal", "gone")
    assert store.get("journal", "100") == ["first", "second"]
    assert dict(store.items("outbox")) == {"m1": {"state": "pending"}}
    assert disk.get("journal", "100") == ["first"] and store.holding == 3
    assert states == [True] and "changes kept in memory" in (store.problem() or "")
    clock.advance(5.0)  # still full: kept, retried later
    assert store.holding == 3
    disk.full = False
    clock.advance(5.0)
    assert store.holding == 0 and store.problem() is None and states == [True, False]
    assert disk.get("journal", "100") == ["first", "second"]
    assert disk.get("outbox", "m1") == {"state": "pending"}
    assert heard == ["100", "100", "m1"]


def test_pages_see_held_writes() -> None:
    """A page read while the disk is full shows held puts and hides held deletes."""
    disk, clock = FullDisk(), Clock()
    store = HoldingStore(disk, clock, retry=5.0)
    store.apply([("contact_index", f"t:{i}", i) for i in range(5)])
    disk.full = True
    store.delete("contact_index", "t:1")
    store.put("contact_index", "t:25", 25)
    assert store.page("contact_index", limit=3) == [("t:0", 0), ("t:2", 2), ("t:25", 25)]
    assert store.page("contact_index", after="t:25") == [("t:3", 3), ("t:4", 4)]


def test_writes_while_holding_stay_in_order() -> None:
    """A write made while others are held is held behind them, even if the disk could
    take it, so the last value written wins on disk as in memory."""
    disk, clock = FullDisk(), Clock()
    store = HoldingStore(disk, clock)
    disk.full = True
    store.put("journal", "100", ["a"])
    disk.full = False
    store.put("journal", "100", ["a", "b"])
    assert disk.get("journal", "100") is None
    clock.advance(5.0)
    assert disk.get("journal", "100") == ["a", "b"]


def test_other_store_errors_are_not_held() -> None:
    """A broken store (not a refused write) raises as before."""

    class Broken(MemoryStore):
        def apply(self, changes: Iterable[tuple[str, str, Any]]) -> None:
            raise StoreError("store x is closed")

    store = HoldingStore(Broken(), Clock())
    with pytest.raises(StoreError, match="closed"):
        store.put("journal", "1", 1)
    assert store.holding == 0


def test_sqlite_full_disk_is_a_refused_write(tmp_path: Path) -> None:
    """SQLite's 'database or disk is full' comes out as a retryable StoreWriteRefused."""
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a small tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        store = SQLiteStore(mount / "appliance.sqlite3")
        with pytest.raises(StoreWriteRefused, match="full"):
            for number in range(2000):
                store.put("journal", str(number), "x" * 1000)
        store.close()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
