"""The holiday calendar fetched from a real HTTP(S) server on loopback (a
Twisted Site): the body of a 200, refusals named, size and time bounded, TLS
checked against a test CA; and a lab call that follows a forward whose schedule
excludes today because the fetched calendar says today is a holiday."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from appliance import settings as keys
from appliance.carddav import http_client
from appliance.directory import User
from appliance.forwarding.holidayfeed import FeedError, HolidayFeed, fetch_calendar
from tests.certs import make_pki
from tests.e2e.calls import answered_call, call_finished, lines_rung, registered_here
from tests.e2e.test_api import call_api
from tests.unit.test_holiday_feed import calendar


class CalendarServer(Resource):
    """Serves ``body`` with ``code``; ``mode`` "chunked" streams it without a
    length, "hang" never answers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.body = calendar("2027-01-01")
        self.code = 200
        self.mode = "plain"
        self.requests = 0
        self.hanging: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests += 1
        request.setResponseCode(self.code)
        request.setHeader(b"Content-Type", b"text/calendar; charset=utf-8")
        if self.mode == "hang":
            self.hanging.append(request)
            return NOT_DONE_YET
        if self.mode == "chunked":
            for start in range(0, len(self.body), 512):
                request.write(self.body[start : start + 512])
            request.finish()
            return NOT_DONE_YET
        return self.body


@pytest.fixture
def server(reactor):  # type: ignore[no-untyped-def]
    resource = CalendarServer()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    resource.url = f"http://127.0.0.1:{port.getHost().port}/holidays.ics"  # type: ignore[attr-defined]
    yield resource
    port.stopListening()


@pytest_twisted.inlineCallbacks
def fetch_error(reactor, url, **kwargs):  # type: ignore[no-untyped-def]
    try:
        yield fetch_calendar(http_client(reactor), reactor, url, **kwargs)
    except FeedError as error:
        return str(error)
    raise AssertionError(f"{url} was fetched")


@pytest_twisted.inlineCallbacks
def test_fetches_the_body_over_http(reactor, server):
    body = yield fetch_calendar(http_client(reactor), reactor, server.url)
    assert body == server.body
    server.mode = "chunked"
    body = yield fetch_calendar(http_client(reactor), reactor, server.url)
    assert body == server.body


@pytest_twisted.inlineCallbacks
def test_refusals_size_and_time_are_bounded(reactor, server):
    """404 is named; a body over the limit is dropped, with or without a length;
    a server that never answers is given up after the timeout; a closed port fails."""
    server.code = 404
    assert (yield fetch_error(reactor, server.url)) == "HTTP 404"
    server.code = 200
    server.body = b"x" * 4096
    assert (yield fetch_error(reactor, server.url, limit=1024)) == "larger than 1 KiB"
    server.mode = "chunked"
    assert (yield fetch_error(reactor, server.url, limit=1024)) == "larger than 1 KiB"
    server.mode = "hang"
    started = reactor.seconds()
    assert (yield fetch_error(reactor, server.url, timeout=0.5)) == "no complete answer within 0.5 s"
    assert reactor.seconds() - started < 5
    closed = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    number = closed.getHost().port
    yield closed.stopListening()
    error = yield fetch_error(reactor, f"http://127.0.0.1:{number}/x.ics")
    assert "refused" in error.lower(), error


@pytest_twisted.inlineCallbacks
def test_https_checked_against_the_trusted_ca(reactor, server, tmp_path: Path):
    """Over https the server's certificate must chain to a trusted CA: with the
    test CA trusted the calendar arrives; with the system's roots it is refused."""
    pki = make_pki(tmp_path)
    certificate = ssl.PrivateCertificate.loadPEM(pki.certificate.read_text() + pki.key.read_text())
    port = reactor.listenSSL(0, Site(server), certificate.options(), interface="127.0.0.1")
    url = f"https://localhost:{port.getHost().port}/holidays.ics"
    try:
        trusted = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(pki.ca.read_bytes()))
        client = HTTPClient(Agent(reactor, trusted, pool=HTTPConnectionPool(reactor, persistent=False)))
        body = yield fetch_calendar(client, reactor, url)
        assert body == server.body
        error = yield fetch_error(reactor, url)
        assert "certificate" in error.lower() or "verify" in error.lower(), error
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_feed_keeps_the_copy_when_the_server_fails(reactor, server):
    """The feed over the real server: a good fetch, then a 500 keeps that copy."""
    from appliance.settings import Settings
    from appliance.testing import MemoryStore

    store = MemoryStore()
    settings = Settings(store)
    settings.set(keys.HOLIDAY_ICAL_URL, server.url)
    http = http_client(reactor)
    feed = HolidayFeed(store, settings, lambda url: fetch_calendar(http, reactor, url), reactor)
    status = yield feed.refresh()
    assert (status.error, status.events) == ("", 1)
    server.code = 500
    status = yield feed.refresh()
    assert status.error == "HTTP 500" and status.events == 1
    assert feed.calendar() is not None


@pytest_twisted.inlineCallbacks
def test_lab_call_follows_the_fetched_holidays(appliance, phones, reactor, server):
    """204 forwards to 304 on a schedule that holds now but follows the appliance's
    holiday calendar.  The calendar fetched from the URL makes today a holiday: 104's
    call rings 204 itself.  The calendar changes, "fetch now": the call goes to 304."""
    today = appliance.forwarding.now().date()
    server.body = calendar(today.isoformat())
    appliance.settings.set(keys.HOLIDAY_ICAL_URL, server.url)
    status = yield appliance.holiday_feed.refresh()
    assert (status.error, status.events) == ("", 1), status

    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    for ext in ("104", "204", "304"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    token, _ = appliance.api_tokens.create("204", "")
    code, body = yield call_api(
        base, "PUT", "/api/v1/users/me/forwards", token, {"kind": "unconditional", "target": "304"}
    )
    assert code == 200, body
    schedule = {"shared_holidays": True, "on_holidays": "inactive"}  # all day, except holidays
    code, body = yield call_api(base, "PUT", "/api/v1/users/me/schedules/unconditional/all", token, schedule)
    assert code == 200, body

    rang = lines_rung(appliance)
    p104, p204, p304 = phones("104"), phones("204"), phones("304")
    yield registered_here(reactor, appliance, p204)
    yield answered_call(reactor, appliance, p104, "204", p204)
    assert "204" in rang and "304" not in rang, rang
    yield call_finished(reactor, appliance, "104")

    del rang[:]
    server.body = calendar((today.replace(year=today.year + 1)).isoformat())
    status = yield appliance.holiday_feed.refresh()
    assert status.error == "" and not appliance.holiday_feed.calendar().covers(today)
    yield answered_call(reactor, appliance, p104, "204", p304)
    assert "304" in rang and "204" not in rang, rang
