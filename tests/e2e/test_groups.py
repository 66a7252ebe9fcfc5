"""Groups end to end: strategies, skipped members, overflow and group forwards, seen
at sipp phones through the real Asterisk and the appliance in-process; and the
missed-call recipients over a hunt group by ring order (real SMTP server).

What a phone saw is read from its sipp log: when the INVITE came (``INVITE-AT``),
when the CANCEL came (``CANCEL-AT``), and the From header's display name.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.busy import Reach
from appliance.directory import Group, User
from appliance.forwarding.records import Forward
from appliance.groups import NAMESPACE as CURSORS
from appliance.pbx import Presence
from tests.e2e import test_missed
from tests.e2e.calls import lines_rung, route_finished
from tests.e2e.phones import Phone, SippRun
from tests.e2e.test_callback import busy_with
from tests.e2e.test_callback import registered as registered_idle
from tests.e2e.test_forwarding import display
from tests.e2e.test_missed import EXTERNAL, Inbox, Rig, identity
from tests.e2e.waiting import wait_model, wait_until

RING = 5
"""The shortest ring time a group accepts: hunt steps every 5 s."""

relay_port = test_missed.relay_port
inbox = test_missed.inbox
rig = test_missed.rig


LOGGED_IN: list[Phone] = []
"""Phones a test registered with `registered`: logged out again after it."""


@pytest.fixture(autouse=True)
def no_calls_left(request, reactor, phones):
    """Killed sipp phones leave their calls up in Asterisk, and registrations stay;
    end both so the next test finds every line idle and logged out as before.
    (The missed-call test runs its own appliance.)"""
    appliance = request.getfixturevalue("appliance") if "appliance" in request.fixturenames else None
    yield
    if appliance is not None:
        pbx = appliance.pbx
        for channel in list(pbx.channels.values()):
            pytest_twisted.blockon(
                appliance.ami.sendAction("Hangup", Channel=channel.name).addErrback(lambda _: None)
            )
        pytest_twisted.blockon(wait_model(reactor, pbx, lambda: not pbx.channels, "all calls ended"))
    while LOGGED_IN:
        phone = LOGGED_IN.pop()
        pytest_twisted.blockon(phone.unregister().done.addErrback(lambda _: None))


def registered(reactor: Any, appliance: Any, *phones: Phone) -> Any:
    LOGGED_IN.extend(phones)
    return registered_idle(reactor, appliance, *phones)


def users(appliance: Any, *extensions: str) -> None:
    for ext in extensions:
        appliance.directory.put_user(User(ext, f"Nutzer {ext}", language="de"))


def answer(phone: Phone, ring_ms: int = 200) -> SippRun:
    """Ring ``ring_ms``, answer, log INVITE-AT and INVITE-FROM, wait for the BYE."""
    return phone._run("grp_answer", {"ring_ms": ring_ms}, "-trace_logs", local_port=phone.port)


def at(phone: Phone, run: SippRun, what: str) -> float:
    [line] = phone.invites(run, what)
    return float(line.split()[-1])


def shown(phone: Phone, run: SippRun) -> list[str]:
    return [display(f) for f in phone.invites(run)]


@pytest_twisted.inlineCallbacks
def both_ok(*runs: SippRun) -> Any:
    results = yield DeferredList([r.done for r in runs], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * len(runs), results


@pytest_twisted.inlineCallbacks
def test_hunt_rings_members_in_order(appliance, phones, reactor, routed):
    """Hunt group Vertrieb (201, 202, 5 s each): 201 rings its 5 s, showing
    "Vertrieb: Nutzer 100", then 202 rings and answers."""
    users(appliance, "100", "201", "202")
    appliance.directory.put_group(
        Group("Vertrieb", "620", ("201", "202"), strategy="hunt", ring_seconds=RING)
    )
    first, second = phones("201"), phones("202")
    yield registered(reactor, appliance, first, second)
    ringing, answering = first.ring_unanswered(), answer(second)
    calling = phones("100").call("620", hold_ms=300)
    yield both_ok(ringing, answering, calling)

    assert shown(first, ringing) == ["Vertrieb: Nutzer 100"]
    assert shown(second, answering) == ["Vertrieb: Nutzer 100"]
    rang = first.rang_seconds(ringing)
    assert RING - 0.5 < rang < RING + 1.5, rang
    assert at(second, answering, "INVITE-AT") >= at(first, ringing, "CANCEL-AT") - 0.1
    yield route_finished(reactor, appliance, routed)
    [outcome] = routed
    assert outcome.dials == ("PJSIP/201", "PJSIP/202") and outcome.status == "ANSWER"


@pytest_twisted.inlineCallbacks
def test_cyclic_start_moves_on(appliance, phones, reactor, routed):
    """Cyclic group (203, 204): the first call rings 203 first, the next one 204 first;
    the cursor is in the store."""
    users(appliance, "103", "203", "204")
    appliance.directory.put_group(
        Group("Zyklus", "621", ("203", "204"), strategy="cyclic", ring_seconds=RING)
    )
    p203, p204 = phones("203"), phones("204")
    yield registered(reactor, appliance, p203, p204)
    caller = phones("103")
    for expected in ("203", "204"):
        phone = p203 if expected == "203" else p204
        rung = lines_rung(appliance)
        answering = answer(phone)
        yield both_ok(answering, caller.call("621", hold_ms=300))
        assert [line for line in rung if line != "103"] == [expected]
        assert appliance.store.get(CURSORS, "621") == expected
    yield route_finished(reactor, appliance, routed)
    assert [outcome.dials[0] for outcome in routed] == ["PJSIP/203", "PJSIP/204"]


@pytest_twisted.inlineCallbacks
def test_busy_and_logged_out_members_skipped(appliance, phones, reactor):
    """Hunt group (205 logged out, 206 in a call with call waiting on, 207): neither
    205 nor 206 rings (an ACD does not ring a busy agent, even one whose phone would
    take a waiting call); 207 rings at once and answers."""
    users(appliance, "105", "205", "206", "207", "306")
    appliance.call_waiting.choose("206", True)
    appliance.directory.put_group(
        Group("Annahme", "622", ("205", "206", "207"), strategy="hunt", ring_seconds=RING)
    )
    p205, p206, p207, p306 = phones("205"), phones("206"), phones("207"), phones("306")
    yield registered(reactor, appliance, p205, p206, p207, p306)
    yield p205.unregister().done
    pbx = appliance.pbx
    yield wait_model(reactor, pbx, lambda: pbx.presence("205") is Presence.LOGGED_OUT, "205 logged out")
    held = yield busy_with(reactor, appliance, p206, p306)
    assert appliance.call_waiting.reach("206") is Reach.WAITING
    rung = lines_rung(appliance)
    answering = answer(p207)
    calling = phones("105").call("622", hold_ms=300)
    yield both_ok(answering, calling)
    assert [line for line in rung if line != "105"] == ["207"]
    assert p206.invites(held[0], "INVITE-WAITING") == []


@pytest_twisted.inlineCallbacks
def test_overflow_to_a_number(appliance, phones, reactor):
    """Nobody of group 623 answers within its 5 s: the call goes on to the overflow
    number 308, which sees the caller's own name (an overflow is not predictable)."""
    users(appliance, "108", "208", "308")
    appliance.directory.put_group(Group("Technik", "623", ("208",), ring_seconds=RING, overflow="308"))
    member, overflow = phones("208"), phones("308")
    yield registered(reactor, appliance, member, overflow)
    ringing, answering = member.ring_unanswered(), answer(overflow)
    yield both_ok(ringing, answering, phones("108").call("623", hold_ms=300))
    assert shown(member, ringing) == ["Technik: Nutzer 108"]
    assert RING - 0.5 < member.rang_seconds(ringing) < RING + 1.5
    assert shown(overflow, answering) == ["Nutzer 108"]
    assert at(overflow, answering, "INVITE-AT") >= at(member, ringing, "CANCEL-AT") - 0.1


@pytest_twisted.inlineCallbacks
def test_unconditional_group_forward(appliance, phones, reactor):
    """Group 624 forwards every call to 309 (stored like a user's forward, under the
    group's number): 309 rings showing the forward display naming the group; no
    member rings."""
    users(appliance, "109", "209", "309")
    appliance.directory.put_group(Group("Support", "624", ("209",)))
    appliance.forwarding.forwards.set("624", Forward("unconditional", "309"))
    assert [f.target for f in appliance.forwarding.forwards.of("624")] == ["309"]
    member, target = phones("209"), phones("309")
    yield registered(reactor, appliance, member, target)
    rung = lines_rung(appliance)
    answering = answer(target)
    yield both_ok(answering, phones("109").call("624", hold_ms=300))
    assert shown(target, answering) == ["Uml. für Support: Nutzer 109"]
    assert [line for line in rung if line != "109"] == ["309"]


@pytest_twisted.inlineCallbacks
def test_no_answer_group_forward(appliance, phones, reactor):
    """Ringall group 625 (ring time 20 s) with a no-answer forward after 5 s to 301:
    the member rings 5 s, then 301 rings with the caller's own name."""
    users(appliance, "102", "101", "301")
    appliance.directory.put_group(Group("Zentrale", "625", ("101",), ring_seconds=20))
    appliance.forwarding.forwards.set("625", Forward("noanswer", "301", seconds=5))
    member, target = phones("101"), phones("301")
    yield registered(reactor, appliance, member, target)
    ringing, answering = member.ring_unanswered(), answer(target)
    yield both_ok(ringing, answering, phones("102").call("625", hold_ms=300))
    assert shown(member, ringing) == ["Zentrale: Nutzer 102"]
    assert 4.5 < member.rang_seconds(ringing) < 6.5
    assert shown(target, answering) == ["Nutzer 102"]


@pytest.mark.parametrize("recipients", ["first", "last", "all"])
@pytest_twisted.inlineCallbacks
def test_missed_call_recipients_over_a_hunt_group(
    rig: Rig, inbox: Inbox, phones: Any, recipients: str
) -> Any:
    """An outside call to hunt group 601 (202, 200, 201 in this order, 5 s each) that
    nobody answers (the caller hears the call end after the last member): one journal
    entry per member, the participants in ring order, and mail to the first (202), the
    last (201) or all."""
    rig.appliance.settings.set("MC_RECIPIENTS", recipients)
    rig.appliance.directory.put_group(
        Group("Hunt", "601", ("202", "200", "201"), strategy="hunt", ring_seconds=RING)
    )
    members = [phones(ext) for ext in ("200", "201", "202")]
    yield registered(rig.reactor, rig.appliance, *members)
    ringing = [member._run("mc_ring", {}, local_port=member.port) for member in members]
    values = {"target": "601", "final": 603, "name": "Erika", "identity_header": identity(EXTERNAL)}
    calling = phones("trunk")._run("grp_call_unanswered", values)
    results = yield DeferredList([r.done for r in ringing] + [calling.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    call, decision = yield rig.wait_decision("201")
    assert [leg.endpoint for leg in call.rung_legs()] == ["202", "200", "201"]
    assert list(decision.journal) == ["202", "200", "201"]
    assert all(len(rig.appliance.missed.journal.entries(u)) == 1 for u in ("200", "201", "202"))
    expected = {"first": ["202"], "last": ["201"], "all": ["202", "200", "201"]}[recipients]
    assert list(decision.mail) == expected
    yield rig.wait_outbox_settled()
    yield wait_until(rig.reactor, inbox.subscribe, lambda: len(inbox.messages) >= len(expected), "mails")
    to = sorted(m["To"].addresses[0].addr_spec for m in inbox.messages)
    assert to == sorted(f"u{u}@example.org" for u in expected)
