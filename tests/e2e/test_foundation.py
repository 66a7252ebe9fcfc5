"""The foundation end to end: sipp phones, real Asterisk, FastAGI and the PBX model."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from appliance.pbx import ChannelChanged, EndpointChanged, Presence
from tests.e2e.calls import route_finished
from tests.e2e.waiting import wait_model


def presence_log(appliance, extension):
    """Every presence change the model shows for ``extension``, in order."""
    seen: list[Presence] = []

    def record(change: object) -> None:
        if isinstance(change, EndpointChanged) and change.new.name == extension:
            if change.old.presence is not change.new.presence:
                seen.append(change.new.presence)

    appliance.pbx.subscribe(record)
    return seen


@pytest_twisted.inlineCallbacks
def test_call_goes_through_fastagi_and_model_follows(appliance, phones, reactor, routed):
    """100 calls 200: the dialplan asks the appliance, the call connects, and the
    model shows 200 ringing, busy, then idle."""
    pbx = appliance.pbx
    callee, caller = phones("200"), phones("100")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("200") is Presence.IDLE, "200 logged in")
    seen = presence_log(appliance, "200")

    answering = callee.answer(ring_ms=700)
    calling = caller.call("200", hold_ms=1200)
    yield wait_model(reactor, pbx, lambda: Presence.RINGING in seen, "200 ringing")
    yield wait_model(reactor, pbx, lambda: Presence.BUSY in seen, "200 busy")
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_model(reactor, pbx, lambda: seen[-1] is Presence.IDLE, "200 idle again")

    assert seen == [Presence.RINGING, Presence.BUSY, Presence.IDLE]
    yield route_finished(reactor, appliance, routed)
    assert [(c.number, c.origin, c.status) for c in routed] == [("200", "internal", "ANSWER")]
    yield wait_model(reactor, pbx, lambda: not pbx.channels_of("100"), "the caller's channel gone")
    assert not pbx.channels_of("200")


@pytest_twisted.inlineCallbacks
def test_logout_shows_in_model(appliance, phones, reactor):
    """A phone that unregisters is logged out in the model; registering brings it back."""
    pbx = appliance.pbx
    phone = phones("201")
    yield phone.register().done
    yield wait_model(reactor, pbx, lambda: pbx.endpoint("201").registered, "201 logged in")
    yield phone.unregister().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("201") is Presence.LOGGED_OUT, "201 logged out")


@pytest_twisted.inlineCallbacks
def test_asterisk_restart_reconnects_and_resyncs(appliance, phones, lab, reactor):
    """Asterisk restarted mid-call: the AMI link comes back and the model drops the
    channels that died with the old Asterisk and keeps the registration it reports."""
    pbx = appliance.pbx
    callee, caller = phones("202"), phones("102")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("202") is Presence.IDLE, "202 logged in")
    callee.answer(ring_ms=100)
    caller.call("202", hold_ms=60000)
    yield wait_model(reactor, pbx, lambda: pbx.presence("202") is Presence.BUSY, "202 in a call")
    assert pbx.channels_of("202")

    resyncs = []
    pbx.subscribe(lambda change: resyncs.append(change) if type(change).__name__ == "Resynced" else None)
    hangups = []
    pbx.subscribe(lambda c: hangups.append(c) if isinstance(c, ChannelChanged) and c.hungup else None)
    yield deferToThread(lab.restart)
    yield wait_model(reactor, pbx, lambda: resyncs, "resync after the restart", timeout=30)

    assert appliance.ami.connected
    assert not pbx.channels_of("202") and not pbx.channels_of("102")
    assert pbx.presence("202") is Presence.IDLE  # registration survives in Asterisk's astdb
    callee.kill_all()
    caller.kill_all()
