"""AMIProtocol against a scripted Asterisk on a StringTransport."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import (
    AMIActionError,
    AMIAuthenticationError,
    AMIConnectionLost,
    AMIEventList,
    AMIMessage,
    AMINotConnected,
    AMIProtocol,
    AMITimeout,
)

GREETING = b"Asterisk Call Manager/9.0.0\r\n"


def sentActions(transport: StringTransport) -> list[list[tuple[str, str]]]:
    """The actions written so far, each as its list of header pairs."""
    actions = []
    for block in transport.value().decode("utf-8").split("\r\n\r\n"):
        if block:
            actions.append([tuple(line.split(": ", 1)) for line in block.split("\r\n")])
    return actions


def actionIDs(transport: StringTransport) -> list[str]:
    return [dict(action)["ActionID"] for action in sentActions(transport)]


def message(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class Harness:
    """A connected AMIProtocol and what it wrote."""

    def __init__(self, clock: Clock | None = None, actionTimeout: float | None = None) -> None:
        self.events: list[AMIMessage] = []
        self.protocol = AMIProtocol(eventHandler=self.events.append, clock=clock, actionTimeout=actionTimeout)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(GREETING)

    def receive(self, *lines: str) -> None:
        self.protocol.dataReceived(message(*lines))

    def lastID(self) -> str:
        return actionIDs(self.transport)[-1]

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionLost("peer went away")))


class MessageTests(SynchronousTestCase):
    def test_caseInsensitiveLookup(self) -> None:
        """Headers are found whatever the case of the name asked for."""
        msg = AMIMessage([("CallerIDName", "Anna"), ("Uniqueid", "1.2")])
        self.assertEqual(msg["calleridname"], "Anna")
        self.assertEqual(msg.get("UNIQUEID"), "1.2")
        self.assertIn("callerIdName", msg)

    def test_missingHeader(self) -> None:
        """A missing header is a KeyError by index and the default by get."""
        msg = AMIMessage([("Event", "Hangup")])
        self.assertRaises(KeyError, lambda: msg["Channel"])
        self.assertEqual(msg.get("Channel", "none"), "none")

    def test_repeatedHeadersKeepOrder(self) -> None:
        """Repeated headers keep wire order; lookup gives the first."""
        msg = AMIMessage([("Variable", "a=1"), ("Event", "X"), ("Variable", "b=2")])
        self.assertEqual(msg.getall("variable"), ["a=1", "b=2"])
        self.assertEqual(msg["Variable"], "a=1")
        self.assertEqual(list(msg), ["Variable", "Event", "Variable"])

    def test_properties(self) -> None:
        """name, response and action_id read the Event, Response and ActionID headers."""
        event = AMIMessage([("Event", "Newchannel")])
        reply = AMIMessage([("Response", "Success"), ("ActionID", "x-1")])
        self.assertEqual((event.name, event.response, event.action_id), ("Newchannel", None, None))
        self.assertEqual((reply.name, reply.response, reply.action_id), (None, "Success", "x-1"))


class SendTests(SynchronousTestCase):
    def test_greeting(self) -> None:
        """The greeting line is recorded, not parsed as a message."""
        harness = Harness()
        self.assertEqual(harness.protocol.greeting, "Asterisk Call Manager/9.0.0")
        self.assertEqual(harness.events, [])

    def test_actionWireFormat(self) -> None:
        """An action is written as Action, ActionID, headers, blank line."""
        harness = Harness()
        harness.protocol.sendAction("Getvar", Channel="PJSIP/100-1", Variable="FOO")
        self.assertEqual(
            harness.transport.value(),
            b"Action: Getvar\r\nActionID: appliance-1\r\nChannel: PJSIP/100-1\r\nVariable: FOO\r\n\r\n",
        )

    def test_listValuesRepeatHeader(self) -> None:
        """A list value becomes one header line per element."""
        harness = Harness()
        harness.protocol.sendAction("Originate", Channel="Local/1@x", Variable=["a=1", "b=2"])
        self.assertIn(b"Variable: a=1\r\nVariable: b=2\r\n", harness.transport.value())

    def test_noneOmitsHeaderAndBoolIsTrueFalse(self) -> None:
        """None leaves a header out; booleans are written true/false."""
        harness = Harness()
        harness.protocol.sendAction("Originate", Async=True, Account=None)
        [action] = sentActions(harness.transport)
        self.assertEqual(action[2:], [("Async", "true")])

    def test_uniqueActionIDs(self) -> None:
        """Every action gets its own ActionID."""
        harness = Harness()
        for _ in range(3):
            harness.protocol.sendAction("Ping")
        ids = actionIDs(harness.transport)
        self.assertEqual(len(set(ids)), 3)

    def test_headerInjectionRefused(self) -> None:
        """A CR or LF in a value raises ValueError and writes nothing."""
        harness = Harness()
        for value in ["x\r\nAction: Originate", "x\nEvents: on", "x\r", ["ok", "a\nb"]]:
            self.assertRaises(ValueError, harness.protocol.sendAction, "Getvar", Variable=value)
        self.assertEqual(harness.transport.value(), b"")

    def test_badHeaderNamesRefused(self) -> None:
        """Header names with separators, and a caller-chosen ActionID, are refused."""
        harness = Harness()
        send = harness.protocol.sendActionHeaders
        self.assertRaises(ValueError, send, "Getvar", {"Bad\r\nName": "x"})
        self.assertRaises(ValueError, send, "Getvar", {"Key: x": "y"})
        self.assertRaises(ValueError, send, "Getvar", {"ActionID": "mine"})
        self.assertRaises(ValueError, send, "Get var\r\n", {})
        self.assertEqual(harness.transport.value(), b"")

    def test_sendAfterLossFails(self) -> None:
        """An action on a lost connection fails at once with AMINotConnected."""
        harness = Harness()
        harness.lose()
        self.failureResultOf(harness.protocol.sendAction("Ping"), AMINotConnected)


class ReplyTests(SynchronousTestCase):
    def test_replyFiresAction(self) -> None:
        """The reply with the action's ActionID fires its Deferred."""
        harness = Harness()
        d = harness.protocol.sendAction("Ping")
        self.assertNoResult(d)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}", "Ping: Pong")
        self.assertEqual(self.successResultOf(d)["Ping"], "Pong")

    def test_concurrentSameActionOutOfOrder(self) -> None:
        """Two Getvar in flight each get their own reply, whatever the reply order."""
        harness = Harness()
        first = harness.protocol.sendAction("Getvar", Variable="A")
        second = harness.protocol.sendAction("Getvar", Variable="B")
        id_a, id_b = actionIDs(harness.transport)
        harness.receive("Response: Success", f"ActionID: {id_b}", "Variable: B", "Value: bee")
        self.assertNoResult(first)
        harness.receive("Response: Success", f"ActionID: {id_a}", "Variable: A", "Value: ay")
        self.assertEqual(self.successResultOf(first)["Value"], "ay")
        self.assertEqual(self.successResultOf(second)["Value"], "bee")

    def test_replyWithoutActionIDIgnored(self) -> None:
        """A reply naming no pending ActionID fires nothing and breaks nothing."""
        harness = Harness()
        d = harness.protocol.sendAction("Ping")
        harness.receive("Response: Success", "Ping: Pong")
        harness.receive("Response: Success", "ActionID: someone-else", "Ping: Pong")
        self.assertNoResult(d)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.successResultOf(d)
        self.assertEqual(harness.events, [])

    def test_errorResponse(self) -> None:
        """Response: Error fails the action with AMIActionError carrying the message."""
        harness = Harness()
        d = harness.protocol.sendAction("Hangup", Channel="PJSIP/nope")
        harness.receive("Response: Error", f"ActionID: {harness.lastID()}", "Message: No such channel")
        error = self.failureResultOf(d, AMIActionError).value
        self.assertEqual(error.message, "No such channel")
        self.assertEqual(error.response["Response"], "Error")

    def test_replySplitAcrossPackets(self) -> None:
        """A reply arriving in arbitrary pieces is reassembled."""
        harness = Harness()
        d = harness.protocol.sendAction("Ping")
        data = message("Response: Success", f"ActionID: {harness.lastID()}", "Ping: Pong")
        for i in range(len(data)):
            harness.protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.successResultOf(d)["Ping"], "Pong")

    def test_cancelForgetsActionID(self) -> None:
        """Cancelling an action forgets it; its late reply is ignored."""
        harness = Harness()
        d = harness.protocol.sendAction("Ping")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.assertFalse(harness.transport.disconnecting)


class DecodingTests(SynchronousTestCase):
    def test_latin1Header(self) -> None:
        """A Latin-1 caller name is decoded as Latin-1 and the link stays up."""
        harness = Harness()
        harness.protocol.dataReceived(
            b"Event: Newchannel\r\nCallerIDName: M\xfcller J\xf6rg\r\nUniqueid: 1.1\r\n\r\n"
        )
        harness.receive("Event: Hangup", "Uniqueid: 1.1")
        self.assertEqual(harness.events[0]["CallerIDName"], "Müller Jörg")
        self.assertEqual(harness.events[1].name, "Hangup")
        self.assertFalse(harness.transport.disconnecting)

    def test_utf8Header(self) -> None:
        """A UTF-8 caller name is decoded as UTF-8."""
        harness = Harness()
        harness.protocol.dataReceived("Event: Newchannel\r\nCallerIDName: Zoë 李\r\n\r\n".encode())
        self.assertEqual(harness.events[0]["CallerIDName"], "Zoë 李")

    def test_lineWithoutSeparatorKept(self) -> None:
        """A line without ': ' inside a message is kept, the message still delivered."""
        harness = Harness()
        harness.receive("Event: Odd", "this line has no key", "Key: value")
        [event] = harness.events
        self.assertEqual(event.extra_lines, ["this line has no key"])
        self.assertEqual(event["Key"], "value")

    def test_valueKeepsLeadingSpaces(self) -> None:
        """Only the one space after the colon is separator; an empty value is fine."""
        harness = Harness()
        harness.receive("Event: X", "Indented:   three", "Empty:", "Colons: a: b")
        [event] = harness.events
        self.assertEqual((event["Indented"], event["Empty"], event["Colons"]), ("  three", "", "a: b"))

    def test_garbageBetweenMessages(self) -> None:
        """Garbage lines and stray blank lines neither crash nor desync the parser."""
        harness = Harness()
        d = harness.protocol.sendAction("Ping")
        harness.protocol.dataReceived(b"\r\n\r\n\xff\xfe garbage\r\n\r\nnot: a reply\r\n\r\n")
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.successResultOf(d)
        self.assertFalse(harness.transport.disconnecting)
        self.assertEqual(harness.events, [])

    def test_missingGreeting(self) -> None:
        """Without a greeting the first line is taken as part of a message."""
        protocol = AMIProtocol()
        events: list[AMIMessage] = []
        protocol.eventHandler = events.append
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(message("Event: FullyBooted", "Status: Fully Booted"))
        self.assertIsNone(protocol.greeting)
        self.assertEqual([e.name for e in events], ["FullyBooted"])

    def test_overlongLineDropsConnection(self) -> None:
        """A line beyond MAX_LENGTH closes the connection instead of eating memory."""
        harness = Harness()
        harness.protocol.dataReceived(b"Event: X\r\nData: " + b"x" * (AMIProtocol.MAX_LENGTH + 1))
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_eventHandlerErrorIsolated(self) -> None:
        """An event handler that raises is logged; later messages still arrive."""
        harness = Harness()
        seen: list[str | None] = []

        def handler(event: AMIMessage) -> None:
            seen.append(event.name)
            if event.name == "Bad":
                raise RuntimeError("handler bug")

        harness.protocol.eventHandler = handler
        harness.receive("Event: Bad")
        harness.receive("Event: Good")
        self.assertEqual(seen, ["Bad", "Good"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(harness.transport.disconnecting)


class CommandTests(SynchronousTestCase):
    def test_outputHeaders(self) -> None:
        """Asterisk >= 14: the Output headers are the output lines, empty ones included."""
        harness = Harness()
        d = harness.protocol.command("core show uptime")
        harness.receive(
            "Response: Success",
            f"ActionID: {harness.lastID()}",
            "Message: Command output follows",
            "Output: System uptime: 1 hour",
            "Output:",
            "Output: Last reload: 5 minutes",
        )
        self.assertEqual(self.successResultOf(d), ["System uptime: 1 hour", "", "Last reload: 5 minutes"])

    def test_followsFormat(self) -> None:
        """Asterisk < 14: raw LF-separated output up to --END COMMAND-- is the output."""
        harness = Harness()
        d = harness.protocol.command("sip show peers")
        harness.protocol.dataReceived(
            b"Response: Follows\r\nPrivilege: Command\r\n"
            + f"ActionID: {harness.lastID()}\r\n".encode()
            + b"Name/username  Host\nalice: dynamic\n\n2 sip peers\n--END COMMAND--\r\n\r\n"
        )
        self.assertEqual(
            self.successResultOf(d), ["Name/username  Host", "alice: dynamic", "", "2 sip peers"]
        )

    def test_followsFormatMarkerGluedToOutput(self) -> None:
        """Output lines sent as CRLF lines, the marker glued to the last one, still parse."""
        harness = Harness()
        d = harness.protocol.command("core show version")
        harness.receive(
            "Response: Follows",
            "Privilege: Command",
            f"ActionID: {harness.lastID()}",
            "",
            "Event: not an event, just output",
            "Asterisk 11.25.3--END COMMAND--",
        )
        self.assertEqual(self.successResultOf(d), ["Event: not an event, just output", "Asterisk 11.25.3"])
        self.assertEqual(harness.events, [])

    def test_followsThenNextMessage(self) -> None:
        """After an old-style reply the parser is back to normal messages."""
        harness = Harness()
        d = harness.protocol.command("x")
        harness.receive("Response: Follows", f"ActionID: {harness.lastID()}", "--END COMMAND--")
        harness.receive("Event: Hangup", "Uniqueid: 1")
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual([e.name for e in harness.events], ["Hangup"])

    def test_commandError(self) -> None:
        """A failed command fails with its output as the message."""
        harness = Harness()
        d = harness.protocol.command("core show hi")
        harness.receive(
            "Response: Error",
            f"ActionID: {harness.lastID()}",
            "Message: Command output follows",
            "Output: No such command 'core show hi'",
        )
        error = self.failureResultOf(d, AMIActionError).value
        self.assertEqual(error.message, "No such command 'core show hi'")


class EventListTests(SynchronousTestCase):
    def test_collect(self) -> None:
        """An event list yields its events; the Complete event rides along."""
        harness = Harness()
        d = harness.protocol.collectEvents("CoreShowChannels")
        action_id = harness.lastID()
        harness.receive(
            "Response: Success", f"ActionID: {action_id}", "EventList: start", "Message: Channels will follow"
        )
        harness.receive("Event: CoreShowChannel", f"ActionID: {action_id}", "Channel: PJSIP/100-1")
        harness.receive("Event: CoreShowChannel", f"ActionID: {action_id}", "Channel: PJSIP/200-2")
        self.assertNoResult(d)
        harness.receive(
            "Event: CoreShowChannelsComplete", f"ActionID: {action_id}", "EventList: Complete", "ListItems: 2"
        )
        events = self.successResultOf(d)
        self.assertIsInstance(events, AMIEventList)
        self.assertEqual([e["Channel"] for e in events], ["PJSIP/100-1", "PJSIP/200-2"])
        self.assertEqual(events.complete["ListItems"], "2")  # type: ignore[index]
        self.assertEqual(events.response["EventList"], "start")  # type: ignore[index]
        self.assertEqual(harness.events, [])

    def test_emptyList(self) -> None:
        """A list with no items yields an empty list."""
        harness = Harness()
        d = harness.protocol.collectEvents("PJSIPShowContacts")
        action_id = harness.lastID()
        harness.receive("Response: Success", f"ActionID: {action_id}", "EventList: start")
        harness.receive(
            "Event: ContactListComplete", f"ActionID: {action_id}", "EventList: Complete", "ListItems: 0"
        )
        self.assertEqual(self.successResultOf(d), [])

    def test_unsolicitedEventsInterleaved(self) -> None:
        """Events without the list's ActionID go to the event handler, not the list."""
        harness = Harness()
        d = harness.protocol.collectEvents("DeviceStateList")
        action_id = harness.lastID()
        harness.receive("Response: Success", f"ActionID: {action_id}", "EventList: start")
        harness.receive("Event: DeviceStateChange", f"ActionID: {action_id}", "Device: PJSIP/100")
        harness.receive("Event: DeviceStateChange", "Device: PJSIP/200")
        harness.receive("Event: DeviceStateChange", "ActionID: other-7", "Device: PJSIP/300")
        harness.receive("Event: DeviceStateListComplete", f"ActionID: {action_id}", "EventList: Complete")
        self.assertEqual([e["Device"] for e in self.successResultOf(d)], ["PJSIP/100"])
        self.assertEqual([e["Device"] for e in harness.events], ["PJSIP/200", "PJSIP/300"])

    def test_concurrentLists(self) -> None:
        """Two lists of the same kind in flight are kept apart by ActionID."""
        harness = Harness()
        first = harness.protocol.collectEvents("CoreShowChannels")
        second = harness.protocol.collectEvents("CoreShowChannels")
        id_a, id_b = actionIDs(harness.transport)
        for action_id in (id_b, id_a):
            harness.receive("Response: Success", f"ActionID: {action_id}", "EventList: start")
        harness.receive("Event: CoreShowChannel", f"ActionID: {id_b}", "Channel: B")
        harness.receive("Event: CoreShowChannel", f"ActionID: {id_a}", "Channel: A")
        harness.receive("Event: CoreShowChannelsComplete", f"ActionID: {id_b}", "EventList: Complete")
        harness.receive("Event: CoreShowChannelsComplete", f"ActionID: {id_a}", "EventList: Complete")
        self.assertEqual([e["Channel"] for e in self.successResultOf(first)], ["A"])
        self.assertEqual([e["Channel"] for e in self.successResultOf(second)], ["B"])

    def test_errorResponse(self) -> None:
        """An error reply to an event-list action fails it."""
        harness = Harness()
        d = harness.protocol.collectEvents("PJSIPShowContacts")
        harness.receive(
            "Response: Error", f"ActionID: {harness.lastID()}", "Message: Invalid/unknown command"
        )
        error = self.failureResultOf(d, AMIActionError).value
        self.assertEqual(error.message, "Invalid/unknown command")

    def test_successWithoutList(self) -> None:
        """A plain Success that announces no list completes at once, empty."""
        harness = Harness()
        d = harness.protocol.collectEvents("Ping")
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}", "Ping: Pong")
        self.assertEqual(self.successResultOf(d), [])


class EventTests(SynchronousTestCase):
    def test_unsolicitedEvent(self) -> None:
        """An event without ActionID goes to the event handler."""
        harness = Harness()
        harness.receive("Event: FullyBooted", "Privilege: system,all", "Status: Fully Booted")
        self.assertEqual([e.name for e in harness.events], ["FullyBooted"])

    def test_eventForFinishedAction(self) -> None:
        """An event naming an action already answered (OriginateResponse) goes to the handler."""
        harness = Harness()
        d = harness.protocol.sendAction("Originate", Channel="Local/1@x", Async=True)
        action_id = harness.lastID()
        harness.receive(
            "Response: Success", f"ActionID: {action_id}", "Message: Originate successfully queued"
        )
        self.successResultOf(d)
        harness.receive("Event: OriginateResponse", f"ActionID: {action_id}", "Response: Failure")
        [event] = harness.events
        self.assertEqual((event.name, event["Response"]), ("OriginateResponse", "Failure"))

    def test_eventWithUnknownActionID(self) -> None:
        """An event whose ActionID matches no pending list is unsolicited."""
        harness = Harness()
        harness.receive("Event: UserEvent", "ActionID: elsewhere-3", "UserEvent: ping")
        self.assertEqual([e.name for e in harness.events], ["UserEvent"])


class LifecycleTests(SynchronousTestCase):
    def test_lossFailsEverything(self) -> None:
        """Losing the connection fails every pending action and list with AMIConnectionLost."""
        harness = Harness()
        single = harness.protocol.sendAction("Getvar", Variable="A")
        other = harness.protocol.sendAction("Getvar", Variable="B")
        listing = harness.protocol.collectEvents("CoreShowChannels")
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}", "EventList: start")
        harness.lose()
        for d in (single, other, listing):
            failure = self.failureResultOf(d, AMIConnectionLost)
            self.assertIn("peer went away", str(failure.value))

    def test_whenDisconnectedFiresBeforeActionsFail(self) -> None:
        """whenDisconnected fires first, so errbacks already see the link as down."""
        harness = Harness()
        order: list[str] = []
        harness.protocol.whenDisconnected().addCallback(lambda _: order.append("disconnected"))
        harness.protocol.sendAction("Ping").addErrback(lambda _: order.append("action failed"))
        harness.lose()
        self.assertEqual(order, ["disconnected", "action failed"])
        self.successResultOf(harness.protocol.whenDisconnected())

    def test_timeout(self) -> None:
        """An unanswered action fails with AMITimeout after the timeout; a late reply is ignored."""
        clock = Clock()
        harness = Harness(clock=clock, actionTimeout=5)
        d = harness.protocol.sendAction("Ping")
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.2)
        self.failureResultOf(d, AMITimeout)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.assertFalse(harness.transport.disconnecting)

    def test_timedOutListDropsLateEvents(self) -> None:
        """Late events of a timed-out list are dropped, not broadcast."""
        clock = Clock()
        harness = Harness(clock=clock, actionTimeout=5)
        d = harness.protocol.collectEvents("CoreShowChannels")
        action_id = harness.lastID()
        clock.advance(5)
        self.failureResultOf(d, AMITimeout)
        harness.receive("Event: CoreShowChannel", f"ActionID: {action_id}", "Channel: late")
        self.assertEqual(harness.events, [])

    def test_replyCancelsTimer(self) -> None:
        """A reply in time cancels the timeout call."""
        clock = Clock()
        harness = Harness(clock=clock, actionTimeout=5)
        d = harness.protocol.sendAction("Ping")
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.successResultOf(d)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_perActionTimeout(self) -> None:
        """sendActionHeaders' timeout overrides the protocol's default."""
        clock = Clock()
        harness = Harness(clock=clock, actionTimeout=5)
        d = harness.protocol.sendActionHeaders("Originate", {"Channel": "Local/1@x"}, timeout=60)
        clock.advance(30)
        self.assertNoResult(d)
        clock.advance(30)
        self.failureResultOf(d, AMITimeout)

    def test_lossCancelsTimers(self) -> None:
        """Losing the connection leaves no timeout calls behind."""
        clock = Clock()
        harness = Harness(clock=clock, actionTimeout=5)
        d = harness.protocol.sendAction("Ping")
        harness.lose()
        self.failureResultOf(d, AMIConnectionLost)
        self.assertEqual(clock.getDelayedCalls(), [])


class LoginTests(SynchronousTestCase):
    def test_login(self) -> None:
        """login sends Login with Username, Secret and Events: on."""
        harness = Harness()
        d = harness.protocol.login("appliance", "s3cret")
        [action] = sentActions(harness.transport)
        self.assertEqual(
            dict(action),
            {
                "Action": "Login",
                "ActionID": harness.lastID(),
                "Username": "appliance",
                "Secret": "s3cret",
                "Events": "on",
            },
        )
        harness.receive(
            "Response: Success", f"ActionID: {harness.lastID()}", "Message: Authentication accepted"
        )
        self.successResultOf(d)

    def test_loginRefused(self) -> None:
        """A refused login fails with AMIAuthenticationError naming the user."""
        harness = Harness()
        d = harness.protocol.login("appliance", "wrong")
        harness.receive("Response: Error", f"ActionID: {harness.lastID()}", "Message: Authentication failed")
        error = self.failureResultOf(d, AMIAuthenticationError).value
        self.assertIn("'appliance'", error.message)
        self.assertIn("Authentication failed", error.message)
        self.assertNotIn("wrong", error.message)

    def test_md5Login(self) -> None:
        """MD5 login answers the challenge with md5(challenge + secret)."""
        harness = Harness()
        d = harness.protocol.login("appliance", "s3cret", md5=True)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}", "Challenge: 840415273")
        login = dict(sentActions(harness.transport)[-1])
        self.assertEqual(login["Key"], hashlib.md5(b"840415273s3cret").hexdigest())
        self.assertNotIn("Secret", login)
        harness.receive("Response: Success", f"ActionID: {harness.lastID()}")
        self.successResultOf(d)

    def test_loginLost(self) -> None:
        """A connection lost during login is AMIConnectionLost, not an auth error."""
        harness = Harness()
        d = harness.protocol.login("appliance", "s3cret")
        harness.lose()
        self.failureResultOf(d, AMIConnectionLost)
