"""HTTP guards in front of the web page: what is refused before any page code runs.

Twisted reads and parses a whole request body before a resource sees it, and
keeps a connection that dribbles its headers open for hours.  `GuardedSite`
and `GuardedChannel` decide as soon as the headers are in:

- a body above the route's limit (`WebLimits.form_body`, or the configurable
  upload limit for upload routes) is refused with 413 before one byte of it is
  read or parsed, also for chunked bodies once they pass the limit;
- a request target longer than `WebLimits.max_url` gets 414;
- headers not complete within `WebLimits.header_deadline` seconds of their
  first byte (or of the connection) get 408 and the connection is closed, and
  so does a body not complete within `WebLimits.body_deadline` (uploads:
  `WebLimits.upload_deadline`) of its headers;
  an idle keep-alive connection is closed after `WebLimits.idle_timeout`;
- at most `WebLimits.per_address` connections per client address and
  `WebLimits.total` in all; configured trusted proxies only count to the total.

Every response, including these refusals and 404/405/500, carries
`SECURITY_HEADERS` (set by `GuardedRequest`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.server import Request, Site

from appliance.config import DEFAULT_WEB_LIMITS, WebLimits

log = Logger()

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"same-origin",
    b"Cache-Control": b"no-store",
}


def set_security_headers(request: IRequest) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


BodyLimit = Callable[[bytes, bytes], int]
"""``limit(method, path)``: the most body bytes the route behind ``path`` accepts."""

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class GuardedRequest(Request):
    """A request that carries the security headers whatever answers it and
    refuses a chunked body once it passes its limit."""

    body_limit: int | None = None
    _body_seen = 0

    def process(self) -> None:
        set_security_headers(self)
        super().process()

    def handleContentChunk(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self.body_limit is not None and self._body_seen > self.body_limit:
            channel: Any = self.channel
            if isinstance(channel, GuardedChannel):
                channel.refuse(413)
            return
        super().handleContentChunk(data)


class GuardedChannel(HTTPChannel):
    """HTTP/1.1 with the limits of its `GuardedSite`, decided when the headers are in."""

    site: GuardedSite
    _header_timer: IDelayedCall | None = None
    _body_timer: IDelayedCall | None = None
    _refused = False
    _counted_as: str | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_header_clock()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.line_mode and self._header_timer is None and not self._handlingRequest:
            self._start_header_clock()
        super().dataReceived(data)

    def _start_header_clock(self) -> None:
        self._header_timer = self.callLater(self.site.limits.header_deadline, self._headers_late)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None and self._header_timer.active():
            self._header_timer.cancel()
        self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        self.site.note("headers not complete in time", self._peer_host())
        self.refuse(408)

    def lineLengthExceeded(self, line: bytes) -> None:
        # The first line is the request line: its length is the URL's.
        first = bool(getattr(self, "_HTTPChannel__first_line", 0))
        self.refuse(414 if first else 431)

    def allHeadersReceived(self) -> None:
        self._stop_header_clock()
        method, path = self._command, self._path
        limits = self.site.limits
        if len(path) > limits.max_url:
            self.refuse(414)
            return
        limit = self.site.body_limit(method, path)
        if self.length is not None and self.length > limit:
            self.site.note(f"{self.length}-byte body for {method!r} refused", self._peer_host())
            self.refuse(413)
            return
        request = self.requests[-1]
        if isinstance(request, GuardedRequest):
            request.body_limit = limit
        if self.length != 0:
            upload = limit > limits.form_body
            deadline = limits.upload_deadline if upload else limits.body_deadline
            self._body_timer = self.callLater(deadline, self._body_late)
        super().allHeadersReceived()

    def _body_late(self) -> None:
        self._body_timer = None
        self.site.note("body not complete in time", self._peer_host())
        self.refuse(408)

    def _stop_body_clock(self) -> None:
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.cancel()
        self._body_timer = None

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400)

    def allContentReceived(self) -> None:
        self._stop_body_clock()
        if not self._refused:  # a chunked body's end may follow its refusal in one read
            super().allContentReceived()

    def refuse(self, status: int) -> None:
        """Answer ``status`` at once, read nothing more and close."""
        if self._refused:
            return
        self._refused = True
        self._stop_header_clock()
        self._stop_body_clock()
        self.persistent = False
        reason = _REASONS.get(status, b"Error")
        body = b"%d %s\n" % (status, reason)
        head = [b"HTTP/1.1 %d %s" % (status, reason)]
        head += [name + b": " + value for name, value in SECURITY_HEADERS.items()]
        head += [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        transport = self.transport
        if transport is not None:
            transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            transport.loseConnection()

    def _peer_host(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return str(getattr(peer, "host", "?"))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stop_header_clock()
        self._stop_body_clock()
        if self._counted_as is not None:
            self.site.closed(self._counted_as)
            self._counted_as = None
        if self._refused:
            # Requests that never reached a resource have nothing to clean up
            # beyond their body buffer.
            for request in self.requests:
                content = getattr(request, "content", None)
                if content is not None:
                    content.close()
            self.requests = []
        super().connectionLost(reason)


class GuardedSite(Site):
    """A `Site` whose channels are `GuardedChannel` and whose requests are `GuardedRequest`."""

    protocol = GuardedChannel  # type: ignore[assignment]
    requestFactory = GuardedRequest

    def __init__(
        self,
        resource: Any,
        body_limit: BodyLimit,
        limits: WebLimits = DEFAULT_WEB_LIMITS,
        reactor: IReactorTime | None = None,
    ) -> None:
        super().__init__(resource, timeout=limits.idle_timeout, reactor=reactor)
        self.body_limit = body_limit
        self.limits = limits
        self.displayTracebacks = False
        self.open: Counter[str] = Counter()
        self.refusals = 0
        self._last_note: float | None = None

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = str(getattr(addr, "host", "?"))
        trusted = host in self.limits.trusted_proxies
        if sum(self.open.values()) >= self.limits.total or (
            not trusted and self.open[host] >= self.limits.per_address
        ):
            self.note("too many connections", host)
            return None  # Twisted closes the connection
        channel = super().buildProtocol(addr)
        if channel is not None:
            channel._counted_as = host
            self.open[host] += 1
        return channel

    def closed(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]

    def note(self, what: str, host: str) -> None:
        """Log a refusal, one line per ten seconds at most: a flood must not flood the log."""
        self.refusals += 1
        now = self.reactor.seconds()
        if self._last_note is None or now - self._last_note >= 10.0:
            self._last_note = now
            log.warn(
                "web: refused a client ({what}, from {host}); {count} refusals so far",
                what=what,
                host=host,
                count=self.refusals,
            )
