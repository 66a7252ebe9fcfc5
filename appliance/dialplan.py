"""The FastAGI routes the shipped dialplan (``asterisk/appliance.conf``) calls.

``call``: every call to an internal number.  The appliance keeps the AGI
session for the whole call (``EXEC Dial``) so it sees how the dial ended and
can act on it.  Asterisk falls back to a plain ``Dial()`` only when the
appliance cannot be reached.  What happens in a call (forwards, busy checks,
group strategies, overflow) is the pure state machine `appliance.callflow`;
`CallRouter` only drives it over AGI, setting the caller name the phones show
through ``SET VARIABLE CALLERID(name)`` (quoted by the FastAGI layer; caller
names are attacker-controlled and never enter a Dial string), and for a call
from a user's further phone the user's number (``CALLERID(num)``): one person,
one number, so a callback from the callee's list reaches all their phones.

``feature``: feature codes dialled on a phone (``*21…``, ``#39`` …), handed
to whichever feature registered the code.

Extension points: the features plug into one `CallExtensions`, built in
`appliance.tap` and handed to the router; nothing assigns router attributes.

- `CallExtensions.handle_unreachable(handler)` (one): the *final* target of a
  call (after any forwards and overflow) is logged out, on DND, busy, or did
  not answer; ``handler(session, call, reason)`` decides what the caller meets
  (callback offers) and may return a Deferred.  ``call.number`` is that
  target, ``call.forwarded_from`` the numbers the call was forwarded from,
  ``call.group`` tells a group (none of its members free, or nobody of it
  answered): the callback to a group plugs in there.
- `CallExtensions.on_unanswered(observer)`: told of the first internal line
  of a call that rang and was not answered: ring timeout, the caller's
  CANCEL, or a no-answer forward (CCNR's "last unanswered number"); the
  caller may be gone already.
- `CallExtensions.on_finished(observer)`: every finished call's
  `appliance.callflow.CallOutcome` (metrics, tools, tests).
- `CallExtensions.resolve_endpoints(resolver)` (one): the PJSIP endpoints to
  ring for an internal number (a user's several devices); default: the
  number itself.
- `FeatureCodes.register`: a feature's codes.

The one busy rule (`appliance.busy`, per-user call waiting) comes in as
``waiting``: busy before ringing, or busy once a waiting call rang too long.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.logger import Logger

from appliance.announcements import Announcements
from appliance.asterisk.fastagi import AGIArgs
from appliance.busy import Reach
from appliance.callflow import (
    NUMBER,
    Announce,
    Call,
    CallFlow,
    CallOutcome,
    CursorMoved,
    Finished,
    Lookups,
    Offer,
    Output,
    Reject,
    Ring,
    Unanswered,
    Unreachable,
)
from appliance.forwarding.rules import Context, Destination, Leg, Policy, plan
from appliance.pbx import PBXModel, Presence

__all__ = ["NUMBER", "Call", "CallExtensions", "CallOutcome", "CallRouter", "FeatureCodes", "Unreachable"]

log = Logger()

RING_SECONDS = 60

ANSWER_SETTLE_MS = 500

ORIGINAL_NAME = "APPLIANCE_CALLER_NAME"
"""Channel variable keeping the caller's own name while CALLERID(name) shows a forward display."""


class CallSession(Protocol):
    """What the routes need of a FastAGI session (`FastAGIProtocol`)."""

    args: AGIArgs
    env: dict[str, str]

    def exec_(self, application: str, options: str = "") -> Deferred[int]: ...

    def getVariable(self, name: str) -> Deferred[str | None]: ...

    def getFullVariable(self, expression: str) -> Deferred[str | None]: ...

    def setVariable(self, name: str, value: str) -> Deferred[None]: ...

    def endAfterNextCommand(self) -> None: ...


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


UnreachableHandler = Callable[[Any, Call, Unreachable], Any]
"""handler(the FastAGI session, the call, why); may return a Deferred: the call ends
when it fires.  The session is the whole FastAGI session (answer, streamFile …)."""

UnansweredHandler = Callable[[Call], None]
"""unanswered(the call, with ``number`` the line that rang unanswered)."""

FinishedObserver = Callable[[CallOutcome], None]

Steps = Generator[Any, Any, Any]
"""Part of the route's AGI conversation, run with ``yield from`` inside its
inlineCallbacks (one generator for the whole call, not one per step)."""

EndpointResolver = Callable[[str], tuple[str, ...]]
"""endpoints(internal number) -> the PJSIP endpoints that ring for it."""


class CallExtensions:
    """The declared extension points of the call route (see the module docstring)."""

    def __init__(self) -> None:
        self._unreachable: UnreachableHandler | None = None
        self._unanswered: list[UnansweredHandler] = []
        self._finished: list[FinishedObserver] = []
        self._endpoints: EndpointResolver | None = None

    def handle_unreachable(self, handler: UnreachableHandler) -> None:
        """The one feature that decides what a caller meets at an unreachable target."""
        if self._unreachable is not None:
            raise ValueError("the unreachable extension point is taken")
        self._unreachable = handler

    def on_unanswered(self, observer: UnansweredHandler) -> Callable[[], None]:
        self._unanswered.append(observer)
        return lambda: self._unanswered.remove(observer) if observer in self._unanswered else None

    def on_finished(self, observer: FinishedObserver) -> Callable[[], None]:
        """observer(outcome) after every call; returns the unsubscribe function."""
        self._finished.append(observer)
        return lambda: self._finished.remove(observer) if observer in self._finished else None

    def resolve_endpoints(self, resolver: EndpointResolver) -> None:
        """The one resolver of the endpoints that ring for an internal number."""
        if self._endpoints is not None:
            raise ValueError("the endpoint resolver is taken")
        self._endpoints = resolver

    # -- used by the router ----------------------------------------------------

    @property
    def offers(self) -> bool:
        return self._unreachable is not None

    def unreachable(self, session: Any, call: Call, reason: Unreachable) -> Any:
        if self._unreachable is None:
            return None
        return self._unreachable(session, call, reason)

    def unanswered(self, call: Call) -> None:
        for observer in list(self._unanswered):
            observer(call)

    def finished(self, outcome: CallOutcome) -> None:
        for observer in list(self._finished):
            try:
                observer(outcome)
            except Exception:
                log.failure("call observer failed")

    def endpoints(self, number: str) -> tuple[str, ...]:
        return self._endpoints(number) if self._endpoints is not None else (number,)


class Forwarder(Protocol):
    """What the router needs of forwarding (`appliance.forwarding.service.Forwarding`)."""

    def context(self, call: Call, blind_transfer: bool = False) -> Context: ...

    def display(self, leg: Leg, call: Call, policy: Policy) -> str | None: ...

    def own_name(self, call: Call) -> str | None:
        """The directory name of an internal caller (by its channel), else None."""

    def own_number(self, call: Call) -> str | None:
        """The line (user's extension) of an internal caller (by its channel), else None."""


class Watch(Protocol):
    def stop(self) -> bool:
        """Dial ended; True when the waiting call was ended as busy."""


class BusyRule(Protocol):
    """What the router needs of `appliance.callwaiting.CallWaiting`."""

    def reach(self, number: str, leaving: str | None = None) -> Reach: ...

    def watch(
        self, caller_uniqueid: str, number: str, ring_seconds: int, leaving: str | None = None
    ) -> Watch | None: ...


class Cursors(Protocol):
    """What the router needs of `appliance.groups.GroupCursors`."""

    def last_first(self, group_number: str) -> str | None: ...

    def rung_first(self, group_number: str, member: str) -> None: ...


class CallRouter:
    """Route one call to an internal number: drive its `CallFlow` over AGI."""

    def __init__(
        self,
        pbx: PBXModel | None = None,
        ring_seconds: int = RING_SECONDS,
        forwarding: Forwarder | None = None,
        trunk: str = "trunk",
        waiting: BusyRule | None = None,
        extensions: CallExtensions | None = None,
        cursors: Cursors | None = None,
        clock: IReactorTime | None = None,
        announcements: Announcements | None = None,
    ) -> None:
        self.pbx = pbx
        self.announcements = announcements or Announcements()
        """What a forward to an announcement plays (built in, in the appliance's language, or recorded)."""
        self.waiting = waiting
        self.ring_seconds = ring_seconds
        self.forwarding = forwarding
        self.trunk = trunk
        self.extensions = extensions or CallExtensions()
        self.cursors = cursors
        self.clock: IReactorTime = clock or Clock()

    def _reach(self, number: str, leaving: str | None) -> Reach:
        """Logged out, DND and (by the busy rule) busy are known before ringing;
        ``leaving``: the channel that blindly transferred this call, hanging up."""
        if self.waiting is not None:
            return self.waiting.reach(number, leaving)
        if self.pbx is None or not self.pbx.synced:
            return Reach.FREE
        presence = self.pbx.presence(number)
        if presence is Presence.LOGGED_OUT and number in self.pbx.endpoints:
            return Reach.LOGGED_OUT
        if presence is Presence.DND:
            return Reach.DND
        return Reach.FREE

    def _plan(self, session: CallSession, call: Call) -> Steps:
        """PLAN: who the caller is, the first leg, and the channel that blindly
        transferred the call (if it was)."""
        if self.forwarding is None:
            leg = Leg(Destination("line", call.number), ring_seconds=self.ring_seconds)
            return call, None, leg, None
        blind = yield session.getVariable("BLINDTRANSFER")
        original = yield session.getVariable(ORIGINAL_NAME)
        if original is not None:
            # This channel was given a forward display before and is routed
            # again (a blind transfer): the caller is still who it was.
            call = replace(call, caller_name=original)
        else:
            # An internal caller is shown by its directory name, wherever the call goes.
            call = replace(call, caller_name=self.forwarding.own_name(call) or call.caller_name)
        number = self.forwarding.own_number(call)
        if number is not None and number != call.caller_num:
            # ... and by its user's number, from whichever of the user's phones it calls.
            yield session.setVariable("CALLERID(num)", number)
            call = replace(call, caller_num=number)
        context = self.forwarding.context(call, blind_transfer=bool(blind))
        return call, context, plan(call.number, context), blind or None

    def _lookups(self, call: Call, context: Context | None, leaving: str | None) -> Lookups:
        forwarding = self.forwarding
        cursors = self.cursors

        def display(leg: Leg) -> str | None:
            if forwarding is None or context is None:
                return None
            return forwarding.display(leg, call, context.policy)

        return Lookups(
            reach=lambda number: self._reach(number, leaving),
            endpoints=self.extensions.endpoints,
            last_first=cursors.last_first if cursors is not None else lambda _group: None,
            display=display,
        )

    @inlineCallbacks
    def __call__(self, session: CallSession) -> Any:
        call = call_from(session)
        log.info(
            "call to {number} ({origin}) from {caller}",
            number=call.number,
            origin=call.origin,
            caller=call.caller_num,
        )
        call, context, first, leaving = yield from self._plan(session, call)
        flow = CallFlow(call, first, context, self._lookups(call, context, leaving), self.clock, self.trunk)
        driver = _Driver(self, session, call, leaving)
        outputs = flow.start()
        while outputs:
            output, outputs = outputs[0], outputs[1:]
            if isinstance(output, Ring):
                status, hung_up = yield from driver.ring(output, flow.leg)
                outputs = outputs + flow.dialled(status, hung_up)
            elif isinstance(output, Finished):
                self._finished(output.outcome)
                return output.outcome.status
            else:
                yield from driver.act(output)
        raise AssertionError("the call flow ended without Finished")

    def _finished(self, outcome: CallOutcome) -> None:
        log.info("call to {number} ended: {status}", number=outcome.number, status=outcome.status)
        self.extensions.finished(outcome)


WHERE = "${CONTEXT},${EXTEN},${PRIORITY}"
"""Where a channel is in the dialplan; changed by a blind transfer or a redirect."""


class _Driver:
    """The AGI side of one call: what each output of the flow does on the channel."""

    def __init__(self, router: CallRouter, session: CallSession, call: Call, leaving: str | None) -> None:
        self.router = router
        self.session = session
        self.call = call
        self.leaving = leaving
        self.shown = session.env.get("agi_calleridname", "")
        """What CALLERID(name) is now."""

    def show(self, wanted: str) -> Steps:
        if wanted != self.shown:
            if self.shown == self.call.caller_name:
                yield self.session.setVariable(ORIGINAL_NAME, self.call.caller_name)
            yield self.session.setVariable("CALLERID(name)", wanted)
            self.shown = wanted

    def ring(self, ring: Ring, leg: Leg) -> Steps:
        session = self.session
        yield from self.show(ring.caller_name)
        log.info(
            "dialling {dial} for {seconds}s ({why}, via {chain})",
            dial=ring.dial,
            seconds=ring.seconds,
            why=leg.reason,
            chain=" -> ".join(leg.chain) or "-",
        )
        waiting = self.router.waiting
        watch = None
        if waiting is not None and ring.watch is not None:
            watch = waiting.watch(self.call.uniqueid, ring.watch, ring.seconds, self.leaving)
        result = yield session.exec_("Dial", f"{ring.dial},{ring.seconds},tT")
        hung_up = result < 0
        if hung_up:
            # Dial says hang up: the caller left or the conversation ended.
            # Asterisk frees the channel (and the line) when our session
            # ends, so the status is asked as our last word, not waited on.
            session.endAfterNextCommand()
            if self.router.pbx is not None:
                self.router.pbx.channel_ending(session.env.get("agi_uniqueid", ""))
            status = yield from self.last_status()
        else:
            status = yield session.getVariable("DIALSTATUS")
        if watch is not None and watch.stop():
            status = "BUSY"  # rang its waiting time while the user was in a call
        return status, hung_up

    def last_status(self) -> Steps:
        """After a Dial that ended the call (its line already let go, see `ring`):
        DIALSTATUS and where the channel is, in one command.  Moved on from where
        this session runs (a redirect as the Dial ended), it is not ending after
        all: the model takes the line back into its call."""
        env = self.session.env
        here = [env.get("agi_context", ""), env.get("agi_extension", ""), env.get("agi_priority", "")]
        found = yield self.session.getFullVariable("${DIALSTATUS}," + WHERE)
        status, _, where = (found or "").partition(",")
        if all(here) and where.rsplit(",", 2) != here:
            log.warn("call to {number}: the channel goes on to {where}", number=self.call.number, where=where)
            if self.router.pbx is not None:
                self.router.pbx.channel_goes_on(env.get("agi_uniqueid", ""))
        return status or None

    def act(self, output: Output) -> Steps:
        extensions = self.router.extensions
        if isinstance(output, CursorMoved):
            if self.router.cursors is not None:
                self.router.cursors.rung_first(output.group, output.member)
        elif isinstance(output, Unanswered):
            extensions.unanswered(output.call)
        elif isinstance(output, Offer) and extensions.offers:
            if self.shown != self.call.caller_name:
                yield self.session.setVariable("CALLERID(name)", self.call.caller_name)
            yield maybeDeferred(extensions.unreachable, self.session, output.call, output.reason)
        elif isinstance(output, Announce):
            log.info("call to {number}: announcement {name}", number=self.call.number, name=output.name)
            # Answered half a second before it plays, so no phone misses the first word.
            yield self.session.exec_("Answer", str(ANSWER_SETTLE_MS))
            yield self.session.exec_("Playback", self.router.announcements.sound(output.name))
        elif isinstance(output, Reject):
            log.info("call to {number}: the group's overflow is busy", number=self.call.number)
            yield self.session.exec_("Busy", "5")


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
