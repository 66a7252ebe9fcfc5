"""AMI hardening: the keepalive notices a dead link and reconnects, and one message or
list cannot grow without bound."""

from __future__ import annotations

from twisted.application.internet import backoffPolicy
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import AMIError, AMIMessage, AMIProtocol
from appliance.asterisk.amiservice import AMIService
from tests.unit.test_ami_service import SECRET, Harness


class KeepaliveHarness(Harness):
    def __init__(self, keepalive: float) -> None:
        super().__init__()
        self.policy = backoffPolicy(initialDelay=1.0, maxDelay=8.0, factor=2.0, jitter=lambda: 0.0)
        self.service = AMIService(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", 5038),
            "appliance",
            SECRET,
            clock=self.reactor,
            retryPolicy=self.policy,
            keepalive=keepalive,
        )


class KeepaliveTests(SynchronousTestCase):
    def test_pingsWhileTheLinkAnswers(self) -> None:
        """A Ping goes out every keepalive seconds after the last Pong; the link stays."""
        harness = KeepaliveHarness(keepalive=5.0)
        asterisk = harness.connect()
        for _ in range(3):
            harness.reactor.advance(5.0)
            asterisk.reply("Ping", "Ping: Pong")
        pings = [a for a in asterisk.actions() if a["Action"] == "Ping"]
        self.assertEqual(len(pings), 3)
        self.assertTrue(harness.service.connected)
        self.assertFalse(asterisk.transport.disconnecting)

    def test_deadLinkNoticedWithin15sThenReconnectAndResync(self) -> None:
        """A half-open link (Asterisk silent) is aborted within 15 s, the service
        reconnects, and the on-connected hooks run again (resync)."""
        harness = KeepaliveHarness(keepalive=5.0)
        resyncs: list[AMIProtocol] = []
        harness.service.addConnectedHook(resyncs.append)
        asterisk = harness.connect()
        self.assertEqual(len(resyncs), 1)
        aborted_at = None
        with capturedLogs() as events:
            for _ in range(30):
                harness.reactor.advance(0.5)
                if asterisk.transport.disconnecting or getattr(asterisk.transport, "disconnected", False):
                    aborted_at = harness.reactor.seconds()
                    break
        self.assertIsNotNone(aborted_at)
        assert aborted_at is not None
        self.assertLessEqual(aborted_at, 15.0)
        self.assertTrue(
            any(e["log_level"] is LogLevel.warn and "keepalive" in e["log_format"] for e in events)
        )
        asterisk.lose()
        self.assertFalse(harness.service.connected)
        harness.reactor.advance(harness.policy(1))  # ClientService backs off
        harness.accept().acceptLogin()
        self.assertTrue(harness.service.connected)
        self.assertEqual(len(resyncs), 2)

    def test_noPingAfterDisconnect(self) -> None:
        """A lost link leaves no keepalive timer behind."""
        harness = KeepaliveHarness(keepalive=5.0)
        asterisk = harness.connect()
        asterisk.lose()
        harness.service.stopService()
        self.assertEqual([c for c in harness.reactor.getDelayedCalls() if c.active()], [])


class BoundTests(SynchronousTestCase):
    def connect(self) -> tuple[AMIProtocol, StringTransport, list[AMIMessage]]:
        events: list[AMIMessage] = []
        protocol = AMIProtocol(eventHandler=events.append)
        protocol.MAX_MESSAGE_LINES = 50
        protocol.MAX_LIST_EVENTS = 3
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"Asterisk Call Manager/9.0.0\r\n")
        return protocol, transport, events

    def test_oversizedMessageDroppedLinkKept(self) -> None:
        """A message with more lines than allowed is dropped whole; the next one arrives."""
        protocol, transport, events = self.connect()
        huge = b"Event: Flood\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(200)) + b"\r\n"
        with capturedLogs() as logged:
            protocol.dataReceived(huge + b"Event: Small\r\nA: b\r\n\r\n")
        self.assertEqual([e.name for e in events], ["Small"])
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len([e for e in logged if e["log_level"] is LogLevel.error]), 1)

    def test_endlessListFailsTheAction(self) -> None:
        """A list action whose events never end fails once past MAX_LIST_EVENTS; the
        rest of the list is dropped and later messages are handled."""
        protocol, transport, events = self.connect()
        listed = protocol.collectEvents("CoreShowChannels")
        action_id = transport.value().decode().split("ActionID: ")[1].split("\r\n")[0]
        protocol.dataReceived(
            f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\n\r\n".encode()
        )
        for _ in range(6):
            protocol.dataReceived(f"Event: CoreShowChannel\r\nActionID: {action_id}\r\n\r\n".encode())
        self.failureResultOf(listed, AMIError)
        protocol.dataReceived(b"Event: Other\r\n\r\n")
        self.assertEqual([e.name for e in events], ["Other"])
