"""Metrics: each counter moves on its own event, in a registry of its own."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from appliance.asterisk.agi import AGIConnectionLost
from appliance.callflow import Call, CallOutcome, Unreachable
from appliance.forwarding.rules import Destination, Leg
from appliance.metrics import CountedRecallOutputs, Metrics, is_loopback_request
from appliance.store import DELETE, Change
from appliance.web.auth import LoginThrottle


def value(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics(self.clock)

    def test_registries_are_separate(self) -> None:
        """Two appliances in one process count apart."""
        other = Metrics(self.clock)
        self.metrics.mails_sent.inc()
        self.assertEqual(value(self.metrics, "appliance_mails_sent_total"), 1)
        self.assertEqual(value(other, "appliance_mails_sent_total"), 0)

    def test_new_outbox_and_callback_records_count_as_queued_and_requested(self) -> None:
        """Only records that did not exist before count; updates and deletes do not."""
        m = self.metrics
        m.store_changed(Change("outbox", "a", DELETE, {"state": "pending"}))
        m.store_changed(Change("outbox", "a", {"state": "pending"}, {"state": "sent"}))
        m.store_changed(Change("callbacks", "100:200", DELETE, {}))
        m.store_changed(Change("callbacks", "100:200", {}, DELETE))
        self.assertEqual(value(m, "appliance_mails_queued_total"), 1)
        self.assertEqual(value(m, "appliance_callback_requests_total"), 1)

    def test_mail_attempts(self) -> None:
        """The outbox's sent/failed/pending after an attempt become sent/failed/retries."""
        for state in ("sent", "pending", "pending", "failed"):
            self.metrics.mail_attempt("k", state)
        self.assertEqual(value(self.metrics, "appliance_mails_sent_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_mail_retries_total"), 2)
        self.assertEqual(value(self.metrics, "appliance_mails_failed_total"), 1)

    def test_outbox_age_is_the_oldest_pending_mail(self) -> None:
        """Read at scrape time from the outbox on the injected clock; sent mails do not count."""
        entries = [("a", {"state": "pending", "created": 10.0}), ("b", {"state": "sent", "created": 0.0})]
        self.metrics.watch_outbox(lambda: entries)
        self.clock.advance(70)
        self.assertEqual(value(self.metrics, "appliance_outbox_oldest_age_seconds"), 60)
        self.assertEqual(value(self.metrics, "appliance_outbox_pending"), 1)
        entries.clear()
        self.assertEqual(value(self.metrics, "appliance_outbox_oldest_age_seconds"), 0)

    def test_ami_reconnects_are_logins_after_the_first(self) -> None:
        for _ in range(3):
            self.metrics.ami_login(object())
        self.assertEqual(value(self.metrics, "appliance_ami_connections_total"), 3)
        self.assertEqual(value(self.metrics, "appliance_ami_reconnects_total"), 2)

    def test_fastagi_sessions_and_errors(self) -> None:
        """A failing handler is an error; a caller hanging up is not."""
        outcomes: list[Deferred[Any]] = [succeed(None), fail(ValueError("bug")), fail(AGIConnectionLost())]
        routes: dict[str, Any] = {"call": lambda agi: outcomes.pop(0)}
        self.metrics.count_routes(routes)
        for _ in range(3):
            routes["call"](object()).addErrback(lambda _: None)
        self.assertEqual(value(self.metrics, "appliance_fastagi_sessions_total", script="call"), 3)
        self.assertEqual(value(self.metrics, "appliance_fastagi_errors_total", script="call"), 1)

    def test_counted_route_keeps_the_handler_reachable(self) -> None:
        """Tools and tests reach the route's object (e.g. the call router) through the wrapper."""

        class Router:
            recent = ["last call"]

            def __call__(self, agi: Any) -> None:
                return None

        routes: dict[str, Any] = {"call": Router()}
        self.metrics.count_routes(routes)
        self.assertEqual(routes["call"].recent, ["last call"])

    def test_store_write_timed(self) -> None:
        """The timer is injected; the write's result and errors pass through."""
        ticks = iter([1.0, 1.25])
        timed = self.metrics.timed(lambda x: x * 2, timer=lambda: next(ticks))
        self.assertEqual(timed(21), 42)
        self.assertEqual(value(self.metrics, "appliance_store_write_seconds_count"), 1)
        self.assertEqual(value(self.metrics, "appliance_store_write_seconds_sum"), 0.25)

    def test_finished_calls_counted(self) -> None:
        """A finished call counts by origin, its forwarded legs, and the reason its
        final target was not reached."""
        call = Call("200", "internal", "100", "Anna", "PJSIP/100-1", "1.1")
        direct = Leg(Destination("line", "200"))
        forwarded = Leg(Destination("line", "300"), reason="forwarded", chain=("200",))
        self.metrics.call_finished(CallOutcome(call, "BUSY", ((direct, None), (forwarded, "BUSY")), (), None))
        self.metrics.call_finished(CallOutcome(call, "BUSY", ((direct, "BUSY"),), (), Unreachable.BUSY))
        self.assertEqual(value(self.metrics, "appliance_calls_routed_total", origin="internal"), 2)
        self.assertEqual(value(self.metrics, "appliance_forwards_applied_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_callback_offers_total", reason="busy"), 1)

    def test_recall_outputs(self) -> None:
        seen: list[str] = []

        class Outputs:
            def originate(self, recall: Any) -> None:
                seen.append("originate")

            def saved(self, request: Any) -> None:
                seen.append("saved")

            def removed(self, request: Any, why: str) -> None:
                seen.append(why)

        outputs = CountedRecallOutputs(Outputs(), self.metrics)
        outputs.originate(object())  # type: ignore[arg-type]
        outputs.saved(object())  # type: ignore[arg-type]
        outputs.removed(object(), "expired")  # type: ignore[arg-type]
        outputs.removed(object(), "done")  # type: ignore[arg-type]
        self.assertEqual(seen, ["originate", "saved", "expired", "done"])
        self.assertEqual(value(self.metrics, "appliance_callback_expiries_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_callback_removed_total", why="done"), 1)

    def test_failed_logins_counted_at_the_throttle(self) -> None:
        """A failed check (web login or API token) counts; a successful one does not."""
        throttle = LoginThrottle(self.clock)
        throttle.finish = self.metrics.counting_failures(throttle.finish)  # type: ignore[method-assign]
        throttle.failed("anna", "192.0.2.1")
        self.assertTrue(throttle.begin("ben", "192.0.2.2"))
        throttle.finish("ben", "192.0.2.2", succeeded=True)
        self.assertEqual(value(self.metrics, "appliance_login_failures_total"), 1)

    def test_loopback_only_when_not_relayed(self) -> None:
        request = DummyRequest([b"metrics"])
        request.client = IPv4Address("TCP", "127.0.0.1", 40000)
        self.assertTrue(is_loopback_request(request))
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"192.0.2.1"])
        self.assertFalse(is_loopback_request(request))
        remote = DummyRequest([b"metrics"])
        remote.client = IPv4Address("TCP", "192.0.2.9", 40000)
        self.assertFalse(is_loopback_request(remote))
