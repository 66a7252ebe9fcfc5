"""The appliance's holiday calendar from an iCalendar URL (e.g. the public
holidays a calendar service publishes), for schedules that follow it.

The admin sets HOLIDAY_ICAL_URL (http or https) and how often it is fetched
(HOLIDAY_ICAL_REFRESH minutes); the admin page can also fetch it at once.  A
fetch is bounded in size (`MAX_ICAL`) and time (`FETCH_TIMEOUT`) and parsed
with the same `HolidayCalendar` as an uploaded .ics.  The last good copy is
kept in the store (namespace ``holiday_calendar``): when the URL fails or
answers something that is no calendar, schedules keep following that copy
and the page shows the error beside the time of the last good fetch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PartialDownloadError, ResponseDone
from twisted.web.http import PotentialDataLoss

from appliance import settings as keys
from appliance.forwarding.schedule import MAX_ICAL, HolidayCalendar, ScheduleError
from appliance.settings import Settings
from appliance.store import Change, IKeyValueStore

log = Logger()

NAMESPACE = "holiday_calendar"
KEY = "shared"
FETCH_TIMEOUT = 30.0
"""Seconds for one whole fetch: connect, answer and body."""
RETRY_FAILED_SECONDS = 300.0
"""A failed fetch is tried again this soon, or at the next refresh if that is sooner."""

Fetch = Callable[[str], "Deferred[bytes]"]
"""fetch(url) → the body, or a `FeedError` saying why not."""


class FeedError(Exception):
    """Why a calendar could not be fetched, in words for the admin."""


@dataclass(frozen=True)
class FeedStatus:
    url: str
    """The URL the copy is from ("" = none configured)."""
    fetched: float | None = None
    """When the kept copy was fetched (None: no good copy)."""
    checked: float | None = None
    """When the URL was last tried."""
    error: str = ""
    """Why the last try failed ("" = it worked)."""
    events: int = 0
    """Events in the kept copy."""
    fetching: bool = False


class HolidayFeed(Service):
    """Fetches the configured calendar now and then; `calendar` is the kept copy."""

    def __init__(self, store: IKeyValueStore, settings: Settings, fetch: Fetch, clock: IReactorTime) -> None:
        self.store = store
        self.settings = settings
        self.fetch = fetch
        self.clock = clock
        self._timer: IDelayedCall | None = None
        self._running: Deferred[Any] | None = None
        self._parsed: tuple[str, HolidayCalendar | None] = ("", None)
        self._undo: Callable[[], object] | None = None
        self._stopping = False
        self._stored: dict[str, Any] | None = None
        """The stored record, read once: calls ask for the calendar, and it may be large."""
        store.subscribe(self._store_changed)

    # -- reading ------------------------------------------------------------

    def url(self) -> str:
        return str(self.settings.get(keys.HOLIDAY_ICAL_URL))

    def _store_changed(self, change: Change) -> None:
        if (change.namespace, change.key) == (NAMESPACE, KEY):
            self._stored = None

    def _record(self) -> dict[str, Any]:
        if self._stored is None:
            raw = self.store.get(NAMESPACE, KEY)
            self._stored = raw if isinstance(raw, dict) else {}
        if self._stored.get("url") != self.url():
            return {}  # a copy of another URL is not this calendar
        return self._stored

    def calendar(self) -> HolidayCalendar | None:
        """The last good copy of the configured calendar (None: none yet, or none set)."""
        text = self._record().get("text")
        if not isinstance(text, str) or not text:
            return None
        if self._parsed[0] != text:
            try:
                self._parsed = (text, HolidayCalendar.parse(text))
            except ScheduleError as error:  # stored by an older version, or edited by hand
                log.warn("ignoring the stored holiday calendar: {error}", error=error)
                self._parsed = (text, None)
        return self._parsed[1]

    def status(self) -> FeedStatus:
        record = self._record()
        calendar = self.calendar()
        return FeedStatus(
            url=self.url(),
            fetched=_number(record.get("fetched")),
            checked=_number(record.get("checked")),
            error=str(record.get("error", "")),
            events=calendar.events if calendar is not None else 0,
            fetching=self._running is not None,
        )

    # -- fetching -------------------------------------------------------------

    def refresh(self) -> Deferred[FeedStatus]:
        """Fetch the calendar now (the page's button, and the timer); one fetch at a time."""
        if self._running is not None:
            return self._after_running()
        url = self.url()
        if not url:
            self._schedule()
            return succeed(self.status())
        running: Deferred[Any] = self.fetch(url).addCallbacks(
            lambda body: self._fetched(url, body), lambda failure: self._failed(url, failure)
        )
        self._running = running

        def done(result: object) -> FeedStatus:
            if isinstance(result, Failure):
                log.failure("holiday calendar from {url}: not handled", result, url=url)
            self._running = None
            if self.url() != url:
                self._schedule(delay=0.0)  # the URL changed during the fetch: fetch the new one
            else:
                self._schedule(failed=bool(self.status().error))
            return self.status()

        return running.addBoth(done)

    def _after_running(self) -> Deferred[FeedStatus]:
        waiting: Deferred[FeedStatus] = Deferred()

        def tell(result: object) -> object:
            waiting.callback(self.status())
            return result

        assert self._running is not None
        self._running.addBoth(tell)
        return waiting

    def _fetched(self, url: str, body: bytes) -> None:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            self._note(url, error="not UTF-8 text")
            return
        try:
            calendar = HolidayCalendar.parse(text)
        except ScheduleError as error:
            self._note(url, error=str(error))
            return
        if self.url() != url:
            return  # the admin set another URL meanwhile; its own fetch follows
        now = self.clock.seconds()
        self.store.put(
            NAMESPACE, KEY, {"url": url, "text": text, "fetched": now, "checked": now, "error": ""}
        )
        log.info("holiday calendar fetched from {url}: {n} events", url=url, n=calendar.events)

    def _failed(self, url: str, failure: Failure) -> None:
        error = failure.value if failure.check(FeedError) else FeedError(failure.getErrorMessage())
        self._note(url, error=str(error) or type(failure.value).__name__)

    def _note(self, url: str, error: str) -> None:
        """A failed try: the kept copy stays, the error is shown."""
        if self.url() != url or self._stopping:
            return
        kept = self._record()
        record = {**kept, "url": url, "checked": self.clock.seconds(), "error": error}
        self.store.put(NAMESPACE, KEY, record)
        log.warn(
            "holiday calendar from {url} not fetched ({error}); {kept}",
            url=url,
            error=error,
            kept="keeping the last good copy" if kept.get("text") else "no copy yet",
        )

    # -- timing ---------------------------------------------------------------

    def _schedule(self, failed: bool = False, delay: float | None = None) -> None:
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if delay is None:
            delay = float(self.settings.get(keys.HOLIDAY_ICAL_REFRESH)) * 60.0
            if failed:
                delay = min(delay, RETRY_FAILED_SECONDS)
        self._timer = self.clock.callLater(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self.refresh()

    def _settings_changed(self, name: str, value: object) -> None:
        if name == keys.HOLIDAY_ICAL_URL.name:
            self._schedule(delay=0.0)  # a new URL is fetched at once
        elif self._running is None:
            self._schedule(failed=bool(self.status().error))

    def startService(self) -> None:
        super().startService()
        self._undo = self.settings.subscribe(
            self._settings_changed, [keys.HOLIDAY_ICAL_URL, keys.HOLIDAY_ICAL_REFRESH]
        )
        record = self._record()
        fetched = _number(record.get("checked"))
        due = 0.0
        if fetched is not None and not record.get("error"):
            interval = float(self.settings.get(keys.HOLIDAY_ICAL_REFRESH)) * 60.0
            due = max(0.0, fetched + interval - self.clock.seconds())
        self._schedule(delay=due)

    def stopService(self) -> Any:
        result = super().stopService()
        if self._undo is not None:
            self._undo()
            self._undo = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is not None:
            self._stopping = True  # a fetch cancelled now is no failure of the URL
            self._running.cancel()
            self._stopping = False
        return result


def _number(raw: object) -> float | None:
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


# -- HTTP ---------------------------------------------------------------------


class _LimitedBody(Protocol):
    """Collects a response body up to ``limit`` bytes; more aborts the download."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._abort()
            self.done.errback(FeedError(f"larger than {self.limit // 1024} KiB"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(FeedError(f"the answer broke off: {reason.getErrorMessage()}"))


def fetch_calendar(
    http: Any, clock: IReactorTime, url: str, limit: int = MAX_ICAL, timeout: float = FETCH_TIMEOUT
) -> Deferred[bytes]:
    """GET ``url`` with ``http`` (a `treq.HTTPClient`): the body of a 200 answer,
    at most ``limit`` bytes, all within ``timeout`` seconds; else `FeedError`."""

    def answered(response: Any) -> Any:
        if response.code != 200:
            _drop(response)
            raise FeedError(f"HTTP {response.code}")
        if isinstance(response.length, int) and response.length > limit:
            _drop(response)
            raise FeedError(f"larger than {limit // 1024} KiB")
        body = _LimitedBody(limit)
        response.deliverBody(body)
        return body.done

    d: Deferred[bytes] = http.get(url, headers={"Accept": ["text/calendar"]}).addCallback(answered)
    timed_out: list[bool] = []

    def give_up() -> None:
        timed_out.append(True)
        d.cancel()

    timer = clock.callLater(timeout, give_up)

    def finished(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        if isinstance(result, Failure) and not result.check(FeedError):
            if timed_out:  # the agent wraps the cancellation in its own errors
                raise FeedError(f"no complete answer within {timeout:g} s")
            if result.check(CancelledError):
                raise FeedError("cancelled")
            if result.check(PartialDownloadError):
                raise FeedError("the answer broke off")
            raise FeedError(_reason(result))
        return result

    return d.addBoth(finished)


def _drop(response: Any) -> None:
    """Read nothing of an unwanted body: the connection is dropped at its first bytes."""
    body = _LimitedBody(0)
    body.done.addErrback(lambda _: None)
    response.deliverBody(body)


def _reason(failure: Failure) -> str:
    """One line for the admin from a connection or TLS failure."""
    reasons = getattr(failure.value, "reasons", None)  # ResponseNeverReceived and friends
    if reasons:
        return "; ".join(_reason(inner) for inner in reasons)
    text = failure.getErrorMessage() or type(failure.value).__name__
    return text.splitlines()[0][:300]
