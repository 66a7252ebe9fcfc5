"""The FastAGI routes the shipped dialplan (``asterisk/appliance.conf``) calls.

``call``: every call to an internal number.  The appliance keeps the AGI
session for the whole call (``EXEC Dial``) so it sees how the dial ended and
can act on it.  Asterisk falls back to a plain ``Dial()`` only when the
appliance cannot be reached.

``feature``: feature codes dialled on a phone (``*21…``, ``#39`` …), handed
to whichever feature registered the code.

Extension points for the features:
- `CallRouter.unreachable`: called when the target is logged out, on DND,
  busy, or did not answer (callback offers, CCNR memory);
- `FeatureCodes.register`: a feature's codes.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from appliance.asterisk.fastagi import AGIArgs
from appliance.pbx import PBXModel, Presence

log = Logger()

NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
"""What may reach Dial(): anything else could smuggle in options or more targets."""

RING_SECONDS = 60


class CallSession(Protocol):
    """What the routes need of a FastAGI session (`FastAGIProtocol`)."""

    args: AGIArgs
    env: dict[str, str]

    def exec_(self, application: str, options: str = "") -> Deferred[int]: ...

    def getVariable(self, name: str) -> Deferred[str | None]: ...


class BadCallRequest(Exception):
    """The dialplan sent something that is not a number."""


class Unreachable(enum.Enum):
    """Why a call did not reach its target."""

    LOGGED_OUT = "logged_out"
    DND = "dnd"
    BUSY = "busy"
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class Call:
    """One call as the dialplan handed it to us.  Caller ID is the caller's claim."""

    number: str
    origin: str
    """``internal`` (from a phone) or ``external`` (from the trunk)."""
    caller_num: str
    caller_name: str
    channel: str
    uniqueid: str


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


def call_from(session: CallSession) -> Call:
    number, origin = called_number(session.args)
    env = session.env
    return Call(
        number=number,
        origin=origin,
        caller_num=env.get("agi_callerid", ""),
        caller_name=env.get("agi_calleridname", ""),
        channel=env.get("agi_channel", ""),
        uniqueid=env.get("agi_uniqueid", ""),
    )


UnreachableHandler = Callable[[CallSession, Call, Unreachable], Any]
"""May return a Deferred; the call ends when it fires."""

DIAL_STATUS_UNREACHABLE = {
    "BUSY": Unreachable.BUSY,
    "CHANUNAVAIL": Unreachable.LOGGED_OUT,
    "NOANSWER": Unreachable.NO_ANSWER,
}


class CallRouter:
    """Route one call to an internal number."""

    def __init__(self, pbx: PBXModel | None = None, ring_seconds: int = RING_SECONDS) -> None:
        self.pbx = pbx
        self.ring_seconds = ring_seconds
        self.unreachable: UnreachableHandler | None = None
        self.recent: deque[tuple[str, str, str | None]] = deque(maxlen=100)
        """(number, origin, dial status) of the last calls, newest last."""
        self._observers: list[Callable[[tuple[str, str, str | None]], None]] = []

    def subscribe(self, observer: Callable[[tuple[str, str, str | None]], None]) -> Callable[[], None]:
        """Be told of every finished call (journal, tests)."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _before_dial(self, number: str) -> Unreachable | None:
        """Logged out and DND are known before ringing; busy is left to Dial."""
        if self.pbx is None or not self.pbx.synced:
            return None
        presence = self.pbx.presence(number)
        if presence is Presence.LOGGED_OUT and number in self.pbx.endpoints:
            return Unreachable.LOGGED_OUT
        if presence is Presence.DND:
            return Unreachable.DND
        return None

    @inlineCallbacks
    def __call__(self, session: CallSession) -> Any:
        call = call_from(session)
        log.info(
            "call to {number} ({origin}) from {caller}",
            number=call.number,
            origin=call.origin,
            caller=call.caller_num,
        )
        reason = self._before_dial(call.number)
        status: str | None = reason.name if reason else None
        if reason is None:
            yield session.exec_("Dial", f"PJSIP/{call.number},{self.ring_seconds},tT")
            status = yield session.getVariable("DIALSTATUS")
            reason = DIAL_STATUS_UNREACHABLE.get(status or "")
        if reason is not None and self.unreachable is not None:
            yield self.unreachable(session, call, reason)
        log.info("call to {number} ended: {status}", number=call.number, status=status)
        self._finished((call.number, call.origin, status))
        return status

    def _finished(self, record: tuple[str, str, str | None]) -> None:
        self.recent.append(record)
        for observer in list(self._observers):
            observer(record)


FeatureHandler = Callable[[CallSession, str, str], Any]
"""handler(session, code, rest): ``*21300`` registered as ``*21`` gets rest ``300``."""

FEATURE_CODE = re.compile(r"^[*#][0-9*#]{1,40}$")


class FeatureCodes:
    """The ``feature`` route: dispatch a dialled code to its feature, longest prefix first."""

    def __init__(self) -> None:
        self.handlers: dict[str, FeatureHandler] = {}

    def register(self, prefix: str, handler: FeatureHandler) -> None:
        if not FEATURE_CODE.match(prefix) or prefix in self.handlers:
            raise ValueError(f"feature code {prefix!r} is malformed or taken")
        self.handlers[prefix] = handler

    def lookup(self, dialled: str) -> tuple[str, FeatureHandler] | None:
        for prefix in sorted(self.handlers, key=len, reverse=True):
            if dialled.startswith(prefix):
                return prefix, self.handlers[prefix]
        return None

    @inlineCallbacks
    def __call__(self, session: CallSession) -> Any:
        dialled = session.args.positional[0] if session.args.positional else ""
        found = self.lookup(dialled) if FEATURE_CODE.match(dialled) else None
        if found is None:
            log.info("unknown feature code {code!r}", code=dialled)
            yield session.exec_("Playback", "invalid")
            return None
        prefix, handler = found
        log.info("feature code {prefix} ({code})", prefix=prefix, code=dialled)
        result = yield handler(session, prefix, dialled[len(prefix) :])
        return result
