"""When a callback's target is free: the target is the *caller* of the call that
keeps it busy, so that call runs our route on the target's own channel, and the
route lets the line go as its Dial ends (issue 19), before Asterisk's teardown.
The recall must come then, and must not while the target still has a call: a
second phone in a call, or a blind transfer that moved its channel on.  Sipp
phones, the real Asterisk, the appliance in-process."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.pbx import Presence
from tests.e2e.test_callback import (
    answer_expecting,
    offer,
    pending_ids,
    registered,
    take_recall,
    wait_pending,
)
from tests.e2e.test_devices import DESK, SOFT, two_devices
from tests.e2e.test_forwarding import _leg_of, _transfer, run
from tests.e2e.waiting import wait_model


@pytest_twisted.inlineCallbacks
def calling(reactor: Any, appliance: Any, caller: Any, callee: Any, scenario: str = "fwd_answer") -> Any:
    """``caller`` calls ``callee`` through the route and both talk; returns (callee's run, caller's run)."""
    pbx = appliance.pbx
    answering = run(callee, scenario, timeout=120)
    placing = caller.call(callee.extension, hold_ms=100000)
    yield wait_model(
        reactor,
        pbx,
        lambda: (c := _leg_of(appliance, callee.extension, True)) is not None and c.state == "Up",
        f"{caller.extension} talking to {callee.extension}",
    )
    return answering, placing


def hang_up(appliance: Any, extension: str) -> Any:
    """The AMI hangs up ``extension``'s channels, as its phone's BYE would."""
    return DeferredList(
        [appliance.ami.sendAction("Hangup", Channel=c.name) for c in appliance.pbx.channels_of(extension)],
        consumeErrors=True,
    )


@pytest_twisted.inlineCallbacks
def test_target_recalled_when_the_call_it_placed_ends(appliance, phones, reactor, recalls):
    """200 called 300 and talks; 100 takes the offer for busy 200.  300 hangs up:
    200's own route ends its session, 100 is rung, answers, and 200 rings showing 100."""
    p100, p200, p300 = phones("100"), phones("200"), phones("300")
    yield registered(reactor, appliance, p100, p200, p300)
    answering, placing = yield calling(reactor, appliance, p200, p300)

    yield offer(p100, "200").done
    assert pending_ids(appliance) == ["100:200"]
    assert recalls == []

    requester = take_recall(p100, "200")
    target = answer_expecting(p200, "100")
    yield hang_up(appliance, "300")
    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 2, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    [(_, recall)] = recalls
    assert (recall.requester, recall.target, recall.attempt) == ("100", "200", 1)
    placing.kill()
    answering.kill()


@pytest_twisted.inlineCallbacks
def test_second_phone_in_a_call_holds_the_recall(appliance, phones, reactor, recalls):
    """User 200's desk phone called 300 and its softphone called 301; both talk.
    The desk's call ends (its route lets the desk's line go): 200 is still in a
    call on the softphone, so no recall.  When that call ends too, 100 is rung
    and then both of 200's phones; the softphone answers."""
    two_devices(appliance.store)
    p100, desk, soft, p300, p301 = (phones(n) for n in ("100", DESK, SOFT, "300", "301"))
    yield registered(reactor, appliance, p100, desk, soft, p300, p301)
    runs = yield calling(reactor, appliance, soft, p301)
    runs += yield calling(reactor, appliance, desk, p300)

    yield offer(p100, DESK).done
    assert pending_ids(appliance) == ["100:200"]

    pbx = appliance.pbx
    yield hang_up(appliance, "300")
    # The desk's line is idle by Asterisk's own device state: its route let it go before.
    yield wait_model(reactor, pbx, lambda: pbx.endpoint(DESK).presence is Presence.IDLE, "desk free")
    assert appliance.devices.presence(DESK) is Presence.BUSY
    assert recalls == []
    assert pending_ids(appliance) == ["100:200"]

    requester = take_recall(p100, DESK)
    desk_rings = desk.ring_unanswered()
    target = answer_expecting(soft, "100")
    yield hang_up(appliance, "301")
    results = yield DeferredList([requester.done, target.done, desk_rings.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    assert len(recalls) == 1
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    for sipp in runs:
        sipp.kill()


@pytest_twisted.inlineCallbacks
def test_blind_transferred_target_is_not_recalled(appliance, phones, lab, reactor, recalls):
    """200 called 300; 100 takes the offer for busy 200.  300 blind-transfers 200 to
    301, which answers: 200's first route ends, but its channel went on to 301, so
    200 is still in a call and nothing recalls.  When 301 hangs up, 100 is rung
    and then 200."""
    p100, p200, p300, p301 = (phones(n) for n in ("100", "200", "300", "301"))
    yield registered(reactor, appliance, p100, p200, p300, p301)
    transferring, placing = yield calling(reactor, appliance, p200, p300, scenario="fwd_transfer")

    pbx = appliance.pbx
    yield offer(p100, "200").done
    assert pending_ids(appliance) == ["100:200"]
    # The requester is free: a target wrongly taken as free would be recalled at once.
    yield wait_model(reactor, pbx, lambda: pbx.presence("100") is Presence.IDLE, "100 free")

    answering = run(p301, "fwd_answer", timeout=120)
    talking = _leg_of(appliance, "300", True)
    assert talking is not None
    yield _transfer(appliance, talking.name, f"<sip:301@{lab.ports.host}:{lab.ports.sip}>")
    yield wait_model(
        reactor,
        pbx,
        lambda: (c := _leg_of(appliance, "301", True)) is not None and c.state == "Up",
        "200 talking to 301",
    )
    yield wait_model(reactor, pbx, lambda: pbx.presence("300") is Presence.IDLE, "300 out of the call")
    assert pbx.presence("200") is Presence.BUSY
    assert recalls == []
    assert pending_ids(appliance) == ["100:200"]

    requester = take_recall(p100, "200")
    target = answer_expecting(p200, "100")
    yield hang_up(appliance, "301")
    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 2, results
    assert len(recalls) == 1
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    for sipp in (transferring, placing, answering):
        sipp.kill()
