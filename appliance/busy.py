"""One meaning of "busy" for every feature: the router, the busy forward and the
callback offer ask this module, never the PBX model's presence directly.

A line in a call (Asterisk INUSE, ONHOLD, RINGINUSE or BUSY) is busy before
anything rings unless its user has call waiting ("Anklopfen") on.  With call
waiting the second call rings; if it is still unanswered after the waiting
time while the user is in the other call, it ends as busy after all (busy
forward, callback offer, and a recall once that call ends).

The presence is the person's over all their phones (`appliance.devices`): a
user is in a call when any of their devices is.

Pure: presence and the user's switch come in, an answer goes out.
"""

from __future__ import annotations

import enum

from appliance.pbx import Presence


class Reach(enum.Enum):
    """What a call to a line meets right now."""

    LOGGED_OUT = "logged_out"
    DND = "dnd"
    BUSY = "busy"
    """In a call, call waiting off: busy before anything rings."""
    WAITING = "waiting"
    """In a call, call waiting on: it rings, busy once the waiting time is over."""
    FREE = "free"
    """Idle or ringing: it rings as long as the call's ring time."""


def reach(presence: Presence, call_waiting: bool) -> Reach:
    """The single rule."""
    if presence is Presence.LOGGED_OUT:
        return Reach.LOGGED_OUT
    if presence is Presence.DND:
        return Reach.DND
    if presence is Presence.BUSY:
        return Reach.WAITING if call_waiting else Reach.BUSY
    return Reach.FREE


def unavailable(found: Reach) -> bool:
    """Known unreachable before ringing: the busy forward applies at once."""
    return found in (Reach.LOGGED_OUT, Reach.DND, Reach.BUSY)


def waiting_limit(found: Reach, ring_seconds: int, waiting_seconds: int) -> int | None:
    """Seconds after which a ringing waiting call counts as busy, or None when the
    call simply rings its ring time (the line is free, or the ring time is shorter)."""
    if found is Reach.WAITING and waiting_seconds < ring_seconds:
        return waiting_seconds
    return None


def still_busy(presence: Presence) -> bool:
    """At the end of the waiting time: is the user still in the other call?
    (The waiting call ringing beside it makes the device RINGINUSE: still busy.)"""
    return presence is Presence.BUSY
