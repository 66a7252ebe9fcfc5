"""A user with several phones end to end: user 200 owns the lab endpoints 200
("desk") and 209 ("softphone"); sipp phones, the real Asterisk, the appliance
in-process, and a real SMTP server for the missed-call mail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.directory import Directory, User
from appliance.forwarding.records import Forward
from appliance.pbx import Presence
from tests.e2e import test_missed
from tests.e2e.test_callback import (
    answer_expecting,
    busy_with,
    channels_created,
    end_call_of,
    offer,
    pending_ids,
    registered,
    take_recall,
    wait_pending,
)
from tests.e2e.test_missed import Inbox, Rig, call_and_cancel, ringing_phones
from tests.e2e.waiting import wait_model, wait_until

relay_port = test_missed.relay_port
inbox = test_missed.inbox
rig = test_missed.rig

DESK, SOFT = "200", "209"


def two_devices(store: Any, email: str = "") -> None:
    """User 200 owns endpoint 209 too (209 is no user of its own any more)."""
    directory = Directory(store)
    directory.delete_user(SOFT)  # created from the lab's endpoint; one phone has one owner
    directory.put_user(User(DESK, "Anna Berger", email, language="de", devices=(SOFT,)))


def call_decided(appliance: Any, reactor: Any, extension: str) -> Any:
    """Fires with (call, decision) once a call that rang ``extension`` was decided."""
    seen: list[Any] = []
    missed = appliance.missed
    missed.subscribe(lambda call, decision: seen.append((call, decision)))

    def found() -> Any:
        return next((cd for cd in seen if extension in {leg.endpoint for leg in cd[0].legs.values()}), None)

    def subscribe(callback: Callable[[object], None]) -> Callable[[], None]:
        return missed.subscribe(lambda call, decision: callback(call))

    return wait_until(reactor, subscribe, found, f"the call to {extension} decided", timeout=30)


@pytest_twisted.inlineCallbacks
def test_call_rings_both_devices_and_the_answer_cancels_the_other(appliance, phones, reactor):
    """100 calls 200: desk 200 and softphone 209 ring at once; the desk answers, the
    softphone gets a CANCEL; the person answered, so no missed-call entry."""
    two_devices(appliance.store)
    p100, desk, soft = phones("100"), phones(DESK), phones(SOFT)
    yield registered(reactor, appliance, p100, desk, soft)
    decided = call_decided(appliance, reactor, DESK)

    ringing = soft.ring_unanswered()
    answering = desk.answer(ring_ms=1500)
    calling = p100.call(DESK, hold_ms=500)
    results = yield DeferredList([ringing.done, answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    [from_header] = soft.invites(ringing, "INVITE-FROM")
    assert "sip:100@" in from_header
    assert len(soft.invites(ringing, "CANCEL-AT")) == 1
    call, decision = yield decided
    assert sorted(leg.endpoint for leg in call.rung_legs()) == [DESK, SOFT]
    assert decision.journal == ()
    assert appliance.missed.journal.entries(DESK) == []


@pytest_twisted.inlineCallbacks
def test_unanswered_call_to_two_devices_one_entry_one_mail(rig: Rig, inbox: Inbox, phones: Any) -> Any:
    """An external call to 200 rings desk and softphone until the caller gives up:
    one journal entry and one mail for the person, none for the device."""
    two_devices(rig.appliance.store, email="u200@example.org")
    ringing = yield ringing_phones(rig, phones, DESK, SOFT)
    calling = call_and_cancel(phones, DESK, ring_ms=3000)
    results = yield DeferredList([r.done for r in ringing] + [calling.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    call, decision = yield rig.wait_decision(SOFT)
    assert sorted(leg.endpoint for leg in call.rung_legs()) == [DESK, SOFT]
    assert decision.journal == (DESK,) and decision.mail == (DESK,)
    yield rig.wait_outbox_settled()
    yield wait_until(rig.reactor, inbox.subscribe, lambda: inbox.messages, "a mail arrives")

    assert inbox.envelopes == [("appliance@localhost", ["u200@example.org"])]
    [entry] = rig.appliance.missed.journal.entries(DESK)
    assert rig.appliance.missed.journal.entries(SOFT) == []
    assert 2 <= entry.ring_seconds < 6  # both rang together: their time counts once


@pytest_twisted.inlineCallbacks
def test_busy_on_one_device_offers_callback_and_rings_both_when_free(appliance, phones, reactor, recalls):
    """Call waiting off: the softphone 209 is in a call, so 200 is busy; 100's call
    rings nothing and gets the callback offer.  The desk being free does not make
    200 free: the recall waits for 209's call to end, then rings 100, and the
    target leg rings desk and softphone; the softphone answers, the desk gets CANCEL."""
    two_devices(appliance.store)
    p100, desk, soft, p300 = phones("100"), phones(DESK), phones(SOFT), phones("300")
    yield registered(reactor, appliance, p100, desk, soft, p300)
    held = yield busy_with(reactor, appliance, p300, soft)  # the softphone calls 300
    assert appliance.devices.presence(DESK) is Presence.BUSY
    assert appliance.pbx.endpoint(DESK).presence is Presence.IDLE
    at_desk = channels_created(appliance, DESK)

    yield offer(p100, DESK).done
    assert pending_ids(appliance) == ["100:200"]
    assert at_desk == []  # busy before anything rang
    assert recalls == []  # the desk alone being free is not enough

    requester = take_recall(p100, DESK)
    desk_rings = desk.ring_unanswered()
    target = answer_expecting(soft, "100")
    yield end_call_of(reactor, appliance, SOFT, held)
    results = yield DeferredList([requester.done, target.done, desk_rings.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    assert len(desk.invites(desk_rings, "CANCEL-AT")) == 1
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")


@pytest_twisted.inlineCallbacks
def test_recall_rings_every_device_of_the_requester(appliance, phones, reactor, recalls):
    """The softphone 209 calls busy 300 and takes the offer: the requester is the
    person 200.  When 300 is free the recall rings desk and softphone at once showing
    300; the softphone takes it, the desk gets CANCEL, and 300 rings showing 200."""
    two_devices(appliance.store)
    desk, soft, p300, p301 = phones(DESK), phones(SOFT), phones("300"), phones("301")
    yield registered(reactor, appliance, desk, soft, p300, p301)
    held = yield busy_with(reactor, appliance, p300, p301)

    yield offer(soft, "300").done
    assert pending_ids(appliance) == ["200:300"]

    desk_rings = desk.ring_unanswered()
    requester = take_recall(soft, "300")
    yield end_call_of(reactor, appliance, "300", held)
    target = answer_expecting(p300, "200")
    results = yield DeferredList([requester.done, target.done, desk_rings.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    [shown] = desk.invites(desk_rings, "INVITE-FROM")
    assert "sip:300@" in shown
    assert len(desk.invites(desk_rings, "CANCEL-AT")) == 1
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    recall = recalls[-1][1]
    assert (recall.requester, recall.target) == (DESK, "300")


@pytest_twisted.inlineCallbacks
def test_call_from_the_softphone_is_the_user(appliance, phones, reactor):
    """300 forwards every call to 200.  200's softphone calls 300: as the user the
    forward points to it breaks through (seed 002), and 300 sees the user's name."""
    two_devices(appliance.store)
    soft, p300 = phones(SOFT), phones("300")
    yield registered(reactor, appliance, soft, p300)
    appliance.forwarding.forwards.set("300", Forward("unconditional", DESK))
    answering = answer_expecting(p300, SOFT)
    calling = soft.call("300", hold_ms=5000)  # 300 hangs up first
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    [shown] = p300.invites(answering, "INVITE-FROM")
    assert '"Anna Berger"' in shown


@pytest_twisted.inlineCallbacks
def test_dnd_from_the_softphone_is_the_users(appliance, phones, reactor):
    """``*78`` on the softphone puts the user on DND: a call to 200 rings neither phone
    and the caller gets the callback offer; ``#78`` on the desk phone ends it."""
    two_devices(appliance.store)
    p100, desk, soft = phones("100"), phones(DESK), phones(SOFT)
    yield registered(reactor, appliance, p100, desk, soft)
    pbx = appliance.pbx
    yield soft.call("*78", hold_ms=20000).done
    yield wait_model(reactor, pbx, lambda: appliance.devices.presence(DESK) is Presence.DND, "200 on DND")
    assert pbx.endpoint(DESK).dnd and not pbx.endpoint(SOFT).dnd
    at_desk, at_soft = channels_created(appliance, DESK), channels_created(appliance, SOFT)
    yield offer(p100, DESK).done
    assert pending_ids(appliance) == ["100:200"]
    assert at_desk == [] and at_soft == []
    yield desk.call("#78", hold_ms=20000).done
    yield wait_model(reactor, pbx, lambda: not pbx.endpoint(DESK).dnd, "200 off DND")
