"""Ask Asterisk not to send the AMI events no part of the appliance reads.

``VarSet`` (one per channel variable set), ``Newexten`` (one per dialplan
step) and ``TestEvent`` are about three quarters of the lines a call
produces on AMI; the bridge, AGI and hangup-request events most of the rest
of a call's end.  The appliance reads none of them, yet parsed every one
before the events that matter, such as the ``DeviceStateChange`` that frees
a callback's target (issue 19).  The filter is per AMI session, so it is
asked for after every login.  It needs the AMI user's ``system`` write
permission and Asterisk 20.11/21.6/22.1 or newer; without them every event
keeps coming, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

UNREAD_EVENTS = (
    "VarSet",
    "Newexten",
    "TestEvent",
    "AGIExecStart",
    "AGIExecEnd",
    "BridgeCreate",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "HangupRequest",
    "SoftHangupRequest",
    "DialState",
    "RTCPSent",
    "RTCPReceived",
)
"""Events the appliance's own AMI session never reads (the PBX model's are
``Newchannel``, ``Newstate``, ``Dial*``, ``Hangup``, ``DeviceStateChange`` …;
the demo tour has a session of its own)."""


class _AMI(Protocol):
    def addConnectedHook(self, hook: Callable[[Any], Any]) -> Callable[[], None]: ...


def excludeEvents(ami: _AMI, names: Sequence[str] = UNREAD_EVENTS) -> Callable[[], None]:
    """On every AMI login, filter C{names} out of the session; returns the undo."""

    def exclude(protocol: Any) -> Deferred[Any]:
        asked = [
            protocol.sendAction(
                "Filter", Operation="Add", MatchCriteria=f"action(exclude),name({name})", Filter=""
            )
            for name in names
        ]
        return gatherResults(asked, consumeErrors=True).addErrback(_refused)

    return ami.addConnectedHook(exclude)


def _refused(failure: Failure) -> None:
    if isinstance(failure.value, FirstError):
        failure = failure.value.subFailure
    log.info("AMI event filter refused ({error}); every event keeps coming", error=failure.getErrorMessage())
