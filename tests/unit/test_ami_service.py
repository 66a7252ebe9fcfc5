"""AMIService: ClientService on a MemoryReactorClock, Asterisk played by the test."""

from __future__ import annotations

from twisted.application.internet import backoffPolicy
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import (
    AMIConnectionLost,
    AMIMessage,
    AMINotConnected,
    AMIProtocol,
)
from appliance.asterisk.amiservice import AMIService

SECRET = "top-s3cret-value"


class AsteriskSide:
    """One accepted connection, seen from Asterisk's side."""

    def __init__(self, protocol: IProtocol, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        protocol.dataReceived(b"Asterisk Call Manager/9.0.0\r\n")

    def actions(self) -> list[dict[str, str]]:
        blocks = self.transport.value().decode("utf-8").split("\r\n\r\n")
        return [dict(line.split(": ", 1) for line in block.split("\r\n")) for block in blocks if block]

    def last(self, action: str) -> dict[str, str]:
        return [a for a in self.actions() if a["Action"] == action][-1]

    def send(self, *lines: str) -> None:
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))

    def reply(self, action: str, *lines: str, response: str = "Success") -> None:
        self.send(f"Response: {response}", f"ActionID: {self.last(action)['ActionID']}", *lines)

    def acceptLogin(self) -> None:
        self.reply("Login", "Message: Authentication accepted")

    def lose(self, reason: Exception | None = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))


class Harness:
    def __init__(self, actionTimeout: float | None = 30.0) -> None:
        self.reactor = MemoryReactorClock()
        self.policy = backoffPolicy(initialDelay=1.0, maxDelay=8.0, factor=2.0, jitter=lambda: 0.0)
        self.service = AMIService(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", 5038),
            "appliance",
            SECRET,
            clock=self.reactor,
            retryPolicy=self.policy,
            actionTimeout=actionTimeout,
        )
        self.attempts = 0

    def pendingAttempts(self) -> int:
        return len(self.reactor.tcpClients) - self.attempts

    def accept(self) -> AsteriskSide:
        """Complete the newest connection attempt."""
        assert self.pendingAttempts() == 1, self.pendingAttempts()
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.attempts += 1
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return AsteriskSide(protocol, transport)

    def refuse(self) -> None:
        """Refuse the newest connection attempt."""
        assert self.pendingAttempts() == 1, self.pendingAttempts()
        _, _, factory, _, _ = self.reactor.tcpClients[-1]
        self.attempts += 1
        factory.clientConnectionFailed(self.reactor.connectors[-1], Failure(ConnectionRefusedError()))

    def connect(self) -> AsteriskSide:
        """Start (if needed), accept and log in."""
        if not self.service.running:
            self.service.startService()
        asterisk = self.accept()
        asterisk.acceptLogin()
        return asterisk


class ConnectTests(SynchronousTestCase):
    def test_startConnectsAndLogsIn(self) -> None:
        """Starting connects to the endpoint and logs in with Events: on."""
        harness = Harness()
        harness.service.startService()
        self.assertEqual(harness.reactor.tcpClients[0][:2], ("127.0.0.1", 5038))
        asterisk = harness.accept()
        login = asterisk.last("Login")
        self.assertEqual((login["Username"], login["Secret"], login["Events"]), ("appliance", SECRET, "on"))
        self.assertFalse(harness.service.connected)

    def test_connectedAfterLogin(self) -> None:
        """whenConnected fires once the login is accepted, not before."""
        harness = Harness()
        harness.service.startService()
        waiting = harness.service.whenConnected()
        asterisk = harness.accept()
        self.assertNoResult(waiting)
        asterisk.acceptLogin()
        protocol = self.successResultOf(waiting)
        self.assertIs(protocol, harness.service.protocol)
        self.assertTrue(harness.service.connected)
        self.assertIs(self.successResultOf(harness.service.whenConnected()), protocol)

    def test_fromString(self) -> None:
        """fromString builds the endpoint from an endpoint description."""
        reactor = MemoryReactorClock()
        service = AMIService.fromString(reactor, "tcp:host=10.0.0.5:port=5039", "u", "s")
        service.startService()
        self.assertEqual(reactor.tcpClients[0][:2], ("10.0.0.5", 5039))

    def test_notConnectedFailsAtOnce(self) -> None:
        """Actions while there is no logged-in link fail at once with AMINotConnected."""
        harness = Harness()
        service = harness.service
        for d in (
            service.sendAction("Ping"),
            service.collectEvents("CoreShowChannels"),
            service.command("core show uptime"),
            service.sendActionHeaders("Ping", {}),
        ):
            self.failureResultOf(d, AMINotConnected)
        service.startService()
        harness.accept()  # connected, login pending
        self.failureResultOf(service.sendAction("Ping"), AMINotConnected)

    def test_actionsGoToCurrentConnection(self) -> None:
        """sendAction, collectEvents and command use the logged-in connection."""
        harness = Harness()
        asterisk = harness.connect()
        ping = harness.service.sendAction("Ping")
        asterisk.reply("Ping", "Ping: Pong")
        self.assertEqual(self.successResultOf(ping)["Ping"], "Pong")
        uptime = harness.service.command("core show uptime")
        asterisk.reply("Command", "Output: up 1 day")
        self.assertEqual(self.successResultOf(uptime), ["up 1 day"])
        contacts = harness.service.collectEvents("PJSIPShowContacts")
        action_id = asterisk.last("PJSIPShowContacts")["ActionID"]
        asterisk.reply("PJSIPShowContacts", "EventList: start")
        asterisk.send("Event: ContactList", f"ActionID: {action_id}", "Endpoint: 100")
        asterisk.send("Event: ContactListComplete", f"ActionID: {action_id}", "EventList: Complete")
        self.assertEqual([e["Endpoint"] for e in self.successResultOf(contacts)], ["100"])


class ReconnectTests(SynchronousTestCase):
    def test_disconnectFailsPendingAndReconnects(self) -> None:
        """A lost link fails every pending action and list, then the service reconnects."""
        harness = Harness()
        asterisk = harness.connect()
        getvar = harness.service.sendAction("Getvar", Variable="X")
        channels = harness.service.collectEvents("CoreShowChannels")
        asterisk.reply("CoreShowChannels", "EventList: start")
        asterisk.lose(ConnectionLost("Asterisk restarted"))
        self.failureResultOf(getvar, AMIConnectionLost)
        self.failureResultOf(channels, AMIConnectionLost)
        self.assertFalse(harness.service.connected)
        self.failureResultOf(harness.service.sendAction("Ping"), AMINotConnected)

        waiting = harness.service.whenConnected()
        harness.reactor.advance(harness.policy(1))
        again = harness.accept()
        again.acceptLogin()
        self.assertTrue(harness.service.connected)
        self.successResultOf(waiting)
        ping = harness.service.sendAction("Ping")
        again.reply("Ping")
        self.successResultOf(ping)

    def test_refusedReconnectRetriedForever(self) -> None:
        """Refused connects are retried with growing backoff until one succeeds."""
        harness = Harness()
        harness.service.startService()
        for failures in range(1, 8):
            harness.refuse()
            delay = harness.policy(failures)
            harness.reactor.advance(delay - 0.001)
            self.assertEqual(harness.pendingAttempts(), 0)
            harness.reactor.advance(0.001)
            self.assertEqual(harness.pendingAttempts(), 1)
        self.assertEqual(harness.policy(7), 8.0)  # capped at maxDelay
        harness.accept().acceptLogin()
        self.assertTrue(harness.service.connected)

    def test_refusedLoginClosesAndRetries(self) -> None:
        """A refused login hangs up, is logged without the secret, and is retried."""
        harness = Harness()
        harness.service.startService()
        asterisk = harness.accept()
        with capturedLogs() as events:
            asterisk.reply("Login", "Message: Authentication failed", response="Error")
            self.assertTrue(asterisk.transport.disconnecting)
            asterisk.lose()  # Asterisk hangs up too; must not raise
        text = [formatEvent(e) for e in events]
        self.assertTrue(any("Authentication failed" in t for t in text), text)
        self.assertFalse(any(SECRET in repr(e) for e in events))
        self.assertFalse(harness.service.connected)
        harness.reactor.advance(harness.policy(1))
        harness.accept().acceptLogin()
        self.assertTrue(harness.service.connected)

    def test_secretNeverLogged(self) -> None:
        """No log event of a login, a refusal, a loss or a reconnect contains the secret."""
        harness = Harness()
        with capturedLogs() as events:
            harness.service.startService()
            harness.accept().reply("Login", "Message: Authentication failed", response="Error")
            harness.reactor.advance(harness.policy(1))
            asterisk = harness.accept()
            asterisk.acceptLogin()
            asterisk.lose()
            harness.reactor.advance(harness.policy(1))
        self.assertGreater(len(events), 3)
        self.assertEqual([e for e in events if SECRET in repr(e) or SECRET in formatEvent(e)], [])

    def test_lostDuringLoginRetries(self) -> None:
        """A link lost before the login reply counts as a failed attempt and is retried."""
        harness = Harness()
        harness.service.startService()
        harness.accept().lose(ConnectionLost("reset"))
        harness.reactor.advance(harness.policy(1))
        harness.accept().acceptLogin()
        self.assertTrue(harness.service.connected)

    def test_silentLoginTimesOut(self) -> None:
        """A peer that never answers the login is hung up on after the action timeout."""
        harness = Harness(actionTimeout=10)
        harness.service.startService()
        asterisk = harness.accept()
        harness.reactor.advance(10)
        self.assertTrue(asterisk.transport.disconnecting)
        asterisk.lose()
        harness.reactor.advance(harness.policy(1))
        harness.accept().acceptLogin()
        self.assertTrue(harness.service.connected)

    def test_stopClosesAndCancelsWaiters(self) -> None:
        """Stopping closes the link, fails pending actions and whenConnected waiters."""
        harness = Harness()
        asterisk = harness.connect()
        pending = harness.service.sendAction("Ping")
        stopped = harness.service.stopService()
        self.assertTrue(asterisk.transport.disconnecting)
        asterisk.lose()
        self.successResultOf(stopped)
        self.failureResultOf(pending, AMIConnectionLost)
        self.failureResultOf(harness.service.whenConnected(), CancelledError)
        harness.reactor.advance(100)
        self.assertEqual(harness.pendingAttempts(), 0)

    def test_stopDuringLogin(self) -> None:
        """Stopping while the login is pending hangs up cleanly."""
        harness = Harness()
        harness.service.startService()
        waiting = harness.service.whenConnected()
        asterisk = harness.accept()
        stopped = harness.service.stopService()
        self.assertTrue(asterisk.transport.disconnecting)
        asterisk.lose()
        self.successResultOf(stopped)
        self.failureResultOf(waiting, CancelledError)


class EventTests(SynchronousTestCase):
    def test_subscribeByName(self) -> None:
        """A subscription by name gets only those events, in any case; None gets all."""
        harness = Harness()
        asterisk = harness.connect()
        hangups: list[AMIMessage] = []
        everything: list[AMIMessage] = []
        harness.service.subscribe("hangup", hangups.append)
        harness.service.subscribe(None, everything.append)
        asterisk.send("Event: Newchannel", "Uniqueid: 1")
        asterisk.send("Event: Hangup", "Uniqueid: 1")
        self.assertEqual([e["Uniqueid"] for e in hangups], ["1"])
        self.assertEqual([e.name for e in everything], ["Newchannel", "Hangup"])

    def test_unsubscribe(self) -> None:
        """After unsubscribing, a callback gets no more events."""
        harness = Harness()
        asterisk = harness.connect()
        seen: list[AMIMessage] = []
        unsubscribe = harness.service.subscribe("Hangup", seen.append)
        asterisk.send("Event: Hangup")
        unsubscribe()
        unsubscribe()
        asterisk.send("Event: Hangup")
        self.assertEqual(len(seen), 1)

    def test_subscriptionSurvivesReconnect(self) -> None:
        """Subscriptions made once keep receiving events after a reconnect."""
        harness = Harness()
        seen: list[str | None] = []
        harness.service.subscribe("DeviceStateChange", lambda e: seen.append(e.get("State")))
        first = harness.connect()
        first.send("Event: DeviceStateChange", "State: INUSE")
        first.lose()
        harness.reactor.advance(harness.policy(1))
        second = harness.connect()
        second.send("Event: DeviceStateChange", "State: NOT_INUSE")
        self.assertEqual(seen, ["INUSE", "NOT_INUSE"])

    def test_failingSubscriberIsolated(self) -> None:
        """A subscriber that raises or fails its Deferred is logged; others still run."""
        harness = Harness()
        asterisk = harness.connect()
        seen: list[AMIMessage] = []

        def broken(event: AMIMessage) -> None:
            raise RuntimeError("subscriber bug")

        harness.service.subscribe("Hangup", broken)
        harness.service.subscribe("Hangup", lambda e: fail(ValueError("async bug")))
        harness.service.subscribe("Hangup", seen.append)
        asterisk.send("Event: Hangup")
        asterisk.send("Event: Hangup")
        self.assertEqual(len(seen), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError, ValueError)), 4)
        self.assertFalse(asterisk.transport.disconnecting)


class HookTests(SynchronousTestCase):
    def test_hooksRunOnEveryConnection(self) -> None:
        """On-connected hooks run after each login, with that connection."""
        harness = Harness()
        calls: list[AMIProtocol] = []
        harness.service.addConnectedHook(calls.append)
        harness.service.startService()
        first = harness.accept()
        self.assertEqual(calls, [])
        first.acceptLogin()
        first.lose()
        harness.reactor.advance(harness.policy(1))
        harness.connect()
        self.assertEqual(len(calls), 2)
        self.assertIsNot(calls[0], calls[1])
        self.assertIs(calls[1], harness.service.protocol)

    def test_hookCanResync(self) -> None:
        """A hook can already use the service, e.g. to resync from an event list."""
        harness = Harness()
        results: list[list[str]] = []

        def resync(protocol: AMIProtocol) -> Deferred[None]:
            d = harness.service.collectEvents("DeviceStateList")
            return d.addCallback(lambda events: results.append([e["Device"] for e in events]))

        harness.service.addConnectedHook(resync)
        asterisk = harness.connect()
        action_id = asterisk.last("DeviceStateList")["ActionID"]
        asterisk.reply("DeviceStateList", "EventList: start")
        asterisk.send("Event: DeviceStateChange", f"ActionID: {action_id}", "Device: PJSIP/100")
        asterisk.send("Event: DeviceStateListComplete", f"ActionID: {action_id}", "EventList: Complete")
        self.assertEqual(results, [["PJSIP/100"]])

    def test_failingHookIsLogged(self) -> None:
        """A hook that raises is logged; later hooks still run and the link stays up."""
        harness = Harness()
        ran: list[str] = []

        def broken(protocol: AMIProtocol) -> None:
            raise RuntimeError("hook bug")

        harness.service.addConnectedHook(broken)
        harness.service.addConnectedHook(lambda p: ran.append("second"))
        asterisk = harness.connect()
        self.assertEqual(ran, ["second"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(harness.service.connected)
        self.assertFalse(asterisk.transport.disconnecting)

    def test_hookCutShortByDisconnect(self) -> None:
        """A hook whose actions die with the link is logged as a warning, not an error."""
        harness = Harness()
        harness.service.addConnectedHook(lambda p: p.collectEvents("CoreShowChannels"))
        asterisk = harness.connect()
        asterisk.lose()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_removeHook(self) -> None:
        """A removed hook no longer runs."""
        harness = Harness()
        calls: list[AMIProtocol] = []
        remove = harness.service.addConnectedHook(calls.append)
        remove()
        harness.connect()
        self.assertEqual(calls, [])
