"""Directed pickup: ``*8<extension>`` takes the call ringing at that extension
(Asterisk ``PickupChan``).  The missed-call policy sees such a call as
answered by the one who picked it up (AMI ``Pickup``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from appliance.numbers import EXTENSION

CODE = "*8"


def directed_pickup(session: Any, code: str, rest: str) -> Deferred[int]:
    """``*8200``: take the call ringing at 200; anything but an extension is refused
    before it could reach PickupChan's argument."""
    if not EXTENSION.match(rest):
        return session.exec_("Playback", "invalid")
    return session.exec_("PickupChan", f"PJSIP/{rest}")
