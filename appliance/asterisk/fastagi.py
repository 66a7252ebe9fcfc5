"""FastAGI server: Asterisk's ``AGI(agi://host:port/script?query,arg1,...)``.

Asterisk opens one TCP connection per ``AGI()`` call, sends its environment
(``agi_xxx: value`` lines, then an empty line) and then waits for commands,
answering each with exactly one reply.  This module is shaped like starpy's
FastAGI (every command returns a L{Deferred}) but fixes what starpy gets
wrong:

  - arguments are quoted the way Asterisk's C{parse_args} (res_agi.c) reads
    them, so values with spaces, quotes and backslashes arrive intact, and
    CR/LF/NUL are refused instead of smuggling in a second command;
  - only one command is on the wire at a time (a new line from us makes
    Asterisk abort a running STREAM FILE / GET DATA without a reply);
  - the unprompted C{HANGUP} line is not taken as a reply;
  - the multi-line C{520-} usage reply is consumed as one reply;
  - a lost connection fails every outstanding command instead of hanging.

Error paths before a handler has taken the call (unknown script, garbage,
an environment that does not arrive in time) write the line C{FAILURE}
before closing: res_agi treats a line starting with "failure" as a failed
script and sets C{AGISTATUS=FAILURE}, so the dialplan can fall back to a
plain C{Dial()}.  Once a handler runs the call is the appliance's: a later
error (handler failure, timeout, garbage) closes without C{FAILURE}, which
leaves C{AGISTATUS=SUCCESS}, so the dialplan never dials the same target a
second time behind the handler's back (fail closed).

A connection that has not sent its environment within
C{ENVIRONMENT_DEADLINE} seconds is closed, and at most
C{MAX_WAITING_FOR_ENVIRONMENT} such connections are kept: beyond that the
oldest are pushed out (after C{PUSH_OUT_GRACE}, so a burst of real calls
accepted in one turn is read first), so idle sockets cannot use up the
process's descriptors while Asterisk, which sends its environment at once,
is still served.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport, ITransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from appliance.asterisk._tcp import acknowledgeNow, sendWithoutDelay, writeNow
from appliance.asterisk.agi import (
    STATUS_LINE,
    USAGE_END,
    AGIChannelDead,
    AGICommandError,
    AGICommands,
    AGIConnectionLost,
    AGIError,
    AGIInvalidCommand,
    AGIResponse,
    AGIResponseError,
    AGIUsageError,
    decodeLine,
    encodeCommand,
    errorForStatus,
    formatCommand,
    parseResponse,
    quote,
)

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "AGIArgs",
    "AGIChannelDead",
    "AGICommandError",
    "AGICommands",
    "AGIConnectionLost",
    "AGIError",
    "AGIHandler",
    "AGIInvalidCommand",
    "AGIResponse",
    "AGIResponseError",
    "AGIUsageError",
    "FastAGIFactory",
    "FastAGIProtocol",
    "formatCommand",
    "parseEnvironmentLine",
    "parseNetworkScript",
    "parseResponse",
    "quote",
]


log = Logger()

#: Prefix of every per-call log line; the fields come from FastAGIProtocol._fields().
_WHO = "FastAGI script={script} channel={channel} uniqueid={uniqueid}"

#: Seconds a handler may hold a session with no command on the wire before the
#: session is closed as stuck.
DEFAULT_REQUEST_TIMEOUT = 300.0
#: Seconds one command may wait for its reply.  A Dial lasts as long as the
#: conversation (a hangup ends it and Asterisk then replies), so this only
#: catches an Asterisk that stopped answering altogether.
DEFAULT_COMMAND_TIMEOUT = 12 * 3600.0
#: Seconds from accept to the end of the environment block (Asterisk needs milliseconds).
ENVIRONMENT_DEADLINE = 5.0
#: Connections kept while they have not sent their environment; beyond it the oldest are closed.
MAX_WAITING_FOR_ENVIRONMENT = 64
#: Seconds a burst beyond the limit gets to be read before the oldest are pushed out.
PUSH_OUT_GRACE = 0.5
_ENV_LINE = re.compile(r"^(agi_[A-Za-z0-9_]+):(.*)$")


@dataclass(frozen=True)
class AGIArgs:
    """Arguments of one request: the URL query and the positional
    C{AGI(url,arg1,arg2)} arguments (C{agi_arg_N})."""

    query: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    positional: tuple[str, ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter C{name}."""
        values = self.query.get(name)
        return values[0] if values else default


def parseEnvironmentLine(line: str) -> tuple[str, str]:
    """Split C{agi_key: value}; raise C{ValueError} for anything else."""
    match = _ENV_LINE.match(line)
    if match is None:
        raise ValueError(f"not an AGI environment line: {line!r}")
    key, value = match.groups()
    if value.startswith(" "):
        value = value[1:]
    return key, value


def parseNetworkScript(value: str) -> tuple[str, dict[str, tuple[str, ...]]]:
    """C{agi_network_script} (C{path?a=1&b=2}) -> (path, query).

    The path loses leading slashes; the query is form-decoded (C{+} and
    C{%XX}), so dialplan values should go through C{${URIENCODE()}}.
    """
    path, _, query = value.partition("?")
    parsed = parse_qs(query, keep_blank_values=True, max_num_fields=100)
    return path.lstrip("/"), {key: tuple(values) for key, values in parsed.items()}


# Protocol -------------------------------------------------------------------


AGIHandler = Callable[["FastAGIProtocol"], Any]
"""Called once per request with the connection; may return a Deferred or be async."""


class _Phase(Enum):
    ENVIRONMENT = "environment"  # reading agi_xxx lines
    RUNNING = "running"  # handler runs, commands flow
    CLOSING = "closing"  # we decided to close; input is ignored
    CLOSED = "closed"  # connectionLost happened


@dataclass(eq=False)  # identity: two identical lines are two commands
class _Command:
    text: str
    wire: bytes
    deferred: Deferred[AGIResponse]


class FastAGIProtocol(LineOnlyReceiver, AGICommands):
    """One AGI session: parses the environment, runs the routed handler,
    carries its commands one at a time and closes when it is done."""

    delimiter = b"\n"
    trace = False
    """Log every line both ways: useful when debugging, a quarter of the CPU
    per request otherwise (bench/README.md), since twistd writes all levels."""
    MAX_LENGTH = 16384
    MAX_ENVIRONMENT_LINES = 512
    MAX_USAGE_LINES = 200
    environmentDeadline = ENVIRONMENT_DEADLINE

    def __init__(
        self,
        routes: Mapping[str, AGIHandler],
        clock: IReactorTime,
        requestTimeout: float = DEFAULT_REQUEST_TIMEOUT,
        commandTimeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.routes = routes
        self.clock = clock
        self.requestTimeout = requestTimeout
        self.commandTimeout = commandTimeout
        self.env: dict[str, str] = {}
        self.script = ""
        self.args = AGIArgs()
        self.hungUp = False
        self._phase = _Phase.ENVIRONMENT
        self._pending: _Command | None = None
        self._queue: deque[_Command] = deque()
        self._usage: list[str] | None = None  # collecting a 520- block
        self._usageHeader = ""
        self._hangupWaiters: list[Deferred[None]] = []
        self._timeoutCall: IDelayedCall | None = None
        self._handlerDeferred: Deferred[Any] | None = None
        self.taken = False
        """A handler runs: from now on no error writes FAILURE (fail closed)."""
        self._lastQueued = False  # endAfterNextCommand: nothing more may be sent after it
        self._lastWritten = False

    # Convenience views on the environment.

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    def _fields(self) -> dict[str, str]:
        return {"script": self.script, "channel": self.channel, "uniqueid": self.uniqueid}

    def _peer(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def _transportOrFail(self) -> ITransport:
        assert self.transport is not None, "not connected"
        return self.transport

    # Connection lifecycle.

    def connectionMade(self) -> None:
        sendWithoutDelay(self.transport)
        deadline = min(self.requestTimeout, self.environmentDeadline)
        self._timeoutCall = self.clock.callLater(deadline, self._timedOut)
        factory = getattr(self, "factory", None)
        if isinstance(factory, FastAGIFactory):
            factory.waiting(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        was_closing = self._phase is _Phase.CLOSING
        self._phase = _Phase.CLOSED
        self._cancelTimeout()
        self._leaveWaiting()
        self._failOutstanding(f"connection lost: {reason.getErrorMessage()}")
        self._fireHangupWaiters()
        if not was_closing:
            log.info(
                _WHO + ": connection closed by Asterisk",
                **self._fields(),
            )

    def _cancelTimeout(self) -> None:
        if self._timeoutCall is not None and self._timeoutCall.active():
            self._timeoutCall.cancel()
        self._timeoutCall = None

    def _armTimeout(self) -> None:
        """While a command is on the wire its reply may take as long as the call
        (a Dial); otherwise the handler must send its next command in time."""
        if self._phase is not _Phase.RUNNING:
            return
        wait = self.commandTimeout if self._pending is not None else self.requestTimeout
        if self._timeoutCall is not None and self._timeoutCall.active():
            self._timeoutCall.reset(wait)
        else:
            self._timeoutCall = self.clock.callLater(wait, self._timedOut)

    def _leaveWaiting(self) -> None:
        factory = getattr(self, "factory", None)
        if isinstance(factory, FastAGIFactory):
            factory.notWaiting(self)

    def _close(self, failed: bool) -> None:
        """Close once; on failure before a handler took the call, tell Asterisk
        so AGISTATUS becomes FAILURE and the dialplan may dial by itself."""
        if self._phase in (_Phase.CLOSING, _Phase.CLOSED):
            return
        self._phase = _Phase.CLOSING
        self._cancelTimeout()
        self._leaveWaiting()
        transport = self._transportOrFail()
        if failed and not self.hungUp and not self.taken:
            transport.write(b"FAILURE\n")
        transport.loseConnection()
        self._failOutstanding("connection closed")
        self._fireHangupWaiters()

    def _protocolError(self, problem: str, line: str) -> None:
        log.error(
            _WHO + ": {problem}: {line!r}; closing",
            problem=problem,
            line=line[:200],
            **self._fields(),
        )
        self._close(failed=True)

    def _timedOut(self) -> None:
        self._timeoutCall = None
        if self._phase is _Phase.ENVIRONMENT:
            log.warn(
                "FastAGI: no environment within {deadline}s from {peer}; closing",
                deadline=min(self.requestTimeout, self.environmentDeadline),
                peer=self._peer(),
            )
            self._close(failed=True)
            return
        if self._pending is not None:
            log.error(
                _WHO + ": no reply to {command!r} after {timeout}s; closing",
                command=self._pending.text,
                timeout=self.commandTimeout,
                **self._fields(),
            )
        else:
            log.error(
                _WHO + ": the handler sent no command for {timeout}s; closing",
                timeout=self.requestTimeout,
                **self._fields(),
            )
        self._close(failed=True)
        if self._handlerDeferred is not None and not self._handlerDeferred.called:
            self._handlerDeferred.cancel()

    # Input.

    def dataReceived(self, data: bytes) -> None:
        # Ack before handling: Asterisk (Nagle on) holds its next reply until then.
        acknowledgeNow(self.transport)
        if self._phase in (_Phase.CLOSING, _Phase.CLOSED):
            return
        super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._buffer = b""
        self._protocolError(f"line longer than {self.MAX_LENGTH} bytes", decodeLine(line[:200]))

    def lineReceived(self, raw: bytes) -> None:
        if self._phase in (_Phase.CLOSING, _Phase.CLOSED):
            return
        line = decodeLine(raw)
        if line.endswith("\r"):
            line = line[:-1]
        if self.trace:
            log.debug("FastAGI {channel} << {line!r}", line=line, channel=self.channel)
        if self._usage is not None:
            self._usageLine(line)
        elif line == "HANGUP":
            self._channelHungUp()
        elif self._phase is _Phase.ENVIRONMENT:
            self._environmentLine(line)
        else:
            self._replyLine(line)

    def _environmentLine(self, line: str) -> None:
        if line == "":
            self._environmentComplete()
            return
        if len(self.env) >= self.MAX_ENVIRONMENT_LINES:
            self._protocolError("too many environment lines", line)
            return
        try:
            key, value = parseEnvironmentLine(line)
        except ValueError:
            self._protocolError("malformed environment line", line)
            return
        self.env[key] = value

    def _environmentComplete(self) -> None:
        self._phase = _Phase.RUNNING
        self._leaveWaiting()
        self._armTimeout()
        try:
            self.script, query = parseNetworkScript(self.env.get("agi_network_script", ""))
        except ValueError:
            self._protocolError("malformed script query", self.env.get("agi_network_script", ""))
            return
        positional: list[str] = []
        while f"agi_arg_{len(positional) + 1}" in self.env:
            positional.append(self.env[f"agi_arg_{len(positional) + 1}"])
        self.args = AGIArgs(query=query, positional=tuple(positional))
        handler = self.routes.get(self.script)
        if handler is None:
            log.error(
                _WHO + ": no handler for this script; closing",
                **self._fields(),
            )
            self._close(failed=True)
            return
        log.info(_WHO + ": request", **self._fields())
        self.taken = True
        self._sendNext()
        d = maybeDeferred(handler, self)
        self._handlerDeferred = d
        d.addCallbacks(self._handlerDone, self._handlerFailed)

    def _handlerDone(self, result: object) -> None:
        log.info(
            _WHO + ": handler finished",
            **self._fields(),
        )
        self._close(failed=False)

    def _handlerFailed(self, failure: Failure) -> None:
        if self._phase in (_Phase.CLOSING, _Phase.CLOSED) and failure.check(
            AGIConnectionLost, CancelledError
        ):
            # We already logged why the connection went away.
            log.info(
                _WHO + ": handler stopped: {error}",
                error=failure.getErrorMessage(),
                **self._fields(),
            )
        elif self.hungUp and failure.check(AGIChannelDead, AGICommandError):
            log.info(
                _WHO + ": handler ended by hangup: {error}",
                error=failure.getErrorMessage(),
                **self._fields(),
            )
        else:
            log.failure(
                _WHO + ": handler failed; the call ends here (no second dial)",
                failure=failure,
                script=self.script,
                channel=self.channel,
                uniqueid=self.uniqueid,
            )
        self._close(failed=True)

    def _usageLine(self, line: str) -> None:
        """Collect a 520- usage block; its end marker may trail the last
        usage line when the usage text lacks a newline (old Asterisk)."""
        assert self._usage is not None
        if line.endswith(USAGE_END):
            head = line[: -len(USAGE_END)]
            if head:
                self._usage.append(head)
            usage, self._usage = "\n".join(self._usage), None
            command = self._pending.text if self._pending else ""
            error = AGIUsageError(520, self._usageHeader, command, usage)
            self._finishPending(Failure(error))
        elif len(self._usage) >= self.MAX_USAGE_LINES:
            self._usage = None
            self._protocolError("520 usage block too long", line)
        else:
            self._usage.append(line)

    def _replyLine(self, line: str) -> None:
        if line == "":
            log.warn("FastAGI {channel}: ignoring empty line", channel=self.channel)
            return
        if self._pending is None:
            self._protocolError("unsolicited line", line)
            return
        if line.startswith("520-"):
            self._usageHeader = line[4:]
            self._usage = []
            return
        status = STATUS_LINE.match(line)
        if status is None:
            self._protocolError("malformed reply", line)
            return
        code = int(status.group(1))
        if code != 200:
            self._finishPending(Failure(errorForStatus(code, status.group(2), self._pending.text)))
            return
        try:
            response = parseResponse(line)
        except ValueError:
            self._protocolError("malformed reply", line)
            return
        self._finishPending(response)

    def _channelHungUp(self) -> None:
        if self.hungUp:
            return
        self.hungUp = True
        log.info(_WHO + ": channel hung up", **self._fields())
        self._fireHangupWaiters()

    def _fireHangupWaiters(self) -> None:
        waiters, self._hangupWaiters = self._hangupWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Commands.

    def whenHungUp(self) -> Deferred[None]:
        """Fire when Asterisk reports the hangup or the connection ends."""
        if self.hungUp or self._phase in (_Phase.CLOSING, _Phase.CLOSED):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._hangupWaiters.append(d)
        return d

    def sendCommand(self, command: str) -> Deferred[AGIResponse]:
        """Send a raw command line; fire with its 200 reply, fail with an
        L{AGIError}.  Commands queue so only one is on the wire.

        @raise ValueError: the line contains CR/LF/NUL or is too long.
        """
        wire = encodeCommand(command)
        if self._phase in (_Phase.CLOSING, _Phase.CLOSED):
            return fail(AGIConnectionLost(f"connection closed before {command!r}"))
        if self._lastWritten or (self._lastQueued and self._queue):
            return fail(AGIConnectionLost(f"session already ended by its last command before {command!r}"))
        cmd: _Command

        def cancel(d: Deferred[AGIResponse]) -> None:
            # Queued: never send it.  On the wire: its reply is dropped.
            if cmd in self._queue:
                self._queue.remove(cmd)

        cmd = _Command(command, wire, Deferred(cancel))
        self._queue.append(cmd)
        self._sendNext()
        return cmd.deferred

    def _sendNext(self) -> None:
        if self._pending is not None or self._phase is not _Phase.RUNNING or not self._queue:
            return
        self._pending = cmd = self._queue.popleft()
        if self.trace:
            log.debug("FastAGI {channel} >> {command!r}", command=cmd.text, channel=self.channel)
        transport = self._transportOrFail()
        self._armTimeout()
        transport.write(cmd.wire)
        if self._lastQueued:
            self._lastWritten = True
            if ITCPTransport.providedBy(transport):
                transport.loseWriteConnection()
        writeNow(transport)

    def endAfterNextCommand(self) -> None:
        """Make the next command the session's last: our side stops writing
        right after it, so Asterisk ends the AGI (and a hung-up channel) as
        soon as it has answered, without waiting for us to read the reply,
        which still arrives."""
        self._lastQueued = True

    def _finishPending(self, result: AGIResponse | Failure) -> None:
        cmd, self._pending = self._pending, None
        self._sendNext()
        self._armTimeout()
        if cmd is None or cmd.deferred.called:
            return
        if isinstance(result, Failure):
            cmd.deferred.errback(result)
        else:
            cmd.deferred.callback(result)

    def _failOutstanding(self, why: str) -> None:
        outstanding = ([self._pending] if self._pending else []) + list(self._queue)
        self._pending = None
        self._queue.clear()
        self._usage = None
        for cmd in outstanding:
            if not cmd.deferred.called:
                cmd.deferred.errback(AGIConnectionLost(f"{why} before reply to {cmd.text!r}"))


class FastAGIFactory(ServerFactory):
    """Serve FastAGI; C{routes} maps the script path (C{agi://host/<path>})
    to its handler.  Looked up per request, so the mapping may change."""

    protocol = FastAGIProtocol

    def __init__(
        self,
        routes: Mapping[str, AGIHandler],
        clock: IReactorTime,
        requestTimeout: float = DEFAULT_REQUEST_TIMEOUT,
        maxWaiting: int = MAX_WAITING_FOR_ENVIRONMENT,
        commandTimeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.routes = routes
        self.clock = clock
        self.requestTimeout = requestTimeout
        self.commandTimeout = commandTimeout
        self.maxWaiting = maxWaiting
        self._waiting: dict[FastAGIProtocol, None] = {}  # oldest first
        self.pushedOut = 0
        """Connections closed because newer ones were waiting for their environment."""
        self._lastWarning: float | None = None
        self._trim: IDelayedCall | None = None

    def buildProtocol(self, addr: IAddress | None) -> FastAGIProtocol:
        proto = FastAGIProtocol(self.routes, self.clock, self.requestTimeout, self.commandTimeout)
        proto.factory = self
        return proto

    def waiting(self, proto: FastAGIProtocol) -> None:
        """C{proto} was accepted and waits for its environment.  With too many
        waiting, the oldest are pushed out after C{PUSH_OUT_GRACE}: a burst of
        calls is accepted in one reactor turn before any is read, and those
        connections carry their environment already; idle ones do not."""
        self._waiting[proto] = None
        if len(self._waiting) > self.maxWaiting and self._trim is None:
            self._trim = self.clock.callLater(PUSH_OUT_GRACE, self._pushOut)

    def _pushOut(self) -> None:
        self._trim = None
        while len(self._waiting) > self.maxWaiting:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            self.pushedOut += 1
            self._warnPushedOut()
            oldest._close(failed=True)

    def notWaiting(self, proto: FastAGIProtocol) -> None:
        self._waiting.pop(proto, None)

    def stopFactory(self) -> None:
        if self._trim is not None and self._trim.active():
            self._trim.cancel()
        self._trim = None

    def _warnPushedOut(self) -> None:
        """One line per ten seconds at most: a flood must not flood the log too."""
        now = self.clock.seconds()
        if self._lastWarning is None or now - self._lastWarning >= 10.0:
            self._lastWarning = now
            log.warn(
                "FastAGI: more than {limit} connections without an environment; "
                "closed the oldest ({total} so far)",
                limit=self.maxWaiting,
                total=self.pushedOut,
            )
