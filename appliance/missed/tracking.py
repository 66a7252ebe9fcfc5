"""Follow each call (one Asterisk Linkedid) from the PBX model's channel events.

Per call it records the originating channel (the caller) and every leg that
was dialled to a phone: when it started and stopped ringing, whether it was
answered, and whether another phone picked it up.  Parallel ringing and group
calls are several legs at once, hunt groups and forwarding during ringing are
legs one after another; the policy sees them all as participants of one call.
When the last channel of a call hangs up, `CallTracker.feed` returns the
finished `TrackedCall`.

Pure: time comes in as ``now``; the caller feeds events in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.pbx import ChannelChanged, endpoint_of

RINGING_STATES = frozenset({"Ringing", "Ring"})
SUPPRESSED = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld"})


@dataclass
class Leg:
    """One channel dialled to a phone."""

    uniqueid: str
    endpoint: str
    created: float
    ring_start: float | None = None
    ring_end: float | None = None
    answered: float | None = None
    picked_up_by: str | None = None
    """Endpoint of the phone that picked this leg up."""
    dial_status: str | None = None

    @property
    def rang(self) -> bool:
        return self.ring_start is not None

    @property
    def ring_seconds(self) -> float:
        if self.ring_start is None:
            return 0.0
        end = self.ring_end if self.ring_end is not None else self.ring_start
        return max(0.0, end - self.ring_start)

    @property
    def answered_here(self) -> bool:
        """Answered by this phone itself (a pickup answers the leg for another)."""
        return self.picked_up_by is None and (self.answered is not None or self.dial_status == "ANSWER")


@dataclass
class TrackedCall:
    linkedid: str
    started: float
    caller_num: str = ""
    caller_name: str = ""
    caller_endpoint: str | None = None
    called: str = ""
    """What the caller dialled (the originating channel's extension)."""
    legs: dict[str, Leg] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    ended: float | None = None

    @property
    def suppressed(self) -> bool:
        return self.caller_num.strip().lower() in SUPPRESSED

    def rung_legs(self) -> list[Leg]:
        """Legs that rang, in the order they started ringing."""
        return sorted((leg for leg in self.legs.values() if leg.rang), key=lambda leg: leg.ring_start or 0.0)

    def answered_by(self) -> str | None:
        """Endpoint that took the call: a dialled phone, or one that picked it up."""
        for leg in sorted(self.legs.values(), key=lambda leg: leg.answered or leg.created):
            if leg.picked_up_by:
                return leg.picked_up_by
            if leg.answered_here:
                return leg.endpoint
        return None


class CallTracker:
    """Every call in progress, by Linkedid."""

    def __init__(self) -> None:
        self.calls: dict[str, TrackedCall] = {}

    def feed(self, change: ChannelChanged, now: float) -> TrackedCall | None:
        """Apply one channel event; return the call if this event ended it."""
        channel = change.channel
        if not channel.linkedid or not channel.uniqueid:
            return None
        call = self.calls.get(channel.linkedid)
        if call is None:
            if change.hungup:
                return None
            call = self.calls[channel.linkedid] = TrackedCall(channel.linkedid, started=now)
        if channel.uniqueid == channel.linkedid:
            self._caller(call, change)
        else:
            self._leg(call, change, now)
        if change.hungup:
            call.live.discard(channel.uniqueid)
            if not call.live:
                call.ended = now
                del self.calls[call.linkedid]
                return call
        else:
            call.live.add(channel.uniqueid)
        return None

    @staticmethod
    def _caller(call: TrackedCall, change: ChannelChanged) -> None:
        channel = change.channel
        call.caller_endpoint = channel.endpoint or call.caller_endpoint
        if not call.caller_num or channel.caller_num:
            call.caller_num = channel.caller_num or call.caller_num
        call.caller_name = channel.caller_name or call.caller_name
        if not call.called and channel.exten not in ("", "s"):
            call.called = channel.exten

    @staticmethod
    def _leg(call: TrackedCall, change: ChannelChanged, now: float) -> None:
        channel = change.channel
        leg = call.legs.get(channel.uniqueid)
        if leg is None:
            endpoint = channel.endpoint
            if endpoint is None:  # Local/… helper channels are not phones
                return
            leg = call.legs[channel.uniqueid] = Leg(channel.uniqueid, endpoint, created=now)
        if channel.state in RINGING_STATES and leg.ring_start is None:
            leg.ring_start = now
        if channel.answered is not None and leg.answered is None:
            leg.answered = now
        if channel.picked_up_by and leg.picked_up_by is None:
            leg.picked_up_by = endpoint_of(channel.picked_up_by) or channel.picked_up_by
        if channel.dial_status:
            leg.dial_status = channel.dial_status
        stopped = change.hungup or leg.answered is not None or leg.dial_status is not None
        if leg.ring_start is not None and leg.ring_end is None and stopped:
            leg.ring_end = now
