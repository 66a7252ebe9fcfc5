"""Metrics for operators: counters and gauges of one appliance in its own
Prometheus registry (never the process-global one, so several appliances in
one test process do not clash), served as Prometheus text on ``/metrics``.

The features keep no metric code of their own: `instrument` listens to their
observer hooks and wraps the few outward calls that have none (a FastAGI
route, the recall outputs, the store's write, the login throttle), all in
this one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import CancelledError, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from appliance.asterisk.agi import AGIConnectionLost
from appliance.callback.engine import IRecallOutputs, Recall, Request
from appliance.callflow import CallOutcome
from appliance.mail import OUTBOX
from appliance.store import DELETE, Change

CONTENT_TYPE = CONTENT_TYPE_LATEST
STORE_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


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
        self.callback_removed = Counter(
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

    # -- observers the features offer ------------------------------------------

    def store_changed(self, change: Change) -> None:
        if change.old is not DELETE or change.new is DELETE:
            return
        if change.namespace == OUTBOX:
            self.mails_queued.inc()
        elif change.namespace == "callbacks":
            self.callback_requests.inc()

    def mail_attempt(self, _key: str, state: str) -> None:
        if state == "sent":
            self.mails_sent.inc()
        elif state == "failed":
            self.mails_failed.inc()
        else:
            self.mail_retries.inc()

    def ami_login(self, _protocol: object) -> None:
        if self._logins:
            self.ami_reconnects.inc()
        self._logins += 1
        self.ami_connections.inc()

    # -- wrappers for calls without observers ----------------------------------

    def count_routes(self, routes: MutableMapping[str, Callable[[Any], Any]]) -> None:
        """Count each FastAGI session and each handler failure, by script."""
        for script, handler in list(routes.items()):
            routes[script] = CountedRoute(script, handler, self)

    def timed(
        self, write: Callable[..., Any], timer: Callable[[], float] = time.perf_counter
    ) -> Callable[..., Any]:
        """``write`` timed into the store-latency histogram (a measurement, not logic time)."""

        def timed_write(*args: Any, **kwargs: Any) -> Any:
            started = timer()
            try:
                return write(*args, **kwargs)
            finally:
                self.store_write_seconds.observe(timer() - started)

        return timed_write

    def counting_failures(self, finish: Callable[..., None]) -> Callable[..., None]:
        """The login throttle's ``finish(login, address, succeeded)``, counting failures."""

        def count(login: str, address: str, succeeded: bool) -> None:
            if not succeeded:
                self.login_failures.inc()
            finish(login, address, succeeded=succeeded)

        return count

    def call_finished(self, outcome: CallOutcome) -> None:
        """A call the route finished: its origin, its forwarded legs, and the reason
        its final target was not reached (where a callback is offered)."""
        self.calls_routed.labels(outcome.origin or "unknown").inc()
        forwarded = sum(1 for leg, _status in outcome.legs if leg.reason == "forwarded")
        if forwarded:
            self.forwards_applied.inc(forwarded)
        if outcome.offered is not None:
            self.callback_offers.labels(outcome.offered.value).inc()


class CountedRoute:
    """A FastAGI route handler, counted; its other attributes are the handler's."""

    def __init__(self, script: str, handler: Callable[[Any], Any], metrics: Metrics) -> None:
        self.script = script
        self.handler = handler
        self.metrics = metrics

    def __call__(self, agi: Any) -> Any:
        self.metrics.fastagi_sessions.labels(self.script).inc()
        return maybeDeferred(self.handler, agi).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(AGIConnectionLost, CancelledError):
            self.metrics.fastagi_errors.labels(self.script).inc()
        return failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handler, name)


@implementer(IRecallOutputs)
class CountedRecallOutputs:
    """The callback engine's outputs, counted on their way."""

    def __init__(self, wrapped: Any, metrics: Metrics) -> None:
        self.wrapped = wrapped
        self.metrics = metrics

    def originate(self, recall: Recall) -> None:
        self.wrapped.originate(recall)

    def saved(self, request: Request) -> None:
        self.wrapped.saved(request)

    def removed(self, request: Request, why: str) -> None:
        self.metrics.callback_removed.labels(why).inc()
        if why == "expired":
            self.metrics.callback_expiries.inc()
        self.wrapped.removed(request, why)


def instrument(appliance: Any, metrics: Metrics) -> None:
    """Connect ``metrics`` to the parts of a built (not yet started) appliance."""
    appliance.store.subscribe(metrics.store_changed)
    # Every write of the store goes through apply (put and delete call it).
    appliance.store.apply = metrics.timed(appliance.store.apply)
    appliance.outbox.subscribe(metrics.mail_attempt)
    metrics.watch_outbox(appliance.outbox.entries)
    appliance.ami.addConnectedHook(metrics.ami_login)
    metrics.count_routes(appliance.routes)
    appliance.call_extensions.on_finished(metrics.call_finished)
    appliance.callbacks.on_recall(lambda _recall: metrics.callback_recalls.inc())
    engine = appliance.callbacks.engine
    engine.outputs = CountedRecallOutputs(engine.outputs, metrics)
    # Web logins and API tokens end each checked attempt here.
    appliance.web.throttle.finish = metrics.counting_failures(appliance.web.throttle.finish)


def is_loopback_request(request: Any) -> bool:
    """A request from this machine itself, not relayed by a proxy on it."""
    peer = getattr(request.getClientAddress(), "host", None)
    relayed = request.getHeader(b"x-forwarded-for") or request.getHeader(b"forwarded")
    return peer in ("127.0.0.1", "::1") and not relayed
