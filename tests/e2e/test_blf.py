"""BLF keys end to end: a sipp phone subscribes (Event: dialog) to the hints of
the shipped dialplan and sees the lamps follow feature codes, the store and an
Asterisk restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread

from appliance.directory import Group
from appliance.forwarding.records import UNCONDITIONAL, Forward
from appliance.lab import Lab
from appliance.pbx import Presence, Resynced
from tests.e2e.waiting import wait_model, wait_until


class Reports(DatagramProtocol):
    """The dialog states the watching sipp phones report, one datagram per NOTIFY."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self._observers: list[Callable[[object], None]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        extension, _, state = datagram.decode(errors="replace").strip().partition(" ")
        self.states.append((extension, state))
        for observer in list(self._observers):
            observer(state)

    def subscribe(self, observer: Callable[[object], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)


def wait_states(reactor: Any, reports: Reports, count: int, what: str) -> Any:
    return wait_until(reactor, reports.subscribe, lambda: len(reports.states) >= count, what, timeout=20)


def restart_without_custom_states(lab: Lab) -> None:
    """Restart Asterisk with its custom device states gone from astdb: only the
    appliance's resync can bring the lamps back."""
    lab.stop()
    astdb = lab.root / f"var/lib/appliance-lab/{lab.instance}/astdb.sqlite3"
    with sqlite3.connect(astdb) as db:
        db.execute("DELETE FROM astdb WHERE key LIKE '/CustomDevstate/%'")
    lab.start()


@pytest_twisted.inlineCallbacks
def test_dnd_lamp_follows_feature_codes_and_asterisk_restart(appliance, phones, lab, reactor):
    """104's key on *78104 shows idle, in use after *78, idle after #78.  Then the
    key is pressed (DND toggles on) and a forward is set in the store: after an
    Asterisk restart that lost every custom device state, both *78104 and
    *21104 show in use once resynced."""
    reports = Reports()
    listening = reactor.listenUDP(0, reports, interface="127.0.0.1")
    report_port = listening.getHost().port
    pbx = appliance.pbx
    p104 = phones("104")
    try:
        watch = p104.watch("*78104", notifies=3, report_port=report_port)
        yield wait_states(reactor, reports, 1, "the first NOTIFY")
        assert reports.states == [("104", "terminated")]

        yield p104.call("*78", hold_ms=20000).done
        yield wait_states(reactor, reports, 2, "the NOTIFY after *78")
        assert reports.states[1] == ("104", "confirmed")
        assert pbx.presence("104") is Presence.DND or pbx.endpoint("104").dnd

        yield p104.call("#78", hold_ms=20000).done
        yield wait_states(reactor, reports, 3, "the NOTIFY after #78")
        assert reports.states[2] == ("104", "terminated")
        yield watch.done

        yield p104.call("*78104", hold_ms=20000).done  # the key pressed: DND toggles on
        yield wait_model(reactor, pbx, lambda: pbx.endpoint("104").dnd, "104 on DND")
        appliance.forwarding.forwards.set("104", Forward(UNCONDITIONAL, "204"))
        resyncs: list[object] = []
        pbx.subscribe(lambda change: resyncs.append(change) if isinstance(change, Resynced) else None)
        yield deferToThread(restart_without_custom_states, lab)
        yield wait_model(reactor, pbx, lambda: resyncs, "resync after the restart", timeout=30)

        del reports.states[:]
        dnd = p104.watch("*78104", notifies=1, report_port=report_port)
        forward = p104.watch("*21104", notifies=1, report_port=report_port)
        yield dnd.done
        yield forward.done
        assert reports.states == [("104", "confirmed"), ("104", "confirmed")]
    finally:
        appliance.forwarding.forwards.clear("104")
        yield p104.call("#78", hold_ms=20000).done
        yield listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_forward_and_callback_lamps_follow_the_store(appliance, phones, reactor):
    """A forward set and cleared through the forwards API (as the web page and API
    do) turns 105's *21105 lamp on and off; pressing one's own key clears it."""
    reports = Reports()
    listening = reactor.listenUDP(0, reports, interface="127.0.0.1")
    try:
        p105 = phones("105")
        watch = p105.watch("*21105", notifies=3, report_port=listening.getHost().port)
        yield wait_states(reactor, reports, 1, "the first NOTIFY")
        appliance.forwarding.forwards.set("105", Forward(UNCONDITIONAL, "205"))
        yield wait_states(reactor, reports, 2, "the NOTIFY after the forward was set")
        yield p105.call("*21105", hold_ms=20000).done  # the key pressed: forward off
        yield wait_states(reactor, reports, 3, "the NOTIFY after the key was pressed")
        yield watch.done
        assert [state for _, state in reports.states] == ["terminated", "confirmed", "terminated"]
        assert appliance.forwarding.forwards.of("105") == []
    finally:
        yield listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_group_forward_lamp_follows_the_store_and_an_asterisk_restart(appliance, phones, lab, reactor):
    """106 has a key on group 650's forward hint *21650: dark when the group is made, lit
    once the group's unconditional forward is set (as its web page sets it), dark when
    cleared.  Set again, then Asterisk restarts having lost every custom device state:
    once resynced the key shows it lit again."""
    reports = Reports()
    listening = reactor.listenUDP(0, reports, interface="127.0.0.1")
    report_port = listening.getHost().port
    forwards = appliance.forwarding.forwards
    p106 = phones("106")
    try:
        appliance.directory.put_group(Group("blf", "650", ("206",)))
        watch = p106.watch("*21650", notifies=3, report_port=report_port)
        yield wait_states(reactor, reports, 1, "the first NOTIFY")
        forwards.set("650", Forward(UNCONDITIONAL, "306"))
        yield wait_states(reactor, reports, 2, "the NOTIFY after the group's forward was set")
        forwards.clear("650", UNCONDITIONAL)
        yield wait_states(reactor, reports, 3, "the NOTIFY after it was cleared")
        yield watch.done
        assert [state for _, state in reports.states] == ["terminated", "confirmed", "terminated"]

        forwards.set("650", Forward(UNCONDITIONAL, "306"))
        pbx = appliance.pbx
        resyncs: list[object] = []
        pbx.subscribe(lambda change: resyncs.append(change) if isinstance(change, Resynced) else None)
        yield deferToThread(restart_without_custom_states, lab)
        yield wait_model(reactor, pbx, lambda: resyncs, "resync after the restart", timeout=30)
        del reports.states[:]
        yield p106.watch("*21650", notifies=1, report_port=report_port).done
        assert reports.states == [("106", "confirmed")]
    finally:
        yield listening.stopListening()
