"""Who may use the web page: password credentials, sessions and login throttling.

Everything durable lives in the appliance's store, so a restart logs nobody
out: credentials in namespace ``credentials`` (key: the login name, which is
``admin`` or a user's extension) and sessions in ``sessions``.  A session is
stored under the SHA-256 of its id, so the store file never holds a cookie
that would let its reader in.  Time always comes from the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, maybeDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from appliance.metering import NO_METRICS, IMetrics
from appliance.store import DELETE, IKeyValueStore

log = Logger()

CREDENTIALS = "credentials"
SESSIONS = "sessions"
ADMIN = "admin"

Role: TypeAlias = Literal["admin", "user"]

IDLE_TIMEOUT = 8 * 3600.0
"""A session unused for this many seconds has expired."""
MAX_AGE = 7 * 24 * 3600.0
"""No session lives longer than this, however busy."""
TOUCH_INTERVAL = 60.0
"""Record activity at most this often, to spare the store a write per request."""

MIN_PASSWORD_LENGTH = 8


class PasswordProblem(ValueError):
    """A password that cannot be set, and why."""


def check_new_password(password: str) -> str:
    """The rule for passwords chosen on the page or with ``appliance.web.passwd``.

    Only the demo lab sets shorter ones (a user's extension), directly.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordProblem(f"at least {MIN_PASSWORD_LENGTH} characters")
    return password


def role_of(login: str) -> Role:
    """The admin account is ``admin``; every other login is a user's extension."""
    return "admin" if login == ADMIN else "user"


Runner: TypeAlias = Callable[..., "Deferred[Any]"]
"""``run(function, *args)``: where the slow password hashing runs."""


def synchronously(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run at once (tests, tools); the web app on a real reactor uses `in_threads`."""
    return maybeDeferred(function, *args)


def in_threads(reactor: IReactorThreads) -> Runner:
    """Hash in the reactor's thread pool, so a login never stalls call handling."""

    def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


HASHING_THREADS = 2
"""Password hashes computed at once: argon2 takes ~50 ms and 64 MiB each."""
HASHING_QUEUE = 16
"""Hashes that may wait for a thread; more are refused at once (`HashingBusy`)."""


class HashingBusy(Exception):
    """Too many password checks are waiting; try again later."""


def bounded(run: Runner, threads: int = HASHING_THREADS, queue: int = HASHING_QUEUE) -> Runner:
    """At most ``threads`` hashes at once and ``queue`` waiting, so a login flood
    neither exhausts memory nor the reactor's shared thread pool."""
    semaphore = DeferredSemaphore(threads)

    def limited(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if len(semaphore.waiting) >= queue:
            return fail(HashingBusy("too many password checks waiting"))
        return semaphore.run(run, function, *args)

    return limited


class Credentials:
    """Argon2 password hashes over the store.

    The store is only touched in the caller's thread; `verify` and
    `change_password` hand just the hashing to ``run``.
    """

    def __init__(
        self, store: IKeyValueStore, hasher: PasswordHasher | None = None, run: Runner = synchronously
    ) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._run = run
        # Verified against when the login is unknown, so a wrong name costs
        # the same time as a wrong password and does not reveal itself.
        # Made on first use: start-up stays fast.
        self._dummy: str | None = None

    def set_password(self, login: str, password: str) -> None:
        """Store a new password now (blocking: for tools and set-up)."""
        self._store.put(CREDENTIALS, login, {"hash": self._hasher.hash(self._usable(password))})

    def change_password(self, login: str, password: str) -> Deferred[None]:
        """Store a new password once ``run`` has hashed it."""
        hashing = self._run(self._hasher.hash, self._usable(password))
        return hashing.addCallback(lambda hashed: self._store.put(CREDENTIALS, login, {"hash": hashed}))

    @staticmethod
    def _usable(password: str) -> str:
        if not password:
            raise PasswordProblem("must not be empty")
        return password

    def remove(self, login: str) -> None:
        self._store.delete(CREDENTIALS, login)

    def has_password(self, login: str) -> bool:
        return self._stored_hash(login) is not None

    def _stored_hash(self, login: str) -> str | None:
        if not login or "\x00" in login:
            return None
        record = self._store.get(CREDENTIALS, login)
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            return str(record["hash"])
        return None

    def _matches(self, stored: str | None, password: str) -> bool:
        """Always one verification, so an unknown login takes as long as a known one."""
        if stored is None and self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_hex(16))
        try:
            self._hasher.verify(stored or self._dummy or "", password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None

    def check(self, login: str, password: str) -> bool:
        """True if ``password`` is ``login``'s (blocking: for tools and tests)."""
        stored = self._stored_hash(login)
        if not self._matches(stored, password):
            return False
        if stored is not None and self._hasher.check_needs_rehash(stored):
            self.set_password(login, password)
        return True

    def verify(self, login: str, password: str) -> Deferred[bool]:
        """`check`, with the hashing handed to ``run``."""
        stored = self._stored_hash(login)

        def upgrade(matches: bool) -> bool | Deferred[bool]:
            if matches and stored is not None and self._hasher.check_needs_rehash(stored):
                return self.change_password(login, password).addCallback(lambda _: True)
            return matches

        return self._run(self._matches, stored, password).addCallback(upgrade)


@dataclass(frozen=True)
class Session:
    """A logged-in browser: who, and the token its forms must carry."""

    id: str
    login: str
    role: Role
    csrf: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class Sessions:
    """Sessions in the store; ids are 256 random bits, expiry by the injected clock."""

    def __init__(self, store: IKeyValueStore, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock

    def create(self, login: str) -> Session:
        self.purge()
        session = Session(secrets.token_urlsafe(32), login, role_of(login), secrets.token_urlsafe(32))
        now = self._clock.seconds()
        self._store.put(
            SESSIONS,
            _digest(session.id),
            {"login": login, "csrf": session.csrf, "created": now, "seen": now},
        )
        return session

    def find(self, session_id: str) -> Session | None:
        """The live session with this id, recording the activity; expired ones are removed."""
        if not session_id or len(session_id) > 128:
            return None
        key = _digest(session_id)
        record = self._store.get(SESSIONS, key)
        if not isinstance(record, dict):
            return None
        now = self._clock.seconds()
        try:
            login, csrf = str(record["login"]), str(record["csrf"])
            created, seen = float(record["created"]), float(record["seen"])
        except (KeyError, TypeError, ValueError):
            self._store.delete(SESSIONS, key)
            return None
        if self._expired(now, created, seen):
            self._store.delete(SESSIONS, key)
            return None
        if now - seen >= TOUCH_INTERVAL:
            self._store.put(SESSIONS, key, {**record, "seen": now})
        return Session(session_id, login, role_of(login), csrf)

    @staticmethod
    def _expired(now: float, created: float, seen: float) -> bool:
        return now - seen > IDLE_TIMEOUT or now - created > MAX_AGE

    def end(self, session_id: str) -> None:
        self._store.delete(SESSIONS, _digest(session_id))

    def end_others(self, login: str, keep: str) -> None:
        """Log ``login`` out everywhere but the session ``keep`` (password changed)."""
        kept = _digest(keep)
        self._store.apply(
            (SESSIONS, key, DELETE)
            for key, record in self._store.items(SESSIONS)
            if key != kept and isinstance(record, dict) and record.get("login") == login
        )

    def end_all(self, login: str) -> None:
        """Log ``login`` out everywhere (account deleted, password changed)."""
        self._store.apply(
            (SESSIONS, key, DELETE)
            for key, record in self._store.items(SESSIONS)
            if isinstance(record, dict) and record.get("login") == login
        )

    def purge(self) -> None:
        """Forget expired sessions, so the namespace does not grow for ever."""
        now = self._clock.seconds()
        stale = []
        for key, record in self._store.items(SESSIONS):
            try:
                if not self._expired(now, float(record["created"]), float(record["seen"])):
                    continue
            except (KeyError, TypeError, ValueError):
                pass
            stale.append(key)
        if stale:
            self._store.apply((SESSIONS, key, DELETE) for key in stale)


def same_token(expected: str, given: str) -> bool:
    """Compare secrets in constant time."""
    return bool(expected) and hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


FAILURES_BEFORE_LOCKOUT = 5
"""Per login name and address: the attacker's own guesses lock only the attacker."""
ADDRESS_FAILURES_BEFORE_LOCKOUT = 20
"""Per address over all login names: an office behind one NAT address shares it."""
FIRST_LOCKOUT = 30.0
LONGEST_LOCKOUT = 3600.0
FORGET_AFTER = 24 * 3600.0


@dataclass
class _Record:
    failures: int
    last: float
    locked_until: float


class LoginThrottle:
    """Exponential lockout after repeated failures, per (login, address) and per address.

    An attempt counts when it starts, before its password is checked, and at
    most one check per (login, address) is in flight, so parallel guesses
    cannot slip past the count.  After `FAILURES_BEFORE_LOCKOUT` attempts a
    (login, address) pair is locked for `FIRST_LOCKOUT` seconds, doubling
    with every further attempt up to `LONGEST_LOCKOUT`; an address alone
    after `ADDRESS_FAILURES_BEFORE_LOCKOUT`.  Nobody can lock a user out
    from another address.  Kept in memory: a restart forgives, which only
    helps the admin who locked themselves out.
    """

    def __init__(self, clock: IReactorTime, metrics: IMetrics = NO_METRICS) -> None:
        self._clock = clock
        self.metrics = metrics
        self._records: dict[tuple[str, ...], _Record] = {}
        self._in_flight: set[tuple[str, str]] = set()

    @staticmethod
    def _keys(login: str, address: str) -> list[tuple[tuple[str, ...], int]]:
        return [
            (("pair", login.lower(), address), FAILURES_BEFORE_LOCKOUT),
            (("address", address), ADDRESS_FAILURES_BEFORE_LOCKOUT),
        ]

    def locked(self, login: str, address: str) -> bool:
        now = self._clock.seconds()
        return any(
            (record := self._records.get(key)) is not None and now < record.locked_until
            for key, _ in self._keys(login, address)
        )

    def begin(self, login: str, address: str) -> bool:
        """Count an attempt before its check; False (refuse it unchecked) while the
        pair or address is locked or a check for the pair is still running."""
        pair = (login.lower(), address)
        if pair in self._in_flight or self.locked(login, address):
            return False
        now = self._clock.seconds()
        self._forget_old(now)
        for key, allowed in self._keys(login, address):
            record = self._records.setdefault(key, _Record(0, now, 0.0))
            record.failures += 1
            record.last = now
            extra = record.failures - allowed
            if extra >= 0:
                record.locked_until = now + min(FIRST_LOCKOUT * 2 ** min(extra, 20), LONGEST_LOCKOUT)
        self._in_flight.add(pair)
        return True

    def finish(self, login: str, address: str, succeeded: bool) -> None:
        """The check that `begin` allowed is over."""
        self._in_flight.discard((login.lower(), address))
        if not succeeded:
            self.metrics.login_failed()
            log.warn("web login failed for {login!r} from {address}", login=login, address=address)
            return
        # The pair is forgiven; the address only loses this attempt, so an
        # address guessing at other logins stays counted.
        self._records.pop(("pair", login.lower(), address), None)
        record = self._records.get(("address", address))
        if record is not None:
            record.failures = max(0, record.failures - 1)
            if record.failures < ADDRESS_FAILURES_BEFORE_LOCKOUT:
                record.locked_until = 0.0

    def withdraw(self, login: str, address: str) -> None:
        """The check `begin` allowed never ran (server busy): it does not count."""
        self._in_flight.discard((login.lower(), address))
        for key, allowed in self._keys(login, address):
            record = self._records.get(key)
            if record is not None:
                record.failures = max(0, record.failures - 1)
                if record.failures < allowed:
                    record.locked_until = 0.0

    def failed(self, login: str, address: str) -> None:
        """One failed attempt (tools and tests)."""
        if self.begin(login, address):
            self.finish(login, address, succeeded=False)

    def _forget_old(self, now: float) -> None:
        for key in [key for key, record in self._records.items() if now - record.last > FORGET_AFTER]:
            del self._records[key]
