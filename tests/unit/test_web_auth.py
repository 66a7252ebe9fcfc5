"""Credentials, sessions, throttling, language choice and the passwd command, without HTTP."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from appliance.directory import Directory, User
from appliance.store import SQLiteStore
from appliance.testing import MemoryStore
from appliance.web import passwd
from appliance.web.auth import (
    ADDRESS_FAILURES_BEFORE_LOCKOUT,
    FAILURES_BEFORE_LOCKOUT,
    FORGET_AFTER,
    IDLE_TIMEOUT,
    MAX_AGE,
    Credentials,
    HashingBusy,
    LoginThrottle,
    Sessions,
    bounded,
)
from appliance.web.demo import DEMO_EXTENSIONS, seed
from appliance.web.i18n import from_accept_language
from tests.unit.test_config import shipped, write

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_passwords_are_stored_as_argon2_hashes() -> None:
    """The store holds an argon2id hash, never the password."""
    store = MemoryStore()
    Credentials(store, FAST).set_password("admin", "s3cret-pass")
    record = store.get("credentials", "admin")
    assert record["hash"].startswith("$argon2id$") and "s3cret-pass" not in record["hash"]
    assert Credentials(store, FAST).check("admin", "s3cret-pass")
    assert not Credentials(store, FAST).check("admin", "wrong")
    assert not Credentials(store, FAST).check("nobody", "s3cret-pass")


def test_verify_hands_the_hashing_to_the_runner() -> None:
    """The web app's verify and change_password wait for the runner (the thread pool in production)."""
    queued: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def later(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        queued.append((function, args, Deferred()))
        return queued[-1][2]

    def run_queued() -> None:
        function, args, deferred = queued.pop(0)
        deferred.callback(function(*args))

    store = MemoryStore()
    credentials = Credentials(store, FAST, later)
    changed = credentials.change_password("admin", "s3cret-pass")
    assert not changed.called and store.items("credentials") == []
    run_queued()
    assert changed.called and credentials.has_password("admin")
    results: list[bool] = []
    credentials.verify("admin", "s3cret-pass").addCallback(results.append)
    credentials.verify("admin", "wrong").addCallback(results.append)
    assert results == [] and len(queued) == 2
    run_queued()
    run_queued()
    assert results == [True, False]


def test_weak_hashes_are_upgraded_on_login() -> None:
    """A hash made with weaker parameters is replaced after a successful check."""
    store = MemoryStore()
    Credentials(store, FAST).set_password("admin", "s3cret-pass")
    old = store.get("credentials", "admin")["hash"]
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert Credentials(store, stronger).check("admin", "s3cret-pass")
    new = store.get("credentials", "admin")["hash"]
    assert new != old and "t=2" in new


def test_sessions_live_by_idle_time_and_absolute_age() -> None:
    """Idle sessions end after IDLE_TIMEOUT; busy ones still end after MAX_AGE."""
    store, clock = MemoryStore(), Clock()
    sessions = Sessions(store, clock)
    idle = sessions.create("admin")
    busy = sessions.create("100")
    clock.advance(IDLE_TIMEOUT - 1)
    assert sessions.find(busy.id) is not None
    clock.advance(2)
    assert sessions.find(idle.id) is None
    while clock.seconds() + IDLE_TIMEOUT / 2 < MAX_AGE:
        clock.advance(IDLE_TIMEOUT / 2)
        assert sessions.find(busy.id) == busy
    clock.advance(IDLE_TIMEOUT / 2)
    assert sessions.find(busy.id) is None


def test_expired_sessions_are_purged_on_login() -> None:
    """Creating a session removes expired ones from the store."""
    store, clock = MemoryStore(), Clock()
    sessions = Sessions(store, clock)
    sessions.create("admin")
    clock.advance(IDLE_TIMEOUT + 1)
    sessions.create("100")
    assert [record["login"] for _, record in store.items("sessions")] == ["100"]


def test_end_all_logs_one_login_out_everywhere() -> None:
    """end_all removes every session of that login and no other."""
    store, clock = MemoryStore(), Clock()
    sessions = Sessions(store, clock)
    first, second, other = sessions.create("100"), sessions.create("100"), sessions.create("200")
    sessions.end_all("100")
    assert sessions.find(first.id) is None and sessions.find(second.id) is None
    assert sessions.find(other.id) == other


def test_throttle_forgets_old_failures() -> None:
    """Failures older than FORGET_AFTER no longer count towards a lockout."""
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(FAILURES_BEFORE_LOCKOUT - 1):
        throttle.failed("admin", "192.0.2.1")
    clock.advance(FORGET_AFTER + 1)
    throttle.failed("admin", "192.0.2.1")
    assert not throttle.locked("admin", "192.0.2.1")


def test_success_clears_the_pair_but_not_the_address() -> None:
    """A right password forgives its (login, address) and its own attempt; the address
    keeps its guesses at other logins and locks every login once they reach the limit."""
    throttle = LoginThrottle(Clock())
    for number in range(ADDRESS_FAILURES_BEFORE_LOCKOUT - 2):
        throttle.failed(f"3{number:02}", "192.0.2.1")
    for _ in range(FAILURES_BEFORE_LOCKOUT - 1):
        throttle.failed("admin", "192.0.2.9")
    assert throttle.begin("admin", "192.0.2.9")
    throttle.finish("admin", "192.0.2.9", succeeded=True)
    assert throttle.begin("admin", "192.0.2.9")  # the pair was forgiven
    throttle.finish("admin", "192.0.2.9", succeeded=True)
    throttle.failed("admin", "192.0.2.1")
    assert not throttle.locked("200", "192.0.2.1")
    throttle.failed("admin", "192.0.2.1")
    assert throttle.locked("200", "192.0.2.1")
    assert not throttle.locked("200", "192.0.2.2")


def test_attempt_counts_before_the_check_and_one_at_a_time() -> None:
    """begin counts the attempt at once; a second begin for the same (login, address)
    while the first check runs is refused, and after FAILURES_BEFORE_LOCKOUT attempts
    no further check starts, even the right one."""
    throttle = LoginThrottle(Clock())
    assert throttle.begin("admin", "192.0.2.1")
    assert not throttle.begin("admin", "192.0.2.1")  # in flight
    assert throttle.begin("admin", "192.0.2.9")  # another address is another pair
    throttle.finish("admin", "192.0.2.1", succeeded=False)
    started = 1
    while throttle.begin("admin", "192.0.2.1"):
        started += 1
        throttle.finish("admin", "192.0.2.1", succeeded=False)
        assert started <= 10
    assert started == FAILURES_BEFORE_LOCKOUT


def test_lockout_is_per_login_and_address() -> None:
    """Guesses at admin from one address do not lock admin out at another address."""
    throttle = LoginThrottle(Clock())
    for _ in range(FAILURES_BEFORE_LOCKOUT):
        throttle.failed("admin", "203.0.113.7")
    assert throttle.locked("admin", "203.0.113.7")
    assert not throttle.locked("admin", "192.0.2.1")
    assert throttle.begin("admin", "192.0.2.1")


def test_withdrawn_attempt_does_not_count() -> None:
    """An attempt whose check never ran (hashing busy) is taken back."""
    throttle = LoginThrottle(Clock())
    for _ in range(FAILURES_BEFORE_LOCKOUT - 1):
        throttle.failed("admin", "192.0.2.1")
    assert throttle.begin("admin", "192.0.2.1")
    throttle.withdraw("admin", "192.0.2.1")
    assert not throttle.locked("admin", "192.0.2.1")


def test_bounded_hashing_refuses_when_the_queue_is_full() -> None:
    """At most `threads` hashes run and `queue` wait; one more fails with HashingBusy."""
    started: list[Deferred[Any]] = []

    def run(function: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        started.append(d)
        return d

    limited = bounded(run, threads=2, queue=3)
    results = [limited(print) for _ in range(6)]
    assert len(started) == 2
    assert isinstance(results[5].result.value, HashingBusy)  # type: ignore[attr-defined]
    results[5].addErrback(lambda _: None)
    started[0].callback(True)
    assert len(started) == 3


def test_end_others_keeps_the_current_session() -> None:
    """end_others logs a login out everywhere but the given session."""
    store, clock = MemoryStore(), Clock()
    sessions = Sessions(store, clock)
    mine, theirs, other = sessions.create("100"), sessions.create("100"), sessions.create("200")
    sessions.end_others("100", mine.id)
    assert sessions.find(mine.id) == mine and sessions.find(other.id) == other
    assert sessions.find(theirs.id) is None


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5,de;q=0.7", "de"),
        ("fr", "en"),
        ("de;q=0, en", "en"),
        ("", "en"),
        ("garbage;q=x", "en"),
    ],
)
def test_language_from_accept_language(header: str, language: str) -> None:
    """The first supported language by quality wins, else the default."""
    assert from_accept_language(header, "en") == language


def _store_for(tmp_path: Path) -> tuple[Path, Path]:
    config = write(tmp_path, shipped())
    store_path = tmp_path / "var" / "appliance.sqlite3"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    return config, store_path


def test_passwd_sets_the_admin_password_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m appliance.web.passwd admin`` stores a hash the web app accepts."""
    config, store_path = _store_for(tmp_path)
    assert passwd.main(["--config", str(config), "admin"], stdin=io.StringIO("first-admin-pw\n")) == 0
    assert "password of admin set" in capsys.readouterr().out
    store = SQLiteStore(store_path)
    try:
        assert Credentials(store).check("admin", "first-admin-pw")
    finally:
        store.close()


def test_passwd_refuses_unknown_users_and_short_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only admin or a directory user, and only passwords of the minimum length."""
    config, store_path = _store_for(tmp_path)
    assert passwd.main(["--config", str(config), "555"], stdin=io.StringIO("long-enough-pw\n")) == 1
    assert "nor the extension of a user" in capsys.readouterr().err
    assert passwd.main(["--config", str(config), "admin"], stdin=io.StringIO("short\n")) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    store = SQLiteStore(store_path)
    try:
        assert store.items("credentials") == []
    finally:
        store.close()


def test_demo_seed_gives_known_logins_and_keeps_changes() -> None:
    """The demo lab gets admin/admin and extension/extension, without overwriting edits."""
    store = MemoryStore()
    directory = Directory(store)
    directory.put_user(User("100", "Renamed", language="en"))
    seed(store, FAST)
    credentials = Credentials(store, FAST)
    assert credentials.check("admin", "admin")
    assert all(credentials.check(extension, extension) for extension in ("100", "209", "309"))
    assert len(directory.users()) == len(DEMO_EXTENSIONS)
    assert directory.user("100") == User("100", "Renamed", language="en")
    credentials.set_password("admin", "changed-later")
    seed(store, FAST)
    assert credentials.check("admin", "changed-later")
