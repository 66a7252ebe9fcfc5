"""Metrics: each counter moves on its own event, in a registry of its own."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from appliance import settings as keys
from appliance.asterisk.agi import AGIConnectionLost
from appliance.callback.engine import Recall
from appliance.callback.service import CallbackService
from appliance.dialplan import Call, Unreachable
from appliance.directory import Directory
from appliance.forwarding.records import Forwards
from appliance.forwarding.rules import Destination, Leg
from appliance.forwarding.service import Forwarding
from appliance.holding import HoldingStore
from appliance.mail import Outbox
from appliance.metering import NO_METRICS, IMetrics, MeteredRoute
from appliance.metrics import Metrics, is_loopback_request
from appliance.settings import Settings
from appliance.testing import MemoryStore
from appliance.web.auth import LoginThrottle
from tests.unit.test_callback_offer import FakeAMI, FakeSession, model


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
            self.metrics.ami_login()
        self.assertEqual(value(self.metrics, "appliance_ami_connections_total"), 3)
        self.assertEqual(value(self.metrics, "appliance_ami_reconnects_total"), 2)

    def test_metrics_and_the_default_provide_the_interface(self) -> None:
        verifyObject(IMetrics, self.metrics)
        verifyObject(IMetrics, NO_METRICS)

    def test_fastagi_sessions_and_errors(self) -> None:
        """A failing handler is an error; a caller hanging up is not."""
        outcomes: list[Deferred[Any]] = [succeed(None), fail(ValueError("bug")), fail(AGIConnectionLost())]
        route = MeteredRoute("call", lambda agi: outcomes.pop(0), self.metrics)
        for _ in range(3):
            route(object()).addErrback(lambda _: None)
        self.assertEqual(value(self.metrics, "appliance_fastagi_sessions_total", script="call"), 3)
        self.assertEqual(value(self.metrics, "appliance_fastagi_errors_total", script="call"), 1)

    def test_metered_route_keeps_the_handler_reachable(self) -> None:
        """Tools and tests reach the route's object (e.g. the call router) through the wrapper."""

        class Router:
            recent = ["last call"]

            def __call__(self, agi: Any) -> None:
                return None

        route = MeteredRoute("call", Router(), self.metrics)
        self.assertEqual(route.recent, ["last call"])

    def test_store_reports_each_written_transaction(self) -> None:
        """The store times its own writes with the injected timer; reads are not timed."""
        ticks = iter([1.0, 1.25, 2.0, 2.5])
        store = HoldingStore(MemoryStore(), self.clock, metrics=self.metrics, timer=lambda: next(ticks))
        store.put("ns", "a", 1)
        store.apply([("ns", "b", 2), ("ns", "c", 3)])
        self.assertEqual(store.get("ns", "a"), 1)
        self.assertEqual(value(self.metrics, "appliance_store_write_seconds_count"), 2)
        self.assertEqual(value(self.metrics, "appliance_store_write_seconds_sum"), 0.75)

    def test_outbox_reports_queued_and_attempted_mails(self) -> None:
        """A new outbox record counts as queued, whoever applied it (also inside a
        journal transaction); each delivery attempt as sent, retry or failed."""
        store = MemoryStore()
        answers: list[Deferred[Any]] = [fail(OSError("relay down")), succeed(None)]
        outbox = Outbox(
            store, lambda *a: answers.pop(0), self.clock, backoff=lambda n: 1.0, metrics=self.metrics
        )
        outbox.startService()
        self.addCleanup(outbox.stopService)
        message = EmailMessage()
        message["Message-ID"] = "<m1@test>"
        message.set_content("hello")
        store.apply(outbox.enqueue_change("m1", "a@example.org", ["b@example.org"], message))
        outbox.wake()
        self.clock.advance(0)
        self.assertEqual(value(self.metrics, "appliance_mails_queued_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_mail_retries_total"), 1)
        self.clock.advance(1)
        self.assertEqual(value(self.metrics, "appliance_mails_sent_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_mails_queued_total"), 1)  # updates are no new mail

    def test_failed_logins_counted_at_the_throttle(self) -> None:
        """A failed check (web login or API token) counts; a successful one does not."""
        throttle = LoginThrottle(self.clock, self.metrics)
        throttle.failed("anna", "192.0.2.1")
        self.assertTrue(throttle.begin("ben", "192.0.2.2"))
        throttle.finish("ben", "192.0.2.2", succeeded=True)
        self.assertEqual(value(self.metrics, "appliance_login_failures_total"), 1)

    def test_forwarding_reports_legs_a_forward_caused(self) -> None:
        """Of the legs the router is about to dial, those a forward caused count."""
        store = MemoryStore()
        forwarding = Forwarding(Forwards(store), Settings(store), Directory(store), metrics=self.metrics)
        call = Call("201", "internal", "101", "", "PJSIP/101-00000001", "1.1")
        policy = forwarding.policy()
        forwarding.display(Leg(Destination("line", "201")), call, policy)
        forwarding.display(
            Leg(Destination("line", "301"), display_for="201", chain=("201",), reason="forwarded"),
            call,
            policy,
        )
        self.assertEqual(value(self.metrics, "appliance_forwards_applied_total"), 1)

    def test_callbacks_report_offers_requests_recalls_and_expiries(self) -> None:
        """The offer (by reason), the new request, the recall started and the
        request's end (expired counted apart) are reported by the callback feature."""
        clock = Clock()
        store = MemoryStore()
        settings = Settings(store)
        service = CallbackService(
            store, settings, model(**{"100": "busy", "200": "busy"}), FakeAMI(), Directory(store), clock,
            metrics=self.metrics,
        )  # fmt: skip
        call = Call("200", "internal", "100", "", "PJSIP/100-00000001", "1.1")
        self.successResultOf(service.offers.unreachable(FakeSession(keys="5"), call, Unreachable.BUSY))
        self.assertEqual(value(self.metrics, "appliance_callback_offers_total", reason="busy"), 1)
        self.assertEqual(value(self.metrics, "appliance_callback_requests_total"), 1)
        service.engine.outputs.originate(Recall("100:200", "100", "200", "internal", 1, 20))
        self.assertEqual(value(self.metrics, "appliance_callback_recalls_total"), 1)
        clock.advance(settings.get(keys.CC_TIMEOUT) * 60 + 1)
        self.assertEqual(service.pending(), [])
        self.assertEqual(value(self.metrics, "appliance_callback_expiries_total"), 1)
        self.assertEqual(value(self.metrics, "appliance_callback_removed_total", why="expired"), 1)
        self.assertEqual(value(self.metrics, "appliance_callback_requests_total"), 1)

    def test_loopback_only_when_not_relayed(self) -> None:
        request = DummyRequest([b"metrics"])
        request.client = IPv4Address("TCP", "127.0.0.1", 40000)
        self.assertTrue(is_loopback_request(request))
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"192.0.2.1"])
        self.assertFalse(is_loopback_request(request))
        remote = DummyRequest([b"metrics"])
        remote.client = IPv4Address("TCP", "192.0.2.9", 40000)
        self.assertFalse(is_loopback_request(remote))
