"""FastAGI server: environment, routing, replies, hangup, queueing, quoting, failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from appliance.asterisk.fastagi import (
    DEFAULT_REQUEST_TIMEOUT,
    ENVIRONMENT_DEADLINE,
    PUSH_OUT_GRACE,
    AGIChannelDead,
    AGICommandError,
    AGIConnectionLost,
    AGIInvalidCommand,
    AGIResponse,
    AGIResponseError,
    AGIUsageError,
    FastAGIFactory,
    FastAGIProtocol,
    formatCommand,
    parseResponse,
    quote,
)

CHANNEL = "PJSIP/2001-00000001"
UNIQUEID = "1700000000.1"


def environment(
    script: str = "callback?target=2001&lang=de",
    args: Sequence[str] = (),
    callerName: bytes = b"Alice",
) -> bytes:
    """The environment block Asterisk sends for AGI(agi://127.0.0.1:4573/<script>,<args>)."""
    lines = [
        b"agi_network: yes",
        b"agi_network_script: " + script.encode(),
        b"agi_request: agi://127.0.0.1:4573/" + script.encode(),
        b"agi_channel: " + CHANNEL.encode(),
        b"agi_language: de",
        b"agi_type: PJSIP",
        b"agi_uniqueid: " + UNIQUEID.encode(),
        b"agi_version: 22.0.0",
        b"agi_callerid: 2001",
        b"agi_calleridname: " + callerName,
        b"agi_context: appliance-call",
        b"agi_extension: 2002",
        b"agi_priority: 2",
        b"agi_accountcode: ",
    ]
    lines += [b"agi_arg_%d: %s" % (i, arg.encode()) for i, arg in enumerate(args, 1)]
    return b"\n".join(lines) + b"\n\n"


class Handler:
    """A route handler that records its calls and finishes when told."""

    def __init__(self) -> None:
        self.calls: list[FastAGIProtocol] = []
        self.done: Deferred[None] = Deferred()

    def __call__(self, agi: FastAGIProtocol) -> Deferred[None]:
        self.calls.append(agi)
        return self.done


def connect(
    routes: dict[str, Any], clock: Clock | None = None, timeout: float = DEFAULT_REQUEST_TIMEOUT
) -> tuple[FastAGIProtocol, StringTransport, Clock]:
    clock = clock if clock is not None else Clock()
    factory = FastAGIFactory(routes, clock, requestTimeout=timeout)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def running() -> tuple[FastAGIProtocol, StringTransport, Handler]:
    """A session whose handler is running and has sent nothing yet."""
    handler = Handler()
    proto, transport, _ = connect({"callback": handler})
    proto.dataReceived(environment())
    return proto, transport, handler


def asteriskParseArgs(line: bytes) -> list[bytes]:
    """How res_agi.c parse_args splits a command line, restated for the tests.

    Unquoted space/tab separates; an unescaped double quote toggles quoting
    and is dropped (opening one after whitespace starts an argument, even an
    empty one); a backslash makes the next byte literal and is dropped.
    """
    args: list[bytearray] = []
    quoted = escaped = False
    between = True
    for byte in line:
        if byte == ord('"') and not escaped:
            quoted = not quoted
            if quoted and between:
                args.append(bytearray())
                between = False
            continue
        if byte in b" \t" and not quoted and not escaped:
            between = True
            continue
        if byte == ord("\\") and not escaped:
            escaped = True
            continue
        if between:
            args.append(bytearray())
            between = False
        args[-1].append(byte)
        escaped = False
    return [bytes(arg) for arg in args]


def levels(events: Sequence[LogEvent], level: LogLevel) -> list[LogEvent]:
    return [event for event in events if event["log_level"] == level]


class EnvironmentTests(SynchronousTestCase):
    def test_environmentParsed(self) -> None:
        """Each agi_xxx line becomes one env entry, empty values included."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        proto.dataReceived(environment())
        self.assertEqual(proto.env["agi_channel"], CHANNEL)
        self.assertEqual(proto.env["agi_extension"], "2002")
        self.assertEqual(proto.env["agi_accountcode"], "")
        self.assertEqual((proto.channel, proto.uniqueid), (CHANNEL, UNIQUEID))

    def test_handlerWaitsForEmptyLine(self) -> None:
        """The handler is not called until the environment's empty line arrives."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        block = environment()
        proto.dataReceived(block[:-1])
        self.assertEqual(handler.calls, [])
        proto.dataReceived(block[-1:])
        self.assertEqual(handler.calls, [proto])

    def test_environmentInPieces(self) -> None:
        """An environment split at arbitrary byte boundaries parses the same."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        for i in range(0, len(environment()), 7):
            proto.dataReceived(environment()[i : i + 7])
        self.assertEqual(handler.calls, [proto])
        self.assertEqual(proto.env["agi_calleridname"], "Alice")

    def test_scriptAndQuery(self) -> None:
        """The script is the path of agi_network_script; the query is parsed into args."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        proto.dataReceived(environment("callback?target=2001&lang=de&x=1&x=2&name=A%20B"))
        self.assertEqual(proto.script, "callback")
        self.assertEqual(proto.args.get("target"), "2001")
        self.assertEqual(proto.args.get("name"), "A B")
        self.assertEqual(proto.args.query["x"], ("1", "2"))
        self.assertIsNone(proto.args.get("missing"))

    def test_leadingSlashDropped(self) -> None:
        """A path written with an extra slash routes like the plain one."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        proto.dataReceived(environment("/callback"))
        self.assertEqual(handler.calls, [proto])

    def test_positionalArgs(self) -> None:
        """agi_arg_1..N (extra AGI() arguments) become args.positional in order."""
        handler = Handler()
        proto, _, _ = connect({"call": handler})
        proto.dataReceived(environment("call", args=["2002", "internal", "a b"]))
        self.assertEqual(proto.args.positional, ("2002", "internal", "a b"))

    def test_latin1CallerName(self) -> None:
        """A caller name that is not UTF-8 is decoded as Latin-1."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        proto.dataReceived(environment(callerName="Müller".encode("latin-1")))
        self.assertEqual(proto.env["agi_calleridname"], "Müller")

    def test_utf8CallerName(self) -> None:
        """A UTF-8 caller name is decoded as UTF-8."""
        handler = Handler()
        proto, _, _ = connect({"callback": handler})
        proto.dataReceived(environment(callerName="Müller €".encode()))
        self.assertEqual(proto.env["agi_calleridname"], "Müller €")


class RoutingTests(SynchronousTestCase):
    def test_routedHandlerCalledOnce(self) -> None:
        """Only the handler registered for the script runs, once, with the session."""
        callback, other = Handler(), Handler()
        proto, _, _ = connect({"callback": callback, "feature": other})
        proto.dataReceived(environment("callback"))
        self.assertEqual(callback.calls, [proto])
        self.assertEqual(other.calls, [])

    def test_handlerFinishedClosesCleanly(self) -> None:
        """When the handler's Deferred fires the connection closes without FAILURE."""
        _, transport, handler = running()
        self.assertFalse(transport.disconnecting)
        handler.done.callback(None)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_asyncHandler(self) -> None:
        """A coroutine handler is run and its commands are carried."""
        responses: list[AGIResponse] = []

        async def handler(agi: FastAGIProtocol) -> None:
            responses.append(await agi.sendCommand("ANSWER"))

        proto, transport, _ = connect({"callback": handler})
        proto.dataReceived(environment())
        self.assertEqual(transport.value(), b"ANSWER\n")
        proto.dataReceived(b"200 result=0\n")
        self.assertEqual(responses[0].result, 0)
        self.assertTrue(transport.disconnecting)

    def test_handlerExceptionLoggedAndClosed(self) -> None:
        """A handler that raises is logged with the call's identity; the call was taken, so
        Asterisk gets no FAILURE (which would make the dialplan dial the target again)."""

        def handler(agi: FastAGIProtocol) -> None:
            raise RuntimeError("boom")

        with capturedLogs() as events:
            proto, transport, _ = connect({"callback": handler})
            proto.dataReceived(environment())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        [event] = levels(events, LogLevel.critical)
        self.assertEqual(
            (event["script"], event["channel"], event["uniqueid"]), ("callback", CHANNEL, UNIQUEID)
        )

    def test_handlerFailureAfterHangupIsNotAnError(self) -> None:
        """A handler stopped by 511 after the caller hung up is logged at info, not as a failure."""
        proto, transport, handler = running()
        d = proto.sendCommand('STREAM FILE hello ""')
        d.addErrback(handler.done.errback)
        with capturedLogs() as events:
            proto.dataReceived(b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(levels(events, LogLevel.critical), [])
        self.assertTrue(transport.disconnecting)

    def test_unknownScript(self) -> None:
        """An unrouted script is logged as an error, gets FAILURE and is closed."""
        handler = Handler()
        with capturedLogs() as events:
            proto, transport, _ = connect({"callback": handler})
            proto.dataReceived(environment("nosuch?x=1"))
        self.assertEqual(handler.calls, [])
        self.assertEqual(transport.value(), b"FAILURE\n")
        self.assertTrue(transport.disconnecting)
        [event] = levels(events, LogLevel.error)
        self.assertEqual((event["script"], event["uniqueid"]), ("nosuch", UNIQUEID))

    def test_factoryBuildsConfiguredProtocol(self) -> None:
        """The factory hands its routes, clock and timeout to every protocol."""
        routes = {"callback": Handler()}
        clock = Clock()
        factory = FastAGIFactory(routes, clock, requestTimeout=12.5)
        proto = factory.buildProtocol(None)
        self.assertIsInstance(proto, FastAGIProtocol)
        self.assertIs(proto.routes, routes)
        self.assertIs(proto.clock, clock)
        self.assertEqual(proto.requestTimeout, 12.5)
        self.assertIs(proto.factory, factory)


class ReplyTests(SynchronousTestCase):
    def reply(self, line: bytes) -> AGIResponse:
        proto, _, _ = running()
        d = proto.sendCommand("NOOP")
        proto.dataReceived(line)
        return self.successResultOf(d)

    def test_plainResult(self) -> None:
        """`200 result=0` gives an int result and no data."""
        response = self.reply(b"200 result=0\n")
        self.assertEqual(
            (response.code, response.result, response.data, dict(response.extras)), (200, 0, None, {})
        )

    def test_negativeResult(self) -> None:
        """`200 result=-1` gives -1."""
        self.assertEqual(self.reply(b"200 result=-1\n").result, -1)

    def test_resultWithData(self) -> None:
        """`200 result=1 (value with spaces)` keeps the parenthesised data whole."""
        response = self.reply(b"200 result=1 (value with spaces)\n")
        self.assertEqual((response.result, response.data), (1, "value with spaces"))

    def test_resultWithExtras(self) -> None:
        """`key=value` after the result become extras."""
        response = self.reply(b"200 result=53 endpos=12345\n")
        self.assertEqual(
            (response.result, response.data, dict(response.extras)), (53, None, {"endpos": "12345"})
        )

    def test_resultWithDataAndExtras(self) -> None:
        """`(dtmf) endpos=...` gives both data and extras."""
        response = self.reply(b"200 result=35 (dtmf) endpos=8000\n")
        self.assertEqual((response.data, dict(response.extras)), ("dtmf", {"endpos": "8000"}))

    def test_crlfTolerated(self) -> None:
        """A reply ending in CRLF parses like one ending in LF."""
        self.assertEqual(self.reply(b"200 result=1 (x)\r\n").data, "x")

    def test_parseResponseTable(self) -> None:
        """parseResponse handles the shapes Asterisk's handlers print."""
        cases = [
            ("200 result=1 (a) b (c)", 1, "a) b (c", {}),
            ("200 result=1 (x) endpos=5)", 1, "x) endpos=5", {}),
            ("200 result=1 ()", 1, "", {}),
            ("200 result= (timeout)", "", "timeout", {}),
            ("200 result=0815", 815, None, {}),
            ("200 result=12# (timeout)", "12#", "timeout", {}),
            ("200 result=-1 (hangup) endpos=0", -1, "hangup", {"endpos": "0"}),
        ]
        for line, result, data, extras in cases:
            response = parseResponse(line)
            self.assertEqual(
                (response.result, response.data, dict(response.extras)), (result, data, extras), line
            )
        self.assertEqual(parseResponse("200 result=0815").resultText, "0815")

    def test_parseResponseRejects(self) -> None:
        """parseResponse refuses lines that are not 200 replies."""
        for line in ["510 Invalid or unknown command", "200 ok", "hello", ""]:
            self.assertRaises(ValueError, parseResponse, line)

    def test_invalidCommand(self) -> None:
        """510 fails the command with AGIInvalidCommand."""
        proto, _, _ = running()
        d = proto.sendCommand("FROB")
        proto.dataReceived(b"510 Invalid or unknown command\n")
        error = self.failureResultOf(d, AGIInvalidCommand).value
        self.assertEqual((error.code, error.command), (510, "FROB"))

    def test_channelDead(self) -> None:
        """511 fails the command with AGIChannelDead."""
        proto, _, _ = running()
        d = proto.sendCommand("ANSWER")
        proto.dataReceived(b"511 Command Not Permitted on a dead channel or intercept routine\n")
        self.failureResultOf(d, AGIChannelDead)

    def test_usageErrorMultiLine(self) -> None:
        """A 520- block is one AGIUsageError carrying the usage text."""
        proto, _, _ = running()
        d = proto.sendCommand("GET VARIABLE")
        proto.dataReceived(
            b"520-Invalid command syntax.  Proper usage follows:\n"
            b"Usage: GET VARIABLE <variablename>\n"
            b"200 result=1 (example in the usage text)\n"
            b"520 End of proper usage.\n"
        )
        error = self.failureResultOf(d, AGIUsageError).value
        self.assertEqual(
            error.usage, "Usage: GET VARIABLE <variablename>\n200 result=1 (example in the usage text)"
        )
        self.assertEqual(error.text, "Invalid command syntax.  Proper usage follows:")

    def test_nextCommandAfterUsageError(self) -> None:
        """After a 520 block the next command gets its own reply, not a usage line."""
        proto, transport, _ = running()
        first = proto.sendCommand("GET VARIABLE")
        second = proto.sendCommand('GET VARIABLE "X"')
        proto.dataReceived(b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n")
        self.assertNoResult(second)
        self.assertEqual(transport.value(), b"GET VARIABLE\n")
        proto.dataReceived(b"520 End of proper usage.\n")
        self.failureResultOf(first, AGIUsageError)
        self.assertEqual(transport.value(), b'GET VARIABLE\nGET VARIABLE "X"\n')
        self.assertNoResult(second)
        proto.dataReceived(b"200 result=1 (ok)\n")
        self.assertEqual(self.successResultOf(second).data, "ok")

    def test_usageEndGluedToText(self) -> None:
        """The end marker is found even when the usage text lacked its final newline."""
        proto, _, _ = running()
        d = proto.sendCommand("EXEC")
        proto.dataReceived(
            b"520-Invalid command syntax.  Proper usage follows:\nlast line520 End of proper usage.\n"
        )
        self.assertEqual(self.failureResultOf(d, AGIUsageError).value.usage, "last line")

    def test_usageErrorSingleLine(self) -> None:
        """`520 ... not available.` alone is a complete AGIUsageError."""
        proto, _, _ = running()
        d = proto.sendCommand("FOO")
        proto.dataReceived(b"520 Invalid command syntax.  Proper usage not available.\n")
        self.assertEqual(self.failureResultOf(d, AGIUsageError).value.usage, "")

    def test_otherErrorCode(self) -> None:
        """Any other status code fails the command with AGIResponseError."""
        proto, _, _ = running()
        d = proto.sendCommand("SPEECH CREATE x")
        proto.dataReceived(b"503 result=-2 Memory allocation failure\n")
        self.assertEqual(self.failureResultOf(d, AGIResponseError).value.code, 503)


class HangupTests(SynchronousTestCase):
    def test_hangupDoesNotAnswerPendingCommand(self) -> None:
        """An unprompted HANGUP leaves the pending command waiting for its real reply."""
        proto, _, _ = running()
        d = proto.sendCommand('STREAM FILE "hello" ""')
        proto.dataReceived(b"HANGUP\n")
        self.assertNoResult(d)
        self.assertTrue(proto.hungUp)
        proto.dataReceived(b"200 result=-1 endpos=1234\n")
        self.assertEqual(self.successResultOf(d).result, -1)

    def test_whenHungUpFires(self) -> None:
        """whenHungUp() fires when HANGUP arrives, and at once afterwards."""
        proto, _, _ = running()
        before = proto.whenHungUp()
        self.assertNoResult(before)
        proto.dataReceived(b"HANGUP\n")
        self.successResultOf(before)
        self.successResultOf(proto.whenHungUp())

    def test_commandsAfterHangupStillSent(self) -> None:
        """After HANGUP commands are still sent; Asterisk's 511 fails them."""
        proto, transport, _ = running()
        proto.dataReceived(b"HANGUP\n")
        d = proto.sendCommand("ANSWER")
        self.assertEqual(transport.value(), b"ANSWER\n")
        proto.dataReceived(b"511 Command Not Permitted on a dead channel or intercept routine\n")
        self.failureResultOf(d, AGIChannelDead)

    def test_repeatedHangupHarmless(self) -> None:
        """A second HANGUP line changes nothing."""
        proto, _, _ = running()
        d = proto.sendCommand("NOOP")
        proto.dataReceived(b"HANGUP\nHANGUP\n200 result=0\n")
        self.assertEqual(self.successResultOf(d).result, 0)


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):
    """A StringTransport that records when our side stops writing."""

    writeClosedAt: int | None = None
    noDelay = False
    keepAlive = False

    def loseWriteConnection(self) -> None:
        self.writeClosedAt = len(self.value())

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = enabled


class LastCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.handler = Handler()
        self.proto, _, _ = connect({"callback": self.handler})
        self.transport = HalfClosingTransport()
        self.proto.transport = self.transport
        self.proto.dataReceived(environment())

    def test_writeSideClosedRightAfterLastCommand(self) -> None:
        """endAfterNextCommand: the next command is written, then our writing half
        closes at once; its reply still arrives."""
        self.proto.endAfterNextCommand()
        d = self.proto.getVariable("DIALSTATUS")
        wire = b'GET VARIABLE "DIALSTATUS"\n'
        self.assertEqual((self.transport.value(), self.transport.writeClosedAt), (wire, len(wire)))
        self.proto.dataReceived(b"HANGUP\n200 result=1 (ANSWER)\n")
        self.assertEqual(self.successResultOf(d), "ANSWER")

    def test_waitsForThePendingCommand(self) -> None:
        """Asked while a command is on the wire, the close follows the next one."""
        first = self.proto.sendCommand("NOOP")
        self.proto.endAfterNextCommand()
        last = self.proto.sendCommand("ANSWER")
        self.assertIsNone(self.transport.writeClosedAt)
        self.proto.dataReceived(b"200 result=0\n")
        self.successResultOf(first)
        self.assertEqual(self.transport.writeClosedAt, len(b"NOOP\nANSWER\n"))
        self.assertNoResult(last)

    def test_nothingAfterTheLastCommand(self) -> None:
        """A command after the last one fails at once and is not written."""
        self.proto.endAfterNextCommand()
        self.proto.sendCommand("NOOP")
        self.failureResultOf(self.proto.sendCommand("ANSWER"), AGIConnectionLost)
        self.assertEqual(self.transport.value(), b"NOOP\n")


class QueueTests(SynchronousTestCase):
    def test_oneCommandOnTheWire(self) -> None:
        """A second command is not written until the first is answered."""
        proto, transport, _ = running()
        first = proto.sendCommand("ANSWER")
        second = proto.sendCommand("NOOP")
        self.assertEqual(transport.value(), b"ANSWER\n")
        proto.dataReceived(b"200 result=0\n")
        self.assertEqual(transport.value(), b"ANSWER\nNOOP\n")
        self.successResultOf(first)
        self.assertNoResult(second)

    def test_repliesInOrder(self) -> None:
        """Replies resolve the commands in the order they were issued."""
        proto, _, _ = running()
        ds = [proto.sendCommand(f'GET VARIABLE "V{i}"') for i in range(3)]
        proto.dataReceived(b"200 result=1 (a)\n200 result=1 (b)\n200 result=0\n")
        self.assertEqual([self.successResultOf(d).data for d in ds], ["a", "b", None])

    def test_commandFromCallbackQueuesBehind(self) -> None:
        """A command issued from a reply's callback goes after those already queued."""
        proto, transport, _ = running()
        first = proto.sendCommand("ANSWER")
        proto.sendCommand("NOOP")
        first.addCallback(lambda _: proto.sendCommand("HANGUP"))
        proto.dataReceived(b"200 result=0\n")
        self.assertEqual(transport.value(), b"ANSWER\nNOOP\n")
        proto.dataReceived(b"200 result=0\n")
        self.assertEqual(transport.value(), b"ANSWER\nNOOP\nHANGUP\n")

    def test_cancelQueuedCommand(self) -> None:
        """A cancelled queued command is never sent."""
        proto, transport, _ = running()
        proto.sendCommand("ANSWER")
        queued = proto.sendCommand("NOOP")
        queued.cancel()
        self.failureResultOf(queued, CancelledError)
        proto.dataReceived(b"200 result=0\n")
        self.assertEqual(transport.value(), b"ANSWER\n")

    def test_cancelInFlightCommand(self) -> None:
        """A cancelled in-flight command still consumes its reply, so the next one lines up."""
        proto, transport, _ = running()
        in_flight = proto.sendCommand("ANSWER")
        following = proto.sendCommand("NOOP")
        in_flight.cancel()
        self.failureResultOf(in_flight, CancelledError)
        self.assertEqual(transport.value(), b"ANSWER\n")
        proto.dataReceived(b"200 result=0\n200 result=1\n")
        self.assertEqual(self.successResultOf(following).result, 1)

    def test_connectionLostFailsPendingAndQueued(self) -> None:
        """Losing the connection fails the pending and every queued command."""
        proto, _, _ = running()
        ds = [proto.sendCommand("ANSWER"), proto.sendCommand("NOOP"), proto.sendCommand("HANGUP")]
        hung_up = proto.whenHungUp()
        proto.connectionLost(Failure(ConnectionDone()))
        for d in ds:
            self.failureResultOf(d, AGIConnectionLost)
        self.successResultOf(hung_up)

    def test_sendAfterCloseFails(self) -> None:
        """A command after the connection is gone fails at once, nothing written."""
        proto, transport, _ = running()
        proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(proto.sendCommand("NOOP"), AGIConnectionLost)
        self.assertEqual(transport.value(), b"")


class QuotingTests(SynchronousTestCase):
    VALUES = [
        "plain",
        "with space",
        "",
        'say "hi"',
        "back\\slash",
        'quote after backslash \\"',
        "trailing backslash\\",
        "\\\\double",
        "tab\there",
        "Umlaut Müller €",
        "  leading and trailing  ",
        "Uml. für 2001: Alice",
    ]

    def test_quoteTable(self) -> None:
        """quote() wraps in quotes, escapes backslash and quote, and nothing else."""
        table = {
            "plain": '"plain"',
            "with space": '"with space"',
            "": '""',
            'say "hi"': '"say \\"hi\\""',
            "back\\slash": '"back\\\\slash"',
            "trailing\\": '"trailing\\\\"',
            "Müller": '"Müller"',
        }
        for value, quoted in table.items():
            self.assertEqual(quote(value), quoted, value)

    def test_asteriskReadsQuotedValuesBack(self) -> None:
        """Every value survives Asterisk's parse_args as exactly one argument."""
        for value in self.VALUES:
            line = formatCommand("SET VARIABLE", "X", value).encode()
            self.assertEqual(asteriskParseArgs(line), [b"SET", b"VARIABLE", b"X", value.encode()], value)

    def test_setVariableWireBytes(self) -> None:
        """SET VARIABLE with spaces, quotes and backslashes writes these exact bytes."""
        proto, transport, _ = running()
        proto.setVariable("CALLERID(name)", 'A "B" \\C')
        self.assertEqual(transport.value(), b'SET VARIABLE "CALLERID(name)" "A \\"B\\" \\\\C"\n')

    def test_unicodeWireBytes(self) -> None:
        """Non-ASCII arguments go out as UTF-8."""
        proto, transport, _ = running()
        proto.setVariable("N", "Müller")
        self.assertEqual(transport.value(), b'SET VARIABLE "N" "M\xc3\xbcller"\n')

    def test_crlfRefused(self) -> None:
        """CR or LF in an argument raises ValueError and writes nothing."""
        proto, transport, _ = running()
        for bad in ["a\nNOOP", "a\rb", "a\r\nHANGUP"]:
            self.assertRaises(ValueError, quote, bad)
            self.assertRaises(ValueError, proto.setVariable, "X", bad)
        self.assertEqual(transport.value(), b"")

    def test_rawCommandNewlineRefused(self) -> None:
        """sendCommand refuses a line with CR/LF/NUL, an empty line, and a FAILURE line."""
        proto, transport, _ = running()
        for bad in ["NOOP\nHANGUP", "NOOP\r", "NOOP\x00", "", "   ", "failure now"]:
            self.assertRaises(ValueError, proto.sendCommand, bad)
        self.assertEqual(transport.value(), b"")

    def test_overlongCommandRefused(self) -> None:
        """A command Asterisk would split at 2047 bytes is refused."""
        proto, transport, _ = running()
        self.assertRaises(ValueError, proto.setVariable, "X", "x" * 2100)
        self.assertEqual(transport.value(), b"")

    def test_formatCommandRejectsOtherTypes(self) -> None:
        """Only str and int arguments are formatted; bools are a mistake."""
        self.assertRaises(TypeError, formatCommand, "WAIT FOR DIGIT", True)
        self.assertEqual(formatCommand("WAIT FOR DIGIT", -1), "WAIT FOR DIGIT -1")


class HelperTests(SynchronousTestCase):
    def call(self, start: Any, reply: bytes) -> tuple[bytes, Deferred[Any]]:
        """Run one helper against one reply; return the wire bytes and its Deferred."""
        proto, transport, _ = running()
        d = start(proto)
        written = transport.value()
        proto.dataReceived(reply)
        return written, d

    def test_wireBytes(self) -> None:
        """Each helper writes the documented command line."""
        table: list[tuple[Any, bytes]] = [
            (lambda a: a.answer(), b"ANSWER\n"),
            (lambda a: a.hangup(), b"HANGUP\n"),
            (lambda a: a.hangup("PJSIP/2002-1"), b'HANGUP "PJSIP/2002-1"\n'),
            (lambda a: a.streamFile("cc/offer"), b'STREAM FILE "cc/offer" ""\n'),
            (lambda a: a.streamFile("cc/offer", "5#", 800), b'STREAM FILE "cc/offer" "5#" 800\n'),
            (lambda a: a.getData("beep", 5000, 4), b'GET DATA "beep" 5000 4\n'),
            (lambda a: a.getData("beep"), b'GET DATA "beep" 0\n'),
            (lambda a: a.waitForDigit(3000), b"WAIT FOR DIGIT 3000\n"),
            (lambda a: a.sayDigits("2001"), b'SAY DIGITS "2001" ""\n'),
            (lambda a: a.sayNumber(42, "#"), b'SAY NUMBER 42 "#"\n'),
            (lambda a: a.getVariable("CC_KEY"), b'GET VARIABLE "CC_KEY"\n'),
            (lambda a: a.getFullVariable("${CALLERID(num)}"), b'GET FULL VARIABLE "${CALLERID(num)}"\n'),
            (lambda a: a.exec_("Dial", "PJSIP/2001,20,tT"), b'EXEC "Dial" "PJSIP/2001,20,tT"\n'),
            (lambda a: a.verbose("hello world", 3), b'VERBOSE "hello world" 3\n'),
            (lambda a: a.setCallerID('"Alice" <2001>'), b'SET CALLERID "\\"Alice\\" <2001>"\n'),
            (lambda a: a.databaseGet("cc", "2001"), b'DATABASE GET "cc" "2001"\n'),
            (lambda a: a.databasePut("cc", "2001", "a b"), b'DATABASE PUT "cc" "2001" "a b"\n'),
            (lambda a: a.databaseDel("cc", "2001"), b'DATABASE DEL "cc" "2001"\n'),
            (lambda a: a.noop(), b"NOOP\n"),
        ]
        for start, expected in table:
            proto, transport, _ = running()
            start(proto)
            self.assertEqual(transport.value(), expected)

    def test_streamFileDigit(self) -> None:
        """streamFile gives the pressed key (ASCII code in result) and endpos."""
        _, d = self.call(lambda a: a.streamFile("x", "5"), b"200 result=53 endpos=12345\n")
        self.assertEqual(self.successResultOf(d), ("5", 12345))

    def test_streamFileNoDigit(self) -> None:
        """streamFile gives None when playback ran to the end."""
        _, d = self.call(lambda a: a.streamFile("x"), b"200 result=0 endpos=8000\n")
        self.assertEqual(self.successResultOf(d), (None, 8000))

    def test_streamFileFailure(self) -> None:
        """streamFile fails with AGICommandError on result=-1 (missing file, hangup)."""
        _, d = self.call(lambda a: a.streamFile("nosuch"), b"200 result=-1 endpos=0\n")
        self.failureResultOf(d, AGICommandError)

    def test_getDataKeepsLeadingZeros(self) -> None:
        """getData returns the digits as text, leading zeros intact."""
        _, d = self.call(lambda a: a.getData("beep", 5000, 4), b"200 result=0815\n")
        self.assertEqual(self.successResultOf(d), ("0815", False))

    def test_getDataTimeout(self) -> None:
        """getData reports a timeout, with or without digits."""
        _, d = self.call(lambda a: a.getData("beep"), b"200 result=12 (timeout)\n")
        self.assertEqual(self.successResultOf(d), ("12", True))
        _, d = self.call(lambda a: a.getData("beep"), b"200 result= (timeout)\n")
        self.assertEqual(self.successResultOf(d), ("", True))

    def test_waitForDigit(self) -> None:
        """waitForDigit gives the key, or None on timeout."""
        _, d = self.call(lambda a: a.waitForDigit(1000), b"200 result=35\n")
        self.assertEqual(self.successResultOf(d), "#")
        _, d = self.call(lambda a: a.waitForDigit(1000), b"200 result=0\n")
        self.assertIsNone(self.successResultOf(d))

    def test_getVariable(self) -> None:
        """getVariable gives the value, '' for an empty one, None when unset."""
        _, d = self.call(lambda a: a.getVariable("X"), b"200 result=1 (a (b) c)\n")
        self.assertEqual(self.successResultOf(d), "a (b) c")
        _, d = self.call(lambda a: a.getVariable("X"), b"200 result=1 ()\n")
        self.assertEqual(self.successResultOf(d), "")
        _, d = self.call(lambda a: a.getVariable("X"), b"200 result=0\n")
        self.assertIsNone(self.successResultOf(d))

    def test_execUnknownApplication(self) -> None:
        """exec_ fails when Asterisk reports the application unknown (-2)."""
        _, d = self.call(lambda a: a.exec_("Nosuch"), b"200 result=-2\n")
        self.failureResultOf(d, AGICommandError)

    def test_execResult(self) -> None:
        """exec_ gives the application's return value."""
        _, d = self.call(lambda a: a.exec_("Playback", "beep"), b"200 result=0\n")
        self.assertEqual(self.successResultOf(d), 0)

    def test_databaseDel(self) -> None:
        """databaseDel says whether a key was deleted."""
        _, d = self.call(lambda a: a.databaseDel("cc", "1"), b"200 result=0\n")
        self.assertIs(self.successResultOf(d), False)

    def test_answerFailure(self) -> None:
        """answer fails with AGICommandError on result=-1."""
        _, d = self.call(lambda a: a.answer(), b"200 result=-1\n")
        self.failureResultOf(d, AGICommandError)


class TimeoutTests(SynchronousTestCase):
    def test_requestTimeout(self) -> None:
        """A handler that sends no command for requestTimeout is logged, closed (no
        FAILURE: the call was taken) and cancelled."""
        handler = Handler()
        with capturedLogs() as events:
            proto, transport, clock = connect({"callback": handler}, timeout=30)
            proto.dataReceived(environment())
            clock.advance(29.9)
            self.assertFalse(transport.disconnecting)
            clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(handler.done.called)
        self.assertEqual(self.flushLoggedErrors(), [])
        [event] = levels(events, LogLevel.error)
        self.assertEqual((event["script"], event["channel"]), ("callback", CHANNEL))

    def test_longCommandIsNotCutAtRequestTimeout(self) -> None:
        """A Dial lasts as long as the conversation: while it is on the wire only the
        command bound applies; once it is answered the handler's idle bound is back."""
        handler = Handler()
        proto, transport, clock = connect({"callback": handler}, timeout=30)
        proto.dataReceived(environment())
        dialled = proto.sendCommand('EXEC "Dial" "PJSIP/200"')
        clock.advance(2 * 3600)  # a two-hour call
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"200 result=0\n")
        self.successResultOf(dialled)
        clock.advance(29.9)
        self.assertFalse(transport.disconnecting)
        with capturedLogs():
            clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_commandTimeout(self) -> None:
        """A command Asterisk never answers is given up after commandTimeout, with its name."""
        handler = Handler()
        factory = FastAGIFactory({"callback": handler}, Clock(), requestTimeout=30, commandTimeout=600)
        clock = factory.clock
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 41000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(environment())
        with capturedLogs() as events:
            pending = proto.sendCommand("WAIT FOR DIGIT -1")
            clock.advance(599.9)  # type: ignore[attr-defined]
            self.assertFalse(transport.disconnecting)
            clock.advance(0.1)  # type: ignore[attr-defined]
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(pending, AGIConnectionLost)
        [event] = levels(events, LogLevel.error)
        self.assertEqual(event["command"], "WAIT FOR DIGIT -1")

    def test_timeoutCoversStalledEnvironment(self) -> None:
        """A connection that never finishes its environment is closed at the timeout too."""
        proto, transport, clock = connect({}, timeout=5)
        proto.dataReceived(b"agi_network: yes\n")
        clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_timerStoppedWhenDone(self) -> None:
        """A finished request leaves no timer behind."""
        handler = Handler()
        proto, _, clock = connect({"callback": handler})
        proto.dataReceived(environment())
        handler.done.callback(None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timerStoppedOnConnectionLost(self) -> None:
        """A connection closed by Asterisk leaves no timer behind."""
        proto, _, clock = connect({})
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])


class GarbageTests(SynchronousTestCase):
    def assertClosedWithError(self, data: bytes, script: str = "callback") -> FastAGIProtocol:
        handler = Handler()
        with capturedLogs() as events:
            proto, transport, _ = connect({script: handler})
            proto.dataReceived(data)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().endswith(b"FAILURE\n"))
        self.assertEqual(len(levels(events, LogLevel.error)), 1)
        return proto

    def test_garbageInEnvironment(self) -> None:
        """A line that is not `agi_x: y` in the environment closes the connection."""
        proto = self.assertClosedWithError(b"agi_network: yes\nGET / HTTP/1.0\n\n")
        self.assertEqual(proto.env, {"agi_network": "yes"})

    def test_binaryJunk(self) -> None:
        """Binary junk instead of an environment closes the connection."""
        self.assertClosedWithError(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n")

    def test_overlongLine(self) -> None:
        """A line longer than MAX_LENGTH closes the connection."""
        self.assertClosedWithError(b"agi_x: " + b"a" * (FastAGIProtocol.MAX_LENGTH + 10))

    def test_garbageReply(self) -> None:
        """A reply line that is no AGI reply closes the connection and fails the command."""
        proto, transport, _ = running()
        d = proto.sendCommand("NOOP")
        with capturedLogs() as events:
            proto.dataReceived(b"\x00\xffjunk\n200 result=0\n")
        self.failureResultOf(d, AGIConnectionLost)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"NOOP\n")
        self.assertEqual(len(levels(events, LogLevel.error)), 1)

    def test_unsolicitedReply(self) -> None:
        """A reply while no command is pending closes the connection."""
        proto, transport, _ = running()
        with capturedLogs():
            proto.dataReceived(b"200 result=0\n")
        self.assertTrue(transport.disconnecting)

    def test_garbageClosesOnlyThatConnection(self) -> None:
        """A bad connection does not disturb another one from the same factory."""
        handler = Handler()
        factory = FastAGIFactory({"callback": handler}, Clock())
        bad, good = factory.buildProtocol(None), factory.buildProtocol(None)
        bad_transport, good_transport = StringTransport(), StringTransport()
        bad.makeConnection(bad_transport)
        good.makeConnection(good_transport)
        with capturedLogs():
            bad.dataReceived(b"junk\n")
        good.dataReceived(environment())
        d = good.sendCommand("ANSWER")
        good.dataReceived(b"200 result=0\n")
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(handler.calls, [good])
        self.assertEqual(self.successResultOf(d).result, 0)


class EnvironmentDeadlineTests(SynchronousTestCase):
    def test_environmentDeadline(self) -> None:
        """A connection that sends no complete environment within ENVIRONMENT_DEADLINE is
        closed with FAILURE (nothing was taken, so the dialplan may dial by itself)."""
        with capturedLogs() as events:
            proto, transport, clock = connect({"callback": Handler()})
            proto.dataReceived(b"agi_network: yes\n")
            clock.advance(ENVIRONMENT_DEADLINE - 0.1)
            self.assertFalse(transport.disconnecting)
            clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"FAILURE\n")
        self.assertEqual(len(levels(events, LogLevel.warn)), 1)

    def test_requestTimeoutStartsAfterEnvironment(self) -> None:
        """Once the environment is in, the request has its full requestTimeout."""
        handler = Handler()
        proto, transport, clock = connect({"callback": handler}, timeout=30)
        clock.advance(ENVIRONMENT_DEADLINE - 1)
        proto.dataReceived(environment())
        clock.advance(29.9)
        self.assertFalse(transport.disconnecting)
        with capturedLogs():
            clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_burstOfCallsBeyondTheLimitIsServed(self) -> None:
        """Ten calls accepted in one turn with a limit of three: each sends its
        environment before the grace ends, so none is pushed out and all are served."""
        clock = Clock()
        handler = Handler()
        factory = FastAGIFactory({"callback": handler}, clock, maxWaiting=3)
        burst = []
        for port in range(10):
            proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 43000 + port))
            transport = StringTransport()
            proto.makeConnection(transport)
            burst.append((proto, transport))
        for proto, _ in burst:
            proto.dataReceived(environment())
        clock.advance(PUSH_OUT_GRACE)
        self.assertEqual(factory.pushedOut, 0)
        self.assertEqual(handler.calls, [proto for proto, _ in burst])
        self.assertFalse(any(transport.disconnecting for _, transport in burst))

    def test_waitingConnectionsBounded(self) -> None:
        """Beyond maxWaiting connections without environment, each new one closes the
        oldest waiting one; a request that arrives meanwhile is served."""
        clock = Clock()
        handler = Handler()
        factory = FastAGIFactory({"callback": handler}, clock, maxWaiting=3)
        idle = []
        with capturedLogs() as events:
            for port in range(5):
                proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 41000 + port))
                transport = StringTransport()
                proto.makeConnection(transport)
                idle.append(transport)
            self.assertEqual([t.disconnecting for t in idle], [False] * 5)  # read first
            clock.advance(PUSH_OUT_GRACE)
        self.assertEqual([t.disconnecting for t in idle], [True, True, False, False, False])
        self.assertEqual(factory.pushedOut, 2)
        self.assertEqual(len(levels(events, LogLevel.warn)), 1)  # one line, not one per connection
        fresh = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 42000))
        fresh_transport = StringTransport()
        with capturedLogs():
            fresh.makeConnection(fresh_transport)
            clock.advance(PUSH_OUT_GRACE)
        self.assertTrue(idle[2].disconnecting)
        fresh.dataReceived(environment())
        self.assertEqual(handler.calls, [fresh])
        self.assertFalse(fresh_transport.disconnecting)
        self.assertEqual(len(factory._waiting), 2)
