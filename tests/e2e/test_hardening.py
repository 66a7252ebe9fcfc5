"""Hardening end to end: fail closed after the appliance took a call, and the
plain-Dial fallback when the appliance cannot be reached."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.pbx import ChannelChanged, Presence
from tests.e2e.waiting import wait_model


@pytest_twisted.inlineCallbacks
def test_unreachable_appliance_falls_back_to_plain_dial(lab, phones, reactor):
    """Nothing listens on the FastAGI port: Asterisk dials the target by itself and
    the call connects."""
    callee, caller = phones("208"), phones("108")
    yield callee.register().done
    answering = callee.answer(ring_ms=100)
    calling = caller.call("208", hold_ms=500)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results


@pytest_twisted.inlineCallbacks
def test_failure_after_dialling_never_dials_again(appliance, phones, reactor):
    """The appliance dials 207, which is busy; then its handler fails.  The caller is
    hung up and 207 is rung exactly once (no plain Dial() behind the appliance)."""
    pbx = appliance.pbx
    callee, caller = phones("207"), phones("107")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("207") is Presence.IDLE, "207 logged in")
    legs: set[str] = set()

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and change.channel.name.startswith("PJSIP/207-"):
            legs.add(change.channel.uniqueid)

    pbx.subscribe(record)

    def broken(session, call, reason):  # type: ignore[no-untyped-def]
        raise RuntimeError("a feature failed after the dial")

    appliance.router.unreachable = broken
    refusing = callee._run("cc_reject", {"ring_ms": 0, "code": 486}, local_port=callee.port)
    calling = caller._run("cc_busy", {"target": "207", "code": 486, "extra": ""}, timeout=20)
    results = yield DeferredList([refusing.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_model(reactor, pbx, lambda: not pbx.channels_of("107"), "the caller's channel gone")
    assert len(legs) == 1, legs
