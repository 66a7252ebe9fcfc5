"""The HTTP guards: what is refused before any page code runs (StringTransport, Clock)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request

from appliance.config import UPLOAD_OVERHEAD, ConfigError, WebLimits, load
from appliance.web.guard import GuardedChannel, GuardedSite
from tests.unit.test_config import shipped, write

LIMITS = WebLimits(form_body=1000, upload_body=5000, max_url=200, per_address=2, total=3)


class Echo(Resource):
    """Counts the requests that reached a resource and how much body they had."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[int] = []

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(len(request.content.read()))
        return b"ok"


def site(limits: WebLimits = LIMITS) -> tuple[GuardedSite, Echo, Clock]:
    clock, echo = Clock(), Echo()

    def limit(method: bytes, path: bytes) -> int:
        return limits.upload_body if path.startswith(b"/upload") else limits.form_body

    return GuardedSite(echo, limit, limits, reactor=clock), echo, clock


def connect(guarded: GuardedSite, host: str = "192.0.2.1") -> tuple[GuardedChannel | None, StringTransport]:
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 50000))
    channel = guarded.buildProtocol(IPv4Address("TCP", host, 50000))
    if channel is not None:
        channel.makeConnection(transport)
    return channel, transport


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: appliance", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_oversized_body_refused_when_headers_arrive() -> None:
    """A Content-Length above the route's limit gets 413 at once, with the security
    headers, before any body byte; the resource never runs."""
    guarded, echo, _ = site()
    channel, transport = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("POST", "/login", "Content-Length: 300000000"))
    reply = transport.value()
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Content-Security-Policy: default-src 'none'" in reply
    assert transport.disconnecting
    channel.dataReceived(b"x" * 100000)  # whatever follows is not read
    assert echo.bodies == []


def test_upload_route_has_its_own_limit() -> None:
    """The same size that a form may not send passes on an upload route."""
    guarded, echo, _ = site()
    channel, transport = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("POST", "/upload", "Content-Length: 3000") + b"y" * 3000)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert echo.bodies == [3000]


def test_chunked_body_refused_once_past_the_limit() -> None:
    """A chunked body without a length is cut off with 413 when it passes the limit."""
    guarded, echo, _ = site()
    channel, transport = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("POST", "/login", "Transfer-Encoding: chunked"))
    chunk = b"%x\r\n%s\r\n" % (600, b"z" * 600)
    channel.dataReceived(chunk + chunk + b"0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert echo.bodies == []


def test_long_url_is_414() -> None:
    """A request target above max_url gets 414; one above the line limit too."""
    guarded, echo, _ = site()
    for length in (500, 20000):
        channel, transport = connect(guarded, f"192.0.2.{length % 250}")
        assert channel is not None
        channel.dataReceived(head("GET", "/" + "a" * length))
        assert transport.value().startswith(b"HTTP/1.1 414 "), transport.value()[:40]
    assert echo.bodies == []


def test_header_deadline() -> None:
    """Headers dribbled in byte by byte are cut off at header_deadline with 408, even
    though every byte resets the idle timeout."""
    guarded, echo, clock = site()
    channel, transport = connect(guarded)
    assert channel is not None
    for byte in head("GET", "/")[:-4]:
        clock.advance(1)
        channel.dataReceived(bytes([byte]))
        if transport.disconnecting:
            break
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert clock.seconds() <= LIMITS.header_deadline + 1
    assert echo.bodies == []


def test_silent_connection_closed_at_header_deadline() -> None:
    """A connection that sends nothing is closed at header_deadline."""
    guarded, _, clock = site()
    _, transport = connect(guarded)
    clock.advance(LIMITS.header_deadline)
    assert transport.disconnecting


def test_keepalive_between_requests_uses_idle_timeout() -> None:
    """After a complete request the next request's header clock starts with its first byte."""
    guarded, echo, clock = site()
    channel, transport = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("GET", "/"))
    assert echo.bodies == [0]
    clock.advance(LIMITS.header_deadline + 1)
    assert not transport.disconnecting
    channel.dataReceived(head("GET", "/"))
    assert echo.bodies == [0, 0]
    assert guarded.timeOut == LIMITS.idle_timeout


def test_connections_per_address_and_in_total() -> None:
    """Beyond per_address a client's next connection is refused; other clients still
    connect up to the total; a closed connection frees its slot."""
    guarded, _, _ = site()
    first, _ = connect(guarded, "192.0.2.1")
    second, _ = connect(guarded, "192.0.2.1")
    third, _ = connect(guarded, "192.0.2.1")
    assert first is not None and second is not None and third is None
    other, _ = connect(guarded, "192.0.2.2")
    assert other is not None
    assert connect(guarded, "192.0.2.3")[0] is None  # total reached
    first.connectionLost(Exception("closed"))  # type: ignore[arg-type]
    assert connect(guarded, "192.0.2.1")[0] is not None


def test_trusted_proxy_counts_only_to_the_total() -> None:
    """A configured reverse proxy may open more than per_address connections."""
    guarded, _, _ = site(replace(LIMITS, trusted_proxies=frozenset({"127.0.0.1"})))
    made = [connect(guarded, "127.0.0.1")[0] for _ in range(3)]
    assert all(channel is not None for channel in made)


def test_config_reads_trusted_proxies_and_upload_limit(tmp_path: Path) -> None:
    """[web] trusted_proxies and max_upload_mb reach the limits; a bad address is one line."""
    text = shipped().replace("trusted_proxies =", "trusted_proxies = 127.0.0.1, ::1")
    text = text.replace("max_upload_mb = 5", "max_upload_mb = 20")
    limits = load(write(tmp_path, text)).web_limits
    assert limits.trusted_proxies == frozenset({"127.0.0.1", "::1"})
    assert limits.upload_body == 20 * 1024 * 1024 + UPLOAD_OVERHEAD
    assert load(write(tmp_path, shipped())).web_limits.trusted_proxies == frozenset()
    bad = shipped().replace("trusted_proxies =", "trusted_proxies = proxy.example")
    with pytest.raises(ConfigError, match=r"\[web\] trusted_proxies: 'proxy.example' is not an IP address"):
        load(write(tmp_path, bad))


def test_body_deadline() -> None:
    """A form body dribbled in after its headers is cut off at body_deadline with 408;
    an upload route gets upload_deadline."""
    guarded, echo, clock = site()
    channel, transport = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("POST", "/login", "Content-Length: 900"))
    for _ in range(int(LIMITS.body_deadline) - 1):
        clock.advance(1)
        channel.dataReceived(b"x")
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    upload, upload_transport = connect(guarded, "192.0.2.7")
    assert upload is not None
    upload.dataReceived(head("POST", "/upload", "Content-Length: 4000"))
    clock.advance(LIMITS.body_deadline + 1)
    assert not upload_transport.disconnecting
    clock.advance(LIMITS.upload_deadline)
    assert upload_transport.value().startswith(b"HTTP/1.1 408 ")
    assert echo.bodies == []


def test_body_in_time_leaves_no_timer() -> None:
    """A complete body stops the body clock."""
    guarded, echo, _ = site()
    channel, _ = connect(guarded)
    assert channel is not None
    channel.dataReceived(head("POST", "/login", "Content-Length: 10") + b"0123456789")
    assert echo.bodies == [10]
    assert channel._body_timer is None
