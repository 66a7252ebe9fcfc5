"""The FastAGI ``call`` script: what happens to a call to an internal number.

The shipped dialplan (``asterisk/appliance.conf``) hands every call to an
internal number here and falls back to a plain ``Dial()`` only when the
appliance cannot be reached.  The appliance keeps the AGI session for the
whole call (``EXEC Dial``) so it sees how the dial ended and can act on it;
the feature issues (forwarding, callback) plug their decisions in here.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from appliance.asterisk.fastagi import AGIArgs

log = Logger()

NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
"""What may reach Dial(): anything else could smuggle in options or more targets."""

RING_SECONDS = 60


class CallSession(Protocol):
    """What the router needs of a FastAGI session."""

    args: AGIArgs

    def exec_(self, application: str, options: str = "") -> Deferred[int]: ...

    def getVariable(self, name: str) -> Deferred[str | None]: ...


class BadCallRequest(Exception):
    """The dialplan sent something that is not a number."""


def called_number(args: AGIArgs) -> tuple[str, str]:
    """(number, origin) from ``AGI(agi://…/call,<number>,<internal|external>)``."""
    positional = list(args.positional)
    number = positional[0] if positional else ""
    origin = positional[1] if len(positional) > 1 else "internal"
    if not NUMBER.match(number):
        raise BadCallRequest(f"not a dialable number: {number!r}")
    if origin not in ("internal", "external"):
        raise BadCallRequest(f"unknown call origin: {origin!r}")
    return number, origin


class CallRouter:
    """Route one call; for now straight to the called endpoint."""

    def __init__(self, ring_seconds: int = RING_SECONDS) -> None:
        self.ring_seconds = ring_seconds
        self.recent: deque[tuple[str, str, str | None]] = deque(maxlen=100)
        """(number, origin, dial status) of the last calls, newest last."""
        self._observers: list[Callable[[tuple[str, str, str | None]], None]] = []

    def subscribe(self, observer: Callable[[tuple[str, str, str | None]], None]) -> Callable[[], None]:
        """Be told of every finished call (journal, tests)."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    @inlineCallbacks
    def __call__(self, session: CallSession) -> Any:
        number, origin = called_number(session.args)
        log.info("call to {number} ({origin})", number=number, origin=origin)
        yield session.exec_("Dial", f"PJSIP/{number},{self.ring_seconds},tT")
        status = yield session.getVariable("DIALSTATUS")
        log.info("call to {number} ended: {status}", number=number, status=status)
        self.recent.append((number, origin, status))
        for observer in list(self._observers):
            observer(self.recent[-1])
        return status
