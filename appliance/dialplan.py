"""The FastAGI routes the shipped dialplan (``asterisk/appliance.conf``) calls.

``call``: every call to an internal number.  The appliance keeps the AGI
session for the whole call (``EXEC Dial``) so it sees how the dial ended and
can act on it.  Asterisk falls back to a plain ``Dial()`` only when the
appliance cannot be reached.

``feature``: feature codes dialled on a phone (``*21…``, ``#39`` …), handed
to whichever feature registered the code.

Forwarding (`appliance.forwarding`) decides the legs of a call: the forwards
of the called line, breakthrough, forward display, loops.  The router dials
them one after the other in the same AGI session, setting the caller name the
target sees through ``SET VARIABLE CALLERID(name)`` (quoted by the FastAGI
layer; caller names are attacker-controlled and never enter a Dial string).

Extension points for the features:
- `CallRouter.unreachable`: called when the *final* target of a call (after
  any forwards) is logged out, on DND, busy, or did not answer (callback
  offers); ``call.number`` is that target (a line, or a group none of whose
  members is free), ``call.forwarded_from`` the numbers the call was
  forwarded from;
- `CallRouter.unanswered`: told of the first internal line of a call that rang
  and was not answered: ring timeout, the caller's CANCEL, or a no-answer
  forward (CCNR's "last unanswered number"); the caller may be gone already;
- `CallRouter.waiting`: the one busy rule (`appliance.busy`, per-user call
  waiting): busy before ringing, or busy once a waiting call rang too long;
- `FeatureCodes.register`: a feature's codes.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from appliance.asterisk.fastagi import AGIArgs
from appliance.busy import Reach
from appliance.directory import DEVICE
from appliance.forwarding.rules import Context, Destination, Leg, Policy, after, plan
from appliance.pbx import PBXModel, Presence

log = Logger()

NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
"""What may reach Dial(): anything else could smuggle in options or more targets."""

RING_SECONDS = 60

ORIGINAL_NAME = "APPLIANCE_CALLER_NAME"
"""Channel variable keeping the caller's own name while CALLERID(name) shows a forward display."""


class CallSession(Protocol):
    """What the routes need of a FastAGI session (`FastAGIProtocol`)."""

    args: AGIArgs
    env: dict[str, str]

    def exec_(self, application: str, options: str = "") -> Deferred[int]: ...

    def getVariable(self, name: str) -> Deferred[str | None]: ...

    def setVariable(self, name: str, value: str) -> Deferred[None]: ...

    def endAfterNextCommand(self) -> None: ...


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
    forwarded_from: tuple[str, ...] = ()
    """For the final target of a forwarded call: the numbers it was forwarded from."""


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

UnansweredHandler = Callable[[Call], None]
"""unanswered(the call, with ``number`` the line that rang unanswered)."""

UNANSWERED_STATUSES = frozenset({"NOANSWER", "CANCEL"})

REACH_UNREACHABLE = {
    Reach.LOGGED_OUT: Unreachable.LOGGED_OUT,
    Reach.DND: Unreachable.DND,
    Reach.BUSY: Unreachable.BUSY,
}

DIAL_STATUS_UNREACHABLE = {
    "BUSY": Unreachable.BUSY,
    "CHANUNAVAIL": Unreachable.LOGGED_OUT,
    "NOANSWER": Unreachable.NO_ANSWER,
}


class Forwarder(Protocol):
    """What the router needs of forwarding (`appliance.forwarding.service.Forwarding`)."""

    def context(self, call: Call, blind_transfer: bool = False) -> Context: ...

    def display(self, leg: Leg, call: Call, policy: Policy) -> str | None: ...

    def own_name(self, call: Call) -> str | None:
        """The directory name of an internal caller (by its channel), else None."""


class Watch(Protocol):
    def stop(self) -> bool:
        """Dial ended; True when the waiting call was ended as busy."""


class BusyRule(Protocol):
    """What the router needs of `appliance.callwaiting.CallWaiting`."""

    def reach(self, number: str, leaving: str | None = None) -> Reach: ...

    def watch(
        self, caller_uniqueid: str, number: str, ring_seconds: int, leaving: str | None = None
    ) -> Watch | None: ...


class CallRouter:
    """Route one call to an internal number, following its forwards."""

    def __init__(
        self,
        pbx: PBXModel | None = None,
        ring_seconds: int = RING_SECONDS,
        forwarding: Forwarder | None = None,
        trunk: str = "trunk",
        waiting: BusyRule | None = None,
        devices: Callable[[str], Sequence[str]] = lambda number: (number,),
    ) -> None:
        self.pbx = pbx
        self.waiting = waiting
        self.devices = devices
        """Internal number -> the PJSIP endpoints a call to it rings at once
        (`appliance.devices.Devices.to_ring`: all of a user's registered phones)."""
        self.ring_seconds = ring_seconds
        self.forwarding = forwarding
        self.trunk = trunk
        self.unreachable: UnreachableHandler | None = None
        self.unanswered: UnansweredHandler | None = None
        self.recent: deque[tuple[str, str, str | None]] = deque(maxlen=100)
        """(number, origin, dial status) of the last calls, newest last."""
        self.legs: deque[tuple[str, Leg, str | None]] = deque(maxlen=100)
        """(uniqueid, leg, status) of every leg dialled, newest last (tests, journal)."""
        self._observers: list[Callable[[tuple[str, str, str | None]], None]] = []

    def subscribe(self, observer: Callable[[tuple[str, str, str | None]], None]) -> Callable[[], None]:
        """Be told of every finished call (journal, tests)."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _before_dial(self, number: str, leaving: str | None) -> Unreachable | None:
        """Logged out, DND and (by the busy rule) busy are known before ringing;
        ``leaving``: the channel that blindly transferred this call, hanging up."""
        if self.waiting is not None:
            return REACH_UNREACHABLE.get(self.waiting.reach(number, leaving))
        if self.pbx is None or not self.pbx.synced:
            return None
        presence = self.pbx.presence(number)
        if presence is Presence.LOGGED_OUT and number in self.pbx.endpoints:
            return Unreachable.LOGGED_OUT
        if presence is Presence.DND:
            return Unreachable.DND
        return None

    def _group_before_dial(self, members: tuple[str, ...], leaving: str | None) -> Unreachable | None:
        """A group none of whose members is free (by the busy rule) is busy."""
        if self.waiting is None or not members:
            return None
        free = [m for m in members if self.waiting.reach(m, leaving) is Reach.FREE]
        return None if free else Unreachable.BUSY

    def _dial_string(self, destination: Destination) -> str | None:
        """The Dial() target list; every number in it was validated as a number."""
        if destination.kind == "group":
            numbers = list(destination.members)
        else:
            numbers = [destination.number]
        if not numbers or not all(NUMBER.match(n) for n in numbers):
            return None
        if destination.kind == "external":
            return f"PJSIP/{destination.number}@{self.trunk}"
        endpoints = [e for n in numbers for e in self.devices(n)]
        if not all(DEVICE.match(e) for e in endpoints):  # no & , / in an endpoint name
            return None
        return "&".join(f"PJSIP/{e}" for e in dict.fromkeys(endpoints))

    @inlineCallbacks
    def __call__(self, session: CallSession) -> Any:
        call = call_from(session)
        log.info(
            "call to {number} ({origin}) from {caller}",
            number=call.number,
            origin=call.origin,
            caller=call.caller_num,
        )
        context: Context | None = None
        blind: str | None = None
        if self.forwarding is None:
            leg = Leg(Destination("line", call.number), ring_seconds=self.ring_seconds)
        else:
            blind = yield session.getVariable("BLINDTRANSFER")
            original = yield session.getVariable(ORIGINAL_NAME)
            if original is not None:
                # This channel was given a forward display before and is routed
                # again (a blind transfer): the caller is still who it was.
                call = replace(call, caller_name=original)
            else:
                # An internal caller is shown by its directory name, wherever the call goes.
                call = replace(call, caller_name=self.forwarding.own_name(call) or call.caller_name)
            context = self.forwarding.context(call, blind_transfer=bool(blind))
            leg = plan(call.number, context)
        shown = session.env.get("agi_calleridname", "")
        status: str | None = None
        reason: Unreachable | None = None
        hung_up = False
        unanswered = ""
        while True:
            reason = None
            if leg.destination.kind == "line":
                reason = self._before_dial(leg.destination.number, blind)
            elif leg.destination.kind == "group":
                reason = self._group_before_dial(leg.destination.members, blind)
            dial = self._dial_string(leg.destination)
            if leg.skip_dial:
                status, reason = "NOANSWER", reason or Unreachable.BUSY
            elif reason is not None:
                status = reason.name
            elif dial is None:
                status = "CHANUNAVAIL"
            else:
                wanted = shown
                if self.forwarding is not None and context is not None:
                    wanted = self.forwarding.display(leg, call, context.policy) or call.caller_name
                if wanted != shown:
                    if shown == call.caller_name:
                        yield session.setVariable(ORIGINAL_NAME, call.caller_name)
                    yield session.setVariable("CALLERID(name)", wanted)
                    shown = wanted
                log.info(
                    "dialling {dial} for {seconds}s ({why}, via {chain})",
                    dial=dial,
                    seconds=leg.ring_seconds,
                    why=leg.reason,
                    chain=" -> ".join(leg.chain) or "-",
                )
                watch = None
                if self.waiting is not None and leg.destination.kind == "line":
                    watch = self.waiting.watch(call.uniqueid, leg.destination.number, leg.ring_seconds, blind)
                result = yield session.exec_("Dial", f"{dial},{leg.ring_seconds},tT")
                hung_up = result < 0
                if hung_up:
                    # Dial says hang up: the caller left or the conversation ended.
                    # Asterisk frees the channel (and the line) when our session
                    # ends, so the status is asked as our last word, not waited on.
                    session.endAfterNextCommand()
                status = yield session.getVariable("DIALSTATUS")
                if watch is not None and watch.stop():
                    status = "BUSY"  # rang its waiting time while the user was in a call
                reason = None if hung_up else DIAL_STATUS_UNREACHABLE.get(status or "")
                if status in UNANSWERED_STATUSES and leg.destination.kind == "line" and not unanswered:
                    unanswered = leg.destination.number
            self.legs.append((call.uniqueid, leg, status))
            following = after(leg, status, context) if context is not None and not hung_up else None
            if following is None:
                break
            leg = following
        if unanswered and self.unanswered is not None:
            self.unanswered(replace(call, number=unanswered))
        if reason is not None and self.unreachable is not None and leg.destination.kind in ("line", "group"):
            if shown != call.caller_name:
                yield session.setVariable("CALLERID(name)", call.caller_name)
            final = replace(call, number=leg.destination.number, forwarded_from=leg.chain)
            yield self.unreachable(session, final, reason)
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
