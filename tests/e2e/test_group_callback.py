"""Callback to a group whose members are all in calls (issue 11 item 5, seed 003):
sipp office phones, the real Asterisk, the appliance in-process."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance import settings as keys
from appliance import tap
from appliance.directory import Group, User
from tests.e2e.conftest import appliance_config
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
from tests.e2e.waiting import wait_synced, wait_until

GROUP = Group("Vertrieb", "650", ("300", "301"))


def set_up(appliance: Any) -> None:
    """Users with names of their own (what the member's display shows) and group 650."""
    for extension in ("100", "101", "300", "301"):
        appliance.directory.put_user(User(extension, f"Nutzer {extension}", language="de"))
    appliance.directory.put_group(GROUP)


def all_ok(results: list[tuple[bool, object]]) -> bool:
    return [ok for ok, _ in results] == [True] * len(results)


@pytest_twisted.inlineCallbacks
def all_busy_then_offered(
    reactor: Any, appliance: Any, phones: Any, group: Group, requesters: tuple[str, ...]
) -> Any:
    """Register the requesters, ``group``'s members and a caller for each member (2xx
    for 3xx), put every member in a call, and let the requesters take the group's
    offer in this order.  Returns (the phones by extension, each member's held call)."""
    callers = {member: "2" + member[1:] for member in group.members}
    phone = {n: phones(n) for n in (*requesters, *group.members, *callers.values())}
    yield registered(reactor, appliance, *phone.values())
    held = {}
    for member, caller in callers.items():
        held[member] = yield busy_with(reactor, appliance, phone[member], phone[caller])
    for requester in requesters:
        yield offer(phone[requester], group.number).done
    assert pending_ids(appliance) == [f"{r}:{group.number}" for r in requesters]
    return phone, held


@pytest_twisted.inlineCallbacks
def test_group_all_in_calls_offers_and_first_free_member_is_recalled(appliance, phones, reactor, recalls):
    """300 and 301 (group 650) are each in a call on office phones that could ring a
    second call; 100 calls 650: nothing rings at the members, 100 gets the offer and
    presses 5.  When 301's call ends, the appliance rings 100 showing the group
    (650), 100 answers, then 301 rings showing "Vertrieb: Nutzer 100" from 100 and
    answers; the request is done.  300, still in its call, never rang."""
    assert not appliance.settings.get(keys.CW_DEFAULT)
    set_up(appliance)
    p100, p300, p301, p200, p201 = (phones(n) for n in ("100", "300", "301", "200", "201"))
    yield registered(reactor, appliance, p100, p300, p301, p200, p201)
    held_300 = yield busy_with(reactor, appliance, p300, p200)
    held_301 = yield busy_with(reactor, appliance, p301, p201)
    at_300, at_301 = channels_created(appliance, "300"), channels_created(appliance, "301")

    yield offer(p100, "650").done
    assert pending_ids(appliance) == ["100:650"]
    stored = appliance.store.get("callbacks", "100:650")
    assert (stored["target"], stored["group"]) == ("650", True)
    assert (at_300, at_301) == ([], [])  # busy before anything rang
    assert p300.invites(held_300[0], "INVITE-WAITING") == []

    requester = take_recall(p100, "650")
    yield end_call_of(reactor, appliance, "301", held_301)
    member = answer_expecting(p301, "100")
    results = yield DeferredList([requester.done, member.done], consumeErrors=True)
    assert all_ok(results), results
    [shown] = p301.invites(member)
    assert '"Vertrieb: Nutzer 100"' in shown and "sip:100@" in shown, shown
    [rang_100] = p100.invites(requester)
    assert '"Vertrieb"' in rang_100 and "sip:650@" in rang_100, rang_100
    yield wait_pending(reactor, appliance, lambda ids: not ids, "group request done after the recall")
    recall = recalls[-1][1]
    assert (recall.requester, recall.target, recall.group, recall.attempt) == ("100", "301", "650", 1)
    assert at_300 == []  # still in its call: never rung
    yield end_call_of(reactor, appliance, "300", held_300)


@pytest_twisted.inlineCallbacks
def test_two_requesters_served_in_order_one_free_member_each(appliance, phones, reactor, recalls):
    """100, then 101, ask group 650 (300, 301 in calls) for a callback.  301's call
    ends first: 100 is rung and gets 301; then 300's call ends: 101 is rung and gets
    300.  Both requests are done, the first member to be free went to the first
    requester."""
    set_up(appliance)
    phone, held = yield all_busy_then_offered(reactor, appliance, phones, GROUP, ("100", "101"))

    first = take_recall(phone["100"], "650")
    second = take_recall(phone["101"], "650")
    yield end_call_of(reactor, appliance, "301", held["301"])
    at_301 = answer_expecting(phone["301"], "100")
    yield end_call_of(reactor, appliance, "300", held["300"])
    at_300 = answer_expecting(phone["300"], "101")
    results = yield DeferredList([first.done, at_301.done, second.done, at_300.done], consumeErrors=True)
    assert all_ok(results), results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "both group requests done")
    recalls = [(r.requester, r.target) for _, r in recalls]
    assert recalls == [("100", "301"), ("101", "300")]


@pytest_twisted.inlineCallbacks
def test_group_request_survives_restart_and_cancel_code_ends_it(phones, reactor, tmp_path, lab):
    """102 and 103 ask group 651 (302, 303 in calls) for a callback; the appliance
    stops and a new one on the same store takes both requests back.  103 cancels
    with ``#39651``; when 303's call ends, 102 is rung, then 303, and no recall
    ever goes to 103."""
    config = str(appliance_config(tmp_path, lab))
    group = Group("Service", "651", ("302", "303"))
    first = tap.build(config, reactor)
    first.startService()
    try:
        yield wait_synced(reactor, first)
        first.directory.put_group(group)
        phone, held = yield all_busy_then_offered(reactor, first, phones, group, ("102", "103"))
    finally:
        yield first.stopService()

    fresh = tap.build(config, reactor)
    recalls: list[Any] = []
    fresh.callbacks.on_recall(recalls.append)
    fresh.startService()
    try:
        yield wait_synced(reactor, fresh)
        assert pending_ids(fresh) == ["102:651", "103:651"]
        yield phone["103"].call("%2339651", hold_ms=20000).done  # "#39651"
        assert pending_ids(fresh) == ["102:651"]
        requester = take_recall(phone["102"], "651")
        yield end_call_of(reactor, fresh, "303", held["303"])
        member = answer_expecting(phone["303"], "102")
        results = yield DeferredList([requester.done, member.done], consumeErrors=True)
        assert all_ok(results), results
        yield wait_pending(reactor, fresh, lambda ids: not ids, "group request done after the recall")
        assert [(r.requester, r.target) for r in recalls] == [("102", "303")]
        yield end_call_of(reactor, fresh, "302", held["302"])
    finally:
        yield fresh.stopService()


@pytest_twisted.inlineCallbacks
def test_member_not_lost_when_the_first_requester_does_not_answer(appliance, phones, reactor, recalls):
    """CC_WAIT_TIME 5: 104, then 105, ask group 652 (304, 305 in calls).  305's call
    ends: 104's phone rings 5 s unanswered; 305, still free, goes to 105 at once,
    who answers, then 305 rings showing the group; 104 keeps its request for the
    retry."""
    appliance.settings.set(keys.CC_WAIT_TIME, "5")
    group = Group("Technik", "652", ("304", "305"))
    appliance.directory.put_group(group)
    phone, held = yield all_busy_then_offered(reactor, appliance, phones, group, ("104", "105"))

    unanswered = phone["104"].ring_unanswered()
    second = take_recall(phone["105"], "652")
    yield end_call_of(reactor, appliance, "305", held["305"])
    yield unanswered.done
    member = answer_expecting(phone["305"], "105")
    results = yield DeferredList([second.done, member.done], consumeErrors=True)
    assert all_ok(results), results
    assert "Technik: " in phone["305"].invites(member)[0]
    recalls = [(r.requester, r.target) for _, r in recalls]
    assert recalls == [("104", "305"), ("105", "305")]
    yield wait_pending(reactor, appliance, lambda ids: ids == ["104:652"], "105 served, 104 waits")
    waiting = appliance.callbacks.engine.get("104:652")
    assert (waiting.state.value, waiting.attempts, waiting.member) == ("waiting", 1, "")
    yield end_call_of(reactor, appliance, "304", held["304"])


@pytest_twisted.inlineCallbacks
def test_ccnr_to_a_hunt_group_the_caller_gave_up_on(appliance, phones, reactor, routed):
    """With CCNR on, 101 lets hunt group 651 (member 302) ring 3 s and hangs up, as people
    do; a plain *39 then requests the callback to the group, not to the member that
    rang.  302 is free: the appliance rings 101 showing the group, 101 answers, then
    302 rings with caller ID 101 and answers; the request is done."""
    appliance.settings.set(keys.CC_CCNR_ENABLED, "on")
    for extension in ("101", "302"):
        appliance.directory.put_user(User(extension, f"Nutzer {extension}", language="de"))
    appliance.directory.put_group(Group("Service", "651", ("302",), strategy="hunt", ring_seconds=20))
    p101, p302 = phones("101"), phones("302")
    yield registered(reactor, appliance, p101, p302)
    ringing = p302._run("mc_ring", {}, local_port=p302.port)
    yield p101.give_up("651", ring_ms=3000).done
    yield ringing.done
    yield wait_until(
        reactor,
        appliance.call_extensions.on_finished,
        lambda: ("651", "CANCEL") in [(c.number, c.status) for c in routed],
        "the route of the call 101 gave up on finished",
    )
    assert appliance.store.get("callbacks_ccnr", "101") == "651"

    requester = take_recall(p101, "651")
    target = answer_expecting(p302, "101")
    yield p101.call("*39", hold_ms=20000).done
    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert all_ok(results), results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
