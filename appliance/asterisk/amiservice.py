"""Keeps one logged-in AMI connection to Asterisk for the whole appliance.

C{ClientService} owns the connection: it reconnects with backoff forever
(Asterisk restarts, refused connects, refused logins), and its
C{prepareConnection} logs in. This service adds what features need on top:
event subscriptions that outlive connections, hooks run after every login
(to resync state an Asterisk restart has wiped), and actions that fail at
once with L{AMINotConnected} while the link is down rather than queueing.

With C{keepalive} set, a C{Ping} goes out that many seconds after the last
reply; one not answered within C{keepalive} seconds aborts the connection,
so a half-open link (Asterisk's host gone, a NAT dropped the flow) is
noticed within twice that time and C{ClientService} reconnects and the
hooks resync, instead of every action timing out one by one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from automat import NoTransition
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from appliance.observers import Observers

from .ami import (
    AMIAuthenticationError,
    AMIConnectionLost,
    AMIEventList,
    AMIMessage,
    AMINotConnected,
    AMIProtocol,
    Headers,
    HeaderValue,
)

log = Logger()

EventCallback = Callable[[AMIMessage], object]
ConnectedHook = Callable[[AMIProtocol], object]


@dataclass(eq=False)
class _Hook:
    hook: ConnectedHook


class AMIService(MultiService):
    """The appliance's AMI link.

    Build it from an endpoint (or L{fromString}), add it to the application,
    then use L{subscribe}, L{addConnectedHook}, L{sendAction},
    L{collectEvents} and L{command}.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        username: str,
        secret: str,
        *,
        clock: IReactorTime,
        retryPolicy: Callable[[int], float] | None = None,
        actionTimeout: float | None = 30.0,
        md5: bool = False,
        actionIDPrefix: str = "appliance",
        keepalive: float | None = None,
    ) -> None:
        """
        @param retryPolicy: seconds to wait after the n-th failure in a row;
            default C{backoffPolicy(maxDelay=30)}. Tests inject one with a
            fixed jitter.
        @param actionTimeout: seconds an action (login included) may wait for
            its reply before failing with L{AMITimeout}; None waits forever.
        """
        super().__init__()
        self._username = username
        self._secret = secret
        self._clock = clock
        self._actionTimeout = actionTimeout
        self._md5 = md5
        self._prefix = actionIDPrefix
        self._current: AMIProtocol | None = None
        self._subscribers: Observers[[AMIMessage]] = Observers("AMI event")
        self._hooks: list[_Hook] = []
        self._waiters: list[Deferred[AMIProtocol]] = []
        self._stopped = False
        self._keepalive = keepalive
        self._pingTimer: IDelayedCall | None = None
        self._client = ClientService(
            _QuietLossEndpoint(endpoint),
            _AMIFactory(self._buildProtocol),
            retryPolicy=retryPolicy or backoffPolicy(initialDelay=1.0, maxDelay=30.0),
            clock=clock,
            prepareConnection=self._prepare,
        )
        self._client.setServiceParent(self)

    @classmethod
    def fromString(
        cls,
        reactor: Any,
        description: str,
        username: str,
        secret: str,
        *,
        retryPolicy: Callable[[int], float] | None = None,
        actionTimeout: float | None = 30.0,
        md5: bool = False,
        keepalive: float | None = None,
    ) -> AMIService:
        """From an endpoint string such as C{tcp:host=127.0.0.1:port=5038}."""
        return cls(
            clientFromString(reactor, description),
            username,
            secret,
            clock=reactor,
            retryPolicy=retryPolicy,
            actionTimeout=actionTimeout,
            md5=md5,
            keepalive=keepalive,
        )

    # -- state -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Is there a logged-in connection right now?"""
        return self._current is not None

    @property
    def protocol(self) -> AMIProtocol | None:
        """The logged-in connection, or None."""
        return self._current

    def whenConnected(self) -> Deferred[AMIProtocol]:
        """The logged-in connection, now or once there is one.

        Fails with C{CancelledError} if the service stops first (or has
        stopped); before the first start it waits.
        """
        if self._current is not None:
            return succeed(self._current)
        if self._stopped:
            return fail(CancelledError("the AMI service is stopped"))
        d: Deferred[AMIProtocol] = Deferred(self._forgetWaiter)
        self._waiters.append(d)
        return d

    def _forgetWaiter(self, waiter: Deferred[AMIProtocol]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def startService(self) -> None:
        self._stopped = False
        super().startService()

    def stopService(self) -> Deferred[None]:
        self._stopped = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(CancelledError("the AMI service stopped"))
        stopped: Deferred[Any] = super().stopService()
        return stopped.addCallback(lambda _: None)

    # -- actions -------------------------------------------------------------

    def sendAction(self, action: str, **headers: HeaderValue) -> Deferred[AMIMessage]:
        """L{AMIProtocol.sendAction} on the current connection."""
        if self._current is None:
            return _notConnected(action)
        return self._current.sendAction(action, **headers)

    def sendActionHeaders(
        self, action: str, headers: Headers, *, timeout: float | None = None
    ) -> Deferred[AMIMessage]:
        """L{AMIProtocol.sendActionHeaders} on the current connection."""
        if self._current is None:
            return _notConnected(action)
        return self._current.sendActionHeaders(action, headers, timeout=timeout)

    def collectEvents(self, action: str, **headers: HeaderValue) -> Deferred[AMIEventList]:
        """L{AMIProtocol.collectEvents} on the current connection."""
        if self._current is None:
            return _notConnected(action)
        return self._current.collectEvents(action, **headers)

    def command(self, cmd: str) -> Deferred[list[str]]:
        """L{AMIProtocol.command} on the current connection."""
        if self._current is None:
            return _notConnected("Command")
        return self._current.command(cmd)

    # -- events and hooks ------------------------------------------------------

    def subscribe(self, event: str | None, callback: EventCallback) -> Callable[[], None]:
        """Call C{callback} with every event named C{event} (any case),
        or every event if None, on this and all later connections.

        Returns the function that unsubscribes. A callback that raises, or
        returns a failing Deferred, is logged; the others still run.
        """
        if event is None:
            return self._subscribers.subscribe(callback)
        wanted = event.lower()

        @functools.wraps(callback)  # the log names the callback, not this filter
        def named(message: AMIMessage) -> object:
            return callback(message) if (message.name or "").lower() == wanted else None

        return self._subscribers.subscribe(named)

    def addConnectedHook(self, hook: ConnectedHook) -> Callable[[], None]:
        """Call C{hook(protocol)} after every successful login, e.g. to resync
        with C{CoreShowChannels} after an Asterisk restart.

        The hook may return a Deferred; a failure is logged and neither stops
        the connection nor the other hooks. Returns the function that removes
        the hook. Hooks registered while connected wait for the next login.
        """
        entry = _Hook(hook)
        self._hooks.append(entry)

        def remove() -> None:
            if entry in self._hooks:
                self._hooks.remove(entry)

        return remove

    def _dispatchEvent(self, event: AMIMessage) -> None:
        self._subscribers.notify(event)

    # -- connection lifecycle ---------------------------------------------------

    def _buildProtocol(self) -> AMIProtocol:
        return AMIProtocol(
            eventHandler=self._dispatchEvent,
            clock=self._clock,
            actionTimeout=self._actionTimeout,
            actionIDPrefix=self._prefix,
        )

    def _prepare(self, connection: IProtocol) -> Deferred[None]:
        """ClientService's prepareConnection: log in, then go live.

        ClientService hands over a transparent proxy around our
        L{AMIProtocol}; that proxy is used as "the connection" throughout.
        """
        protocol = cast(AMIProtocol, connection)
        d = protocol.login(self._username, self._secret, md5=self._md5)
        return d.addCallbacks(
            self._loggedIn,
            self._loginFailed,
            callbackArgs=(protocol,),
            errbackArgs=(protocol,),
        )

    def _loggedIn(self, response: AMIMessage, protocol: AMIProtocol) -> None:
        self._current = protocol
        protocol.whenDisconnected().addCallback(self._disconnected, protocol)
        log.info(
            "AMI logged in as {username} ({greeting})", username=self._username, greeting=protocol.greeting
        )
        self._schedulePing(protocol)
        for entry in list(self._hooks):
            maybeDeferred(entry.hook, protocol).addErrback(self._hookFailed, entry.hook)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(protocol)

    def _loginFailed(self, failure: Failure, protocol: AMIProtocol) -> Failure:
        """Log, hang up (ClientService leaves a refused connection open), and
        hand the failure on so ClientService retries with backoff."""
        if failure.check(AMIAuthenticationError):
            log.error("{error}; will retry", error=failure.getErrorMessage())
        elif failure.check(CancelledError):
            log.info("AMI login abandoned: the service is stopping")
        else:
            log.warn(
                "AMI login as {username} failed: {error}; will retry",
                username=self._username,
                error=failure.getErrorMessage(),
            )
        transport = protocol.transport
        if transport is not None:
            transport.loseConnection()
        return failure

    def _schedulePing(self, protocol: AMIProtocol) -> None:
        if self._keepalive is not None and self._current is protocol:
            self._pingTimer = self._clock.callLater(self._keepalive, self._ping, protocol)

    def _ping(self, protocol: AMIProtocol) -> None:
        self._pingTimer = None
        if self._current is not protocol:
            return
        answered = protocol.sendActionHeaders("Ping", {}, timeout=self._keepalive)
        answered.addCallbacks(
            lambda _: self._schedulePing(protocol), self._pingFailed, errbackArgs=(protocol,)
        )

    def _pingFailed(self, failure: Failure, protocol: AMIProtocol) -> None:
        if self._current is not protocol or failure.check(AMIConnectionLost):
            return  # the link went down by itself; reconnecting already
        log.warn(
            "AMI keepalive: no answer to Ping within {timeout}s ({error}); dropping the link",
            timeout=self._keepalive,
            error=failure.getErrorMessage(),
        )
        transport: Any = protocol.transport
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            (abort or transport.loseConnection)()

    def _disconnected(self, _: None, protocol: AMIProtocol) -> None:
        if self._pingTimer is not None and self._pingTimer.active():
            self._pingTimer.cancel()
        self._pingTimer = None
        if self._current is protocol:
            self._current = None
            log.info("AMI link down; reconnecting")

    @staticmethod
    def _hookFailed(failure: Failure, hook: ConnectedHook) -> None:
        if failure.check(AMIConnectionLost):
            log.warn(
                "AMI on-connected hook {hook!r} cut short: {error}",
                hook=hook,
                error=failure.getErrorMessage(),
            )
        else:
            log.failure("AMI on-connected hook {hook!r} failed", failure=failure, hook=hook)


def _notConnected(action: str) -> Deferred[Any]:
    return fail(AMINotConnected(f"Cannot send {action}: not connected to Asterisk"))


class _AMIFactory(Factory):
    noisy = False  # no "Starting factory" line for every reconnect

    def __init__(self, build: Callable[[], AMIProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> AMIProtocol:
        protocol = self._build()
        protocol.factory = self
        return protocol


@implementer(IStreamClientEndpoint)
class _QuietLossEndpoint:
    """Works around ClientService raising C{automat.NoTransition} out of
    C{connectionLost} when a connection that never got past
    C{prepareConnection} (refused or timed-out login, service stopping) is
    closed: ClientService has no transition for that, though it has already
    scheduled the retry. Without this every refused login logs a traceback.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        connecting = self._endpoint.connect(_GuardFactory(protocolFactory))
        return connecting.addCallback(_unguard)

    def __repr__(self) -> str:
        return repr(self._endpoint)


def _unguard(guard: IProtocol) -> IProtocol:
    # ClientService expects the protocol its own factory built.
    return cast(_LossGuard, guard).wrapped


@implementer(IProtocolFactory)
class _GuardFactory:
    def __init__(self, wrapped: IProtocolFactory) -> None:
        self._wrapped = wrapped

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        built = self._wrapped.buildProtocol(addr)
        return None if built is None else _LossGuard(built)

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()


@implementer(IProtocol, ILoggingContext)
class _LossGuard:
    def __init__(self, wrapped: IProtocol) -> None:
        self.wrapped = wrapped

    def makeConnection(self, transport: ITransport) -> None:
        self.wrapped.makeConnection(transport)

    def connectionMade(self) -> None:
        """The wrapped protocol's makeConnection already called its own."""

    def dataReceived(self, data: bytes) -> None:
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        try:
            self.wrapped.connectionLost(reason)
        except NoTransition:
            log.debug("ClientService had no transition for a lost unprepared connection")

    def logPrefix(self) -> str:
        return "AMI"
