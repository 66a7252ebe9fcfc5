"""A user with several phones end to end: user 200 owns the lab endpoints 200
("desk") and 209 ("softphone"); sipp phones, the real Asterisk, the appliance
in-process, and a real SMTP server for the missed-call mail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList, inlineCallbacks

from appliance import settings as keys
from appliance.directory import Directory, User
from appliance.forwarding.records import Forward
from appliance.pbx import Presence
from tests.e2e import test_missed
from tests.e2e.test_blf import Reports, wait_states
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
    forward points to it breaks through (seed 002), and 300 sees the user's name and
    number (200, not the softphone's 209)."""
    two_devices(appliance.store)
    soft, p300 = phones(SOFT), phones("300")
    yield registered(reactor, appliance, soft, p300)
    appliance.forwarding.forwards.set("300", Forward("unconditional", DESK))
    answering = answer_expecting(p300, DESK)
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


class Lamp:
    """A colleague's BLF key on one of 200's hints: the dialog states its NOTIFYs
    reported, in order."""

    def __init__(self, reactor: Any, phone: Any, hint: str, notifies: int) -> None:
        self.reactor = reactor
        self.hint = hint
        self.reports = Reports()
        self.listening = reactor.listenUDP(0, self.reports, interface="127.0.0.1")
        self.run = phone.watch(hint, notifies=notifies, report_port=self.listening.getHost().port)

    def states(self) -> list[str]:
        return [state for _, state in self.reports.states]

    @inlineCallbacks
    def shows(self, count: int, state: str) -> Any:
        """Wait for the ``count``-th NOTIFY; it must report ``state``."""
        yield wait_states(self.reactor, self.reports, count, f"NOTIFY {count} of {self.hint}")
        assert self.states()[count - 1] == state, (self.hint, self.states())


@pytest_twisted.inlineCallbacks
def test_feature_codes_and_own_keys_on_the_softphone_act_for_the_user(appliance, phones, reactor):
    """On 200's softphone 209: the DND key *78200 toggles 200's DND on and off, *78 and
    #78 switch it; *21300 forwards 200 and the key *21200 clears it, as does #21; *39300
    books a callback for 200 and the key *39200 cancels it, as does #39.  Colleagues'
    BLF keys on 200's three hints follow every step."""
    two_devices(appliance.store)
    appliance.settings.set(keys.CC_CCNR_ENABLED, "on")  # *39<t> books a callback
    desk, soft = phones(DESK), phones(SOFT)
    yield registered(reactor, appliance, desk, soft)
    pbx, forwards = appliance.pbx, appliance.forwarding.forwards
    dnd = Lamp(reactor, phones("100"), "*78200", notifies=5)
    cfu = Lamp(reactor, phones("101"), "*21200", notifies=5)
    cb = Lamp(reactor, phones("102"), "*39200", notifies=5)
    lamps = (dnd, cfu, cb)

    def dialled(code: str) -> Any:
        return soft.call(code, hold_ms=20000).done

    try:
        for lamp in lamps:
            yield lamp.shows(1, "terminated")

        yield dialled("*78200")  # the key: on
        yield wait_model(reactor, pbx, lambda: pbx.endpoint(DESK).dnd, "200 on DND by its key")
        yield dnd.shows(2, "confirmed")
        assert appliance.devices.presence(DESK) is Presence.DND
        yield dialled("*78200")  # the key again: off
        yield wait_model(reactor, pbx, lambda: not pbx.endpoint(DESK).dnd, "200 off DND by its key")
        yield dnd.shows(3, "terminated")
        yield dialled("*78")
        yield dnd.shows(4, "confirmed")
        yield dialled("#78")
        yield dnd.shows(5, "terminated")
        assert not pbx.endpoint(DESK).dnd and not pbx.endpoint(SOFT).dnd

        yield dialled("*21300")
        assert forwards.of(DESK) == [Forward("unconditional", "300")] and forwards.of(SOFT) == []
        yield cfu.shows(2, "confirmed")
        yield dialled("*21200")  # the key: cleared
        assert forwards.of(DESK) == []
        yield cfu.shows(3, "terminated")
        yield dialled("*21300")
        yield cfu.shows(4, "confirmed")
        yield dialled("#21")
        assert forwards.of(DESK) == []
        yield cfu.shows(5, "terminated")

        yield dialled("*39300")
        assert pending_ids(appliance) == ["200:300"]
        yield cb.shows(2, "confirmed")
        yield dialled("*39200")  # the key: cancelled
        assert pending_ids(appliance) == []
        yield cb.shows(3, "terminated")
        yield dialled("*39300")
        yield cb.shows(4, "confirmed")
        yield dialled("#39")
        assert pending_ids(appliance) == []
        yield cb.shows(5, "terminated")
        for lamp in lamps:
            yield lamp.run.done
    finally:
        yield desk.call("#78", hold_ms=20000).done
        for lamp in lamps:
            yield lamp.listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_call_from_the_softphone_shows_the_users_number_and_the_callback_rings_both(
    appliance, phones, reactor
):
    """209 calls 100, which rings until 209 gives up: 100's phone sees 200 (number and
    name), and 100's missed-call entry has 200.  100 calls that number back: desk and
    softphone ring, the softphone answers and sees 100, the desk gets CANCEL."""
    two_devices(appliance.store)
    p100, desk, soft = phones("100"), phones(DESK), phones(SOFT)
    yield registered(reactor, appliance, p100, desk, soft)
    decided = call_decided(appliance, reactor, "100")
    ringing = p100.ring_unanswered()
    calling = soft.give_up("100", ring_ms=2500)
    results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    [shown] = p100.invites(ringing, "INVITE-FROM")
    assert "sip:200@" in shown and '"Anna Berger"' in shown, shown
    _call, decision = yield decided
    assert decision.journal == ("100",)
    [entry] = appliance.missed.journal.entries("100")
    assert (entry.caller_num, entry.caller_name) == (DESK, "Anna Berger")

    desk_rings = desk.ring_unanswered()
    answering = answer_expecting(soft, "100")
    calling = p100.call(entry.caller_num, hold_ms=5000)  # the softphone hangs up first
    results = yield DeferredList([desk_rings.done, answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    assert len(desk.invites(desk_rings, "CANCEL-AT")) == 1
