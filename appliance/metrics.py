"""Metrics for operators: counters and gauges of one appliance in its own
Prometheus registry (never the process-global one, so several appliances in
one test process do not clash), served as Prometheus text on ``/metrics``.

The features report through `appliance.metering.IMetrics`, handed to them
where `appliance.tap` builds them; `Metrics` is its Prometheus side.  The
outbox gauges are read from the store at each scrape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from appliance.metering import IMetrics

CONTENT_TYPE = CONTENT_TYPE_LATEST
STORE_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@implementer(IMetrics)
class Metrics:
    """The appliance's metrics; ``exposition()`` is the scrape body."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._logins = 0
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_routed = Counter(
            "appliance_calls_routed", "Calls the call route finished, by origin.", ["origin"], registry=r
        )
        self.forwards_applied = Counter(
            "appliance_forwards_applied", "Legs dialled because of a forward.", registry=r
        )
        self.callback_offers = Counter(
            "appliance_callback_offers",
            "Calls that met an unreachable line, where a callback is offered, by reason.",
            ["reason"],
            registry=r,
        )
        self.callback_requests = Counter("appliance_callback_requests", "Callback requests made.", registry=r)
        self.callback_recalls = Counter(
            "appliance_callback_recalls", "Recalls started (Originate sent).", registry=r
        )
        self.callback_expiries = Counter(
            "appliance_callback_expiries", "Callback requests deleted at CC_TIMEOUT.", registry=r
        )
        self.callback_removed_total = Counter(
            "appliance_callback_removed", "Callback requests that ended, by why.", ["why"], registry=r
        )
        self.mails_queued = Counter("appliance_mails_queued", "Mails put into the outbox.", registry=r)
        self.mails_sent = Counter("appliance_mails_sent", "Mails the relay accepted.", registry=r)
        self.mails_failed = Counter("appliance_mails_failed", "Mails the relay refused for good.", registry=r)
        self.mail_retries = Counter(
            "appliance_mail_retries", "Delivery attempts that failed and will be retried.", registry=r
        )
        self.outbox_pending = Gauge("appliance_outbox_pending", "Mails waiting in the outbox.", registry=r)
        self.outbox_age = Gauge(
            "appliance_outbox_oldest_age_seconds",
            "Age of the oldest mail waiting in the outbox (0 when empty).",
            registry=r,
        )
        self.ami_connections = Counter(
            "appliance_ami_connections", "AMI logins (the first and every reconnect).", registry=r
        )
        self.ami_reconnects = Counter(
            "appliance_ami_reconnects", "AMI logins after the first one.", registry=r
        )
        self.fastagi_sessions = Counter(
            "appliance_fastagi_sessions", "FastAGI sessions, by script.", ["script"], registry=r
        )
        self.fastagi_errors = Counter(
            "appliance_fastagi_errors",
            "FastAGI sessions whose handler failed (not hang-ups), by script.",
            ["script"],
            registry=r,
        )
        self.store_write_seconds = Histogram(
            "appliance_store_write_seconds",
            "Duration of one store write (a committed transaction).",
            buckets=STORE_WRITE_BUCKETS,
            registry=r,
        )
        self.login_failures = Counter(
            "appliance_login_failures", "Failed logins on the web page and the API.", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def watch_outbox(self, entries: Callable[[], list[tuple[str, Any]]]) -> None:
        """The outbox gauges are read from the store at each scrape."""

        def waiting() -> list[float]:
            return [
                float(record.get("created", 0.0))
                for _, record in entries()
                if isinstance(record, dict) and record.get("state") == "pending"
            ]

        self.outbox_pending.set_function(lambda: len(waiting()))
        self.outbox_age.set_function(
            lambda: max((self.clock.seconds() - created for created in waiting()), default=0.0)
        )

    # -- IMetrics: what the features report --------------------------------------

    def call_routed(self, origin: str) -> None:
        self.calls_routed.labels(origin or "unknown").inc()

    def forward_applied(self) -> None:
        self.forwards_applied.inc()

    def callback_offered(self, reason: str) -> None:
        self.callback_offers.labels(reason).inc()

    def callback_requested(self) -> None:
        self.callback_requests.inc()

    def recall_started(self) -> None:
        self.callback_recalls.inc()

    def callback_removed(self, why: str) -> None:
        self.callback_removed_total.labels(why).inc()
        if why == "expired":
            self.callback_expiries.inc()

    def mail_queued(self) -> None:
        self.mails_queued.inc()

    def mail_attempted(self, state: str) -> None:
        if state == "sent":
            self.mails_sent.inc()
        elif state == "failed":
            self.mails_failed.inc()
        else:
            self.mail_retries.inc()

    def ami_login(self) -> None:
        if self._logins:
            self.ami_reconnects.inc()
        self._logins += 1
        self.ami_connections.inc()

    def fastagi_session(self, script: str) -> None:
        self.fastagi_sessions.labels(script).inc()

    def fastagi_failed(self, script: str) -> None:
        self.fastagi_errors.labels(script).inc()

    def store_written(self, seconds: float) -> None:
        self.store_write_seconds.observe(seconds)

    def login_failed(self) -> None:
        self.login_failures.inc()


def is_loopback_request(request: Any) -> bool:
    """A request from this machine itself, not relayed by a proxy on it."""
    peer = getattr(request.getClientAddress(), "host", None)
    relayed = request.getHeader(b"x-forwarded-for") or request.getHeader(b"forwarded")
    return peer in ("127.0.0.1", "::1") and not relayed
