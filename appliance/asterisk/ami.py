"""Asterisk Manager Interface (AMI) client protocol.

Shaped like starpy's AMIProtocol (every action returns a Deferred), without
its known faults: replies are matched to actions only by ActionID, a lost
connection fails every outstanding Deferred, a byte that is not UTF-8 never
drops the link, both Command reply formats are understood, and header values
cannot smuggle extra lines into an action.

The connection lifecycle (login, reconnect, event subscriptions, on-connected
hooks) lives in L{appliance.asterisk.amiservice}.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from appliance.asterisk._tcp import sendWithoutDelay, writeNow

log = Logger()

GREETING_PREFIX = "Asterisk Call Manager/"
END_COMMAND = "--END COMMAND--"

#: What a header value may be: lists and tuples become repeated header lines
#: (C{Variable: a=1} twice), C{None} leaves the header out, booleans become
#: C{true}/C{false}.
HeaderValue = str | int | bool | Sequence[str | int] | None
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]

# "Key: value" or "Key:" (Asterisk >= 14 sends a bare "Output:" for an empty
# line).  Exactly one space is part of the separator; the rest is the value.
_HEADER = re.compile(r"([^\s:]+):(?: (.*))?", re.DOTALL)
_HEADER_NAME = re.compile(r"[^\s:]+")
# Late events of an event list that timed out or was cancelled are dropped,
# not broadcast; remember that many abandoned ActionIDs.
_FORGOTTEN_LIMIT = 256


class AMIError(Exception):
    """Base of every error this client reports."""


class AMIActionError(AMIError):
    """Asterisk answered an action with C{Response: Error}.

    C{message} is Asterisk's C{Message} header; C{response} the whole reply.
    """

    def __init__(self, message: str, response: AMIMessage | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AMIAuthenticationError(AMIActionError):
    """Asterisk refused the login (user, secret, permit/deny ACL)."""


class AMIConnectionLost(AMIError):
    """The connection went away before the reply arrived."""


class AMINotConnected(AMIError):
    """There is no (logged-in) connection to send the action on."""


class AMITimeout(AMIError):
    """No reply within the action timeout; the ActionID has been forgotten."""


class AMIMessage:
    """One AMI message: ordered headers with case-insensitive lookup.

    Headers repeat (C{Output}, C{ChanVariable}), so they are kept as an ordered
    list and lookup returns the first value; L{getall} returns every value.
    """

    def __init__(
        self,
        headers: Iterable[tuple[str, str]] = (),
        *,
        raw_output: Sequence[str] | None = None,
        extra_lines: Sequence[str] = (),
    ) -> None:
        self.headers: list[tuple[str, str]] = list(headers)
        #: Lines inside the message that were not C{Key: value}; kept, since
        #: some Asterisk modules write such lines.
        self.extra_lines: list[str] = list(extra_lines)
        self._raw_output = None if raw_output is None else list(raw_output)

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of header C{key} (any case), or C{default}."""
        wanted = key.lower()
        for name, value in self.headers:
            if name.lower() == wanted:
                return value
        return default

    def getall(self, key: str) -> list[str]:
        """Every value of header C{key} (any case), in order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.headers)

    def items(self) -> list[tuple[str, str]]:
        """The headers in wire order."""
        return list(self.headers)

    @property
    def name(self) -> str | None:
        """The event name, or None if this is not an event."""
        return self.get("Event")

    @property
    def response(self) -> str | None:
        """The Response header: C{Success}, C{Error}, C{Follows}, ... (events
        have none, except e.g. C{OriginateResponse})."""
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def is_error(self) -> bool:
        return (self.response or "").lower() == "error"

    @property
    def output(self) -> list[str]:
        """Command output lines in either format.

        Asterisk < 14 sends raw lines after C{Response: Follows}; newer
        versions send one C{Output} header per line.
        """
        if self._raw_output is not None:
            return list(self._raw_output)
        return self.getall("Output")

    def __repr__(self) -> str:
        return f"AMIMessage({self.headers!r})"


class AMIEventList(list[AMIMessage]):
    """The events an event-list action produced, in arrival order.

    Also carries the action's C{response} and the terminating C{complete}
    event (C{...Complete}, with C{ListItems}), which are not list members.
    """

    def __init__(
        self,
        events: Iterable[AMIMessage],
        response: AMIMessage | None,
        complete: AMIMessage | None,
    ) -> None:
        super().__init__(events)
        self.response = response
        self.complete = complete


@dataclass(eq=False)
class _Pending:
    """An action waiting for its reply (or, if C{collect}, its event list)."""

    action: str
    deferred: Deferred[Any]
    collect: bool
    timer: IDelayedCall | None = None
    response: AMIMessage | None = None
    events: list[AMIMessage] = field(default_factory=list)


class AMIProtocol(LineReceiver):
    """Client side of one AMI connection.

    @ivar eventHandler: called with every unsolicited event (see
        L{eventReceived}); the service points it at its subscriptions.
    @ivar greeting: the C{Asterisk Call Manager/x.y.z} line, once received.
    """

    delimiter = b"\r\n"
    # Asterisk < 14 sends a whole Command output as one "line" (lines inside
    # separated by bare LF), so the limit is generous; it only protects memory
    # from a peer that never sends CRLF.
    MAX_LENGTH = 1024 * 1024
    MAX_MESSAGE_LINES = 100_000
    """Lines of one message (headers, stray lines, old-style Command output)."""
    MAX_MESSAGE_BYTES = 8 * 1024 * 1024
    MAX_LIST_EVENTS = 200_000
    """Events of one list action (CoreShowChannels on a very large system)."""

    def __init__(
        self,
        *,
        eventHandler: Callable[[AMIMessage], object] | None = None,
        clock: IReactorTime | None = None,
        actionTimeout: float | None = None,
        actionIDPrefix: str = "appliance",
    ) -> None:
        if actionTimeout is not None and clock is None:
            raise ValueError("actionTimeout needs a clock")
        self.eventHandler = eventHandler
        self.greeting: str | None = None
        self._clock = clock
        self._actionTimeout = actionTimeout
        self._prefix = actionIDPrefix
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._forgotten: dict[str, None] = {}
        self._lostReason: Failure | None = None
        self._disconnectWaiters: list[Deferred[None]] = []
        self._firstLine = True
        self._discarding = False
        """Skipping the rest of an oversized message, up to its blank line."""
        self._resetMessage()

    def connectionMade(self) -> None:
        # Asterisk's manager sends with TCP_NODELAY; our actions should not
        # wait for the ACK of the previous one either.
        sendWithoutDelay(self.transport)

    # -- actions ---------------------------------------------------------

    def sendAction(self, action: str, **headers: HeaderValue) -> Deferred[AMIMessage]:
        """Send C{action}; the Deferred fires with the reply.

        C{Response: Error} fails it with L{AMIActionError}. A value holding CR
        or LF raises L{ValueError} at once (header injection).
        """
        return self.sendActionHeaders(action, headers)

    def sendActionHeaders(
        self, action: str, headers: Headers, *, timeout: float | None = None
    ) -> Deferred[AMIMessage]:
        """L{sendAction} for header names that are not Python identifiers, or
        a timeout other than the protocol's (C{math.inf}: wait forever)."""
        return self._send(action, headers, collect=False, timeout=timeout)

    def collectEvents(self, action: str, **headers: HeaderValue) -> Deferred[AMIEventList]:
        """Send an event-list action (C{CoreShowChannels}, C{DeviceStateList},
        C{PJSIPShowContacts}, ...) and fire with its events once the
        C{EventList: Complete} event arrives."""
        return self._send(action, headers, collect=True, timeout=None)

    def command(self, cmd: str) -> Deferred[list[str]]:
        """Run a CLI command; fires with its output lines (both formats).

        A failed command (Asterisk >= 14 answers C{Response: Error}) fails
        with L{AMIActionError} whose message is the command's output.
        """
        return self.sendAction("Command", Command=cmd).addCallbacks(_commandOutput, _commandFailed)

    def login(
        self, username: str, secret: str, *, events: str = "on", md5: bool = False
    ) -> Deferred[AMIMessage]:
        """Log in, plain or by MD5 challenge; a refusal fails with
        L{AMIAuthenticationError}. The secret is never logged."""
        if not md5:
            d = self.sendAction("Login", Username=username, Secret=secret, Events=events)
        else:

            def answer(challenge: AMIMessage) -> Deferred[AMIMessage]:
                text = (challenge.get("Challenge", "") or "") + secret
                key = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
                return self.sendAction("Login", AuthType="MD5", Username=username, Key=key, Events=events)

            d = self.sendAction("Challenge", AuthType="MD5").addCallback(answer)
        return d.addErrback(_loginRefused, username)

    def logoff(self) -> Deferred[AMIMessage]:
        """Say goodbye; Asterisk closes the connection after replying."""
        return self.sendAction("Logoff")

    def whenDisconnected(self) -> Deferred[None]:
        """Fires (with None) when the connection is lost, before the
        outstanding actions are failed."""
        if self._lostReason is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._disconnectWaiters.append(d)
        return d

    def eventReceived(self, event: AMIMessage) -> None:
        """An event that answers none of our pending actions arrived.

        Routes to C{eventHandler}; override in a subclass for other routing.
        """
        if self.eventHandler is not None:
            self.eventHandler(event)

    # -- sending ---------------------------------------------------------

    def _send(self, action: str, headers: Headers, *, collect: bool, timeout: float | None) -> Deferred[Any]:
        lines = _actionLines(action, headers)
        if self._lostReason is not None or self.transport is None:
            return fail(AMINotConnected(f"Cannot send {action}: not connected"))
        action_id = f"{self._prefix}-{next(self._ids)}"
        d: Deferred[Any] = Deferred(lambda _: self._forget(action_id))
        pending = _Pending(action, d, collect)
        if timeout is None:
            timeout = self._actionTimeout
        if timeout is not None and not math.isinf(timeout):
            if self._clock is None:
                raise ValueError("a timeout needs a clock")
            pending.timer = self._clock.callLater(timeout, self._timedOut, action_id, timeout)
        self._pending[action_id] = pending
        lines.insert(1, f"ActionID: {action_id}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        writeNow(self.transport)
        log.debug("Sent AMI {action} ({action_id})", action=action, action_id=action_id)
        return d

    def _take(self, action_id: str) -> _Pending | None:
        """Stop waiting for C{action_id}; its Deferred is the caller's to fire."""
        pending = self._pending.pop(action_id, None)
        if pending is not None and pending.timer is not None:
            if pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
        return pending

    def _forget(self, action_id: str) -> None:
        """Give up on C{action_id} (cancelled or timed out); drop late replies."""
        pending = self._take(action_id)
        if pending is not None and pending.collect:
            self._forgotten[action_id] = None
            while len(self._forgotten) > _FORGOTTEN_LIMIT:
                del self._forgotten[next(iter(self._forgotten))]

    def _timedOut(self, action_id: str, timeout: float) -> None:
        pending = self._pending.get(action_id)
        if pending is None:
            return
        pending.timer = None
        self._forget(action_id)
        log.warn(
            "No AMI reply to {action} ({action_id}) within {timeout}s",
            action=pending.action,
            action_id=action_id,
            timeout=timeout,
        )
        pending.deferred.errback(AMITimeout(f"No reply to {pending.action} within {timeout} seconds"))

    # -- receiving -------------------------------------------------------

    def _resetMessage(self) -> None:
        self._lines = 0
        self._bytes = 0
        self._headers: list[tuple[str, str]] = []
        self._extra: list[str] = []
        # Raw output of a "Response: Follows" (Asterisk < 14 Command reply),
        # collected until "--END COMMAND--"; None outside such a reply.
        self._output: list[str] | None = None
        self._outputDone = False

    def lineReceived(self, line: bytes) -> None:
        # Latin-1 decodes every byte, so a caller name in a legacy charset
        # arrives readable instead of dropping the connection.
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")
        if self._discarding:
            if not text:
                self._discarding = False
            return
        self._lines += 1
        self._bytes += len(line)
        if self._lines > self.MAX_MESSAGE_LINES or self._bytes > self.MAX_MESSAGE_BYTES:
            log.error(
                "AMI message over {lines} lines or {size} bytes; dropping it",
                lines=self.MAX_MESSAGE_LINES,
                size=self.MAX_MESSAGE_BYTES,
            )
            self._resetMessage()
            self._discarding = bool(text)
            return
        try:
            self._lineReceived(text)
        except Exception:
            # Last resort: a bug here must cost one message, not the link.
            log.failure("Dropping an AMI message that could not be handled")
            self._resetMessage()

    def _lineReceived(self, line: str) -> None:
        if self._firstLine:
            self._firstLine = False
            if line.startswith(GREETING_PREFIX):
                self.greeting = line
                return
            log.warn("AMI peer sent no greeting; first line {line!r}", line=line[:200])
        if self._output is not None and not self._outputDone:
            self._outputLine(self._output, line)
            return
        if not line:
            if self._headers or self._extra or self._output is not None:
                message = AMIMessage(self._headers, raw_output=self._output, extra_lines=self._extra)
                self._resetMessage()
                self._dispatch(message)
            return
        header = _HEADER.fullmatch(line)
        if header is None:
            log.debug("Keeping AMI line without 'Key: ' {line!r}", line=line[:200])
            self._extra.append(line)
            return
        key, value = header.group(1), header.group(2) or ""
        self._headers.append((key, value))
        if len(self._headers) == 1 and key.lower() == "response" and value.lower() == "follows":
            self._output = []

    def _outputLine(self, output: list[str], line: str) -> None:
        """One CRLF-line of an old-style Command reply.

        Before the output come the Privilege and ActionID headers; the output
        itself is LF-separated and ends with (or in) C{--END COMMAND--}.
        """
        if not output:
            if not line:
                return
            header = _HEADER.fullmatch(line)
            if header is not None and header.group(1).lower() in ("actionid", "privilege"):
                self._headers.append((header.group(1), header.group(2) or ""))
                return
        for piece in line.split("\n"):
            piece = piece.rstrip("\r")
            if piece.endswith(END_COMMAND):
                if piece[: -len(END_COMMAND)]:
                    output.append(piece[: -len(END_COMMAND)])
                self._outputDone = True
                return
            output.append(piece)

    def _dispatch(self, message: AMIMessage) -> None:
        action_id = message.action_id
        pending = None if action_id is None else self._pending.get(action_id)
        if _isReply(message):
            if action_id is None or pending is None:
                log.info(
                    "Ignoring AMI reply to unknown ActionID {action_id}",
                    action_id=action_id,
                )
                return
            self._replyReceived(action_id, pending, message)
        elif message.name is not None:
            if action_id is not None and pending is not None and pending.collect:
                self._listEventReceived(action_id, pending, message)
            elif action_id is not None and action_id in self._forgotten:
                log.debug(
                    "Dropping late {event} of abandoned {action_id}", event=message.name, action_id=action_id
                )
            else:
                self._deliverEvent(message)
        else:
            log.info(
                "Ignoring AMI message that is neither reply nor event: {headers!r}",
                headers=message.headers[:10],
            )

    def _replyReceived(self, action_id: str, pending: _Pending, message: AMIMessage) -> None:
        if message.is_error:
            self._take(action_id)
            text = message.get("Message") or f"{pending.action} failed"
            pending.deferred.errback(AMIActionError(text, message))
        elif not pending.collect:
            self._take(action_id)
            pending.deferred.callback(message)
        elif _announcesList(message):
            pending.response = message
        else:
            # Success without a list: nothing will follow, don't wait for it.
            self._take(action_id)
            pending.deferred.callback(AMIEventList([], message, None))

    def _listEventReceived(self, action_id: str, pending: _Pending, event: AMIMessage) -> None:
        if _endsList(event):
            self._take(action_id)
            pending.deferred.callback(AMIEventList(pending.events, pending.response, event))
        elif len(pending.events) >= self.MAX_LIST_EVENTS:
            self._forget(action_id)  # the rest of the list is dropped as it comes
            pending.deferred.errback(AMIError(f"{pending.action}: more than {self.MAX_LIST_EVENTS} events"))
        else:
            pending.events.append(event)

    def _deliverEvent(self, event: AMIMessage) -> None:
        try:
            self.eventReceived(event)
        except Exception:
            log.failure("AMI event handler failed on {event}", event=event.name)

    # -- connection ------------------------------------------------------

    def lineLengthExceeded(self, line: bytes) -> None:
        log.error(
            "AMI line longer than {limit} bytes; dropping the connection",
            limit=self.MAX_LENGTH,
        )
        self._resetMessage()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every outstanding action, so no caller waits forever."""
        self._lostReason = reason
        self._resetMessage()
        log.info("AMI connection lost: {reason}", reason=reason.getErrorMessage())
        waiters, self._disconnectWaiters = self._disconnectWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        for action_id in list(self._pending):
            pending = self._take(action_id)
            if pending is not None:
                pending.deferred.errback(
                    AMIConnectionLost(
                        f"Connection lost before the reply to {pending.action}: {reason.getErrorMessage()}"
                    )
                )


def _actionLines(action: str, headers: Headers) -> list[str]:
    """The lines of an action (without ActionID); refuses header injection."""
    if not _HEADER_NAME.fullmatch(action):
        raise ValueError(f"invalid AMI action name {action!r}")
    lines = [f"Action: {action}"]
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"invalid AMI header name {key!r}")
        if key.lower() in ("action", "actionid"):
            raise ValueError(f"{key} is set by the protocol")
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for one in values:
            text = _headerText(one)
            if "\r" in text or "\n" in text:
                raise ValueError(f"AMI header {key} contains a line break")
            lines.append(f"{key}: {text}")
    return lines


def _headerText(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _isReply(message: AMIMessage) -> bool:
    """Reply or event? Asterisk puts Response or Event first; the other can
    appear inside (C{Event: OriginateResponse} has C{Response: Failure})."""
    for name, _ in message.headers:
        if name.lower() in ("response", "event"):
            return name.lower() == "response"
    return False


def _announcesList(response: AMIMessage) -> bool:
    """Does this Success reply promise events (C{EventList: start})?"""
    if (response.get("EventList") or "").lower() == "start":
        return True
    # Old Asterisk said only "Message: ... will follow".
    return "follow" in (response.get("Message") or "").lower()


def _endsList(event: AMIMessage) -> bool:
    event_list = event.get("EventList")
    if event_list is not None:
        return event_list.lower() in ("complete", "cancelled")
    return (event.name or "").lower().endswith("complete")


def _commandOutput(reply: AMIMessage) -> list[str]:
    return reply.output


def _commandFailed(failure: Failure) -> Failure:
    error = failure.value
    if isinstance(error, AMIActionError) and error.response is not None:
        output = error.response.output
        if output:
            return Failure(AMIActionError("\n".join(output), error.response))
    return failure


def _loginRefused(failure: Failure, username: str) -> Failure:
    error = failure.value
    if isinstance(error, AMIActionError) and not isinstance(error, AMIAuthenticationError):
        return Failure(
            AMIAuthenticationError(
                f"Asterisk refused AMI login as {username!r}: {error.message}",
                error.response,
            )
        )
    return failure
