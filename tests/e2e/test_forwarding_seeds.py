"""Forward display and breakthrough as seed 002 says, end to end: sipp phones and a
sipp trunk, the real Asterisk, the appliance in-process.

Covers what only unit tests showed before: the forwarder named by directory name
(short form where it does not fit, the number with FWD_DISPLAY_NUMBER),
external-only and scoped busy forwards, breakthrough by group and by caller ID,
and the FAQ rules 1-3 (a forward to a group gives its members no right; the right
is not inherited along A→B→C; only a forward to the caller's primary number counts).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.directory import Group, User
from tests.e2e import test_forwarding
from tests.e2e.calls import route_finished
from tests.e2e.test_callback import FROM_OUTSIDE, OUTSIDE, busy_with
from tests.e2e.test_forwarding import channels_seen, display, forward, logged, registered, run, setup_users
from tests.e2e.test_missed import call_and_cancel
from tests.e2e.waiting import wait_model

# Every call of a test ended before the next test (the forwarding suite's fixture).
no_calls_left = test_forwarding.no_calls_left

OTHER_OUTSIDE = "+4930999999"
FORWARDED_100 = "Uml. für Nutzer 200: Nutzer 100"
FORWARDED_300 = "Uml. für Nutzer 200: Nutzer 300"


def from_outside(number: str) -> str:
    return f"P-Asserted-Identity: <sip:{number}@127.0.0.1>\r\n"


def trunk_call(phones, target: str, number: str = OUTSIDE):
    """An external call to ``target`` that is answered and hung up after 300 ms."""
    return run(
        phones("trunk"), "fwd_call", listen=False, target=target, hold_ms=300, name="Outside",
        extra=from_outside(number),
    )  # fmt: skip


@pytest_twisted.inlineCallbacks
def answered(*runs):
    results = yield DeferredList([r.done for r in runs], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * len(runs), results


@pytest.mark.parametrize(
    ("name", "settings", "expected"),
    [
        ("Anna Berger", {}, "Uml. für Anna Berger: Nutzer 100"),
        ("Maximiliane Oberhuber", {}, "Uml. für Oberhuber: Nutzer 100"),
        ("Maximiliane Oberhuber", {"FWD_DISPLAY_WIDTH": "26"}, "Uml. für Ober.: Nutzer 100"),
        ("Anna Berger", {"FWD_DISPLAY_NUMBER": "on"}, "Uml. für 200: Nutzer 100"),
    ],
    ids=["name", "short-form", "shorter-display", "number-setting"],
)
@pytest_twisted.inlineCallbacks
def test_display_names_the_forwarder(appliance, phones, reactor, name, settings, expected):
    """The target of 200's forward sees 200's directory name, the first short form that
    fits FWD_DISPLAY_WIDTH, or 200's number with FWD_DISPLAY_NUMBER."""
    setup_users(appliance)
    appliance.directory.put_user(replace(appliance.directory.user("200"), name=name))
    if settings:
        appliance.settings.set_many(settings)
    forward(appliance, "200", "unconditional", "300")
    target = phones("300")
    yield registered(appliance, reactor, target)
    answering = run(target, "fwd_answer")
    yield answered(answering, phones("100").call("200", hold_ms=300))
    assert [display(f) for f in logged(target, answering, "INVITE-FROM")] == [expected]


@pytest_twisted.inlineCallbacks
def test_external_only_forward(appliance, phones, reactor):
    """200 forwards external calls only (*23): the trunk's call goes to 300 with the
    display, an internal call rings 200 itself."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300", scope="external")
    line, target = phones("200"), phones("300")
    diverted = channels_seen(appliance, "300")
    yield registered(appliance, reactor, line, target)
    at_target = run(target, "fwd_answer")
    yield answered(at_target, trunk_call(phones, "200"))
    at_line = run(line, "fwd_answer")
    yield answered(at_line, phones("100").call("200", hold_ms=300))
    expected = [f"Uml. für Nutzer 200: {OUTSIDE}"]
    assert [display(f) for f in logged(target, at_target, "INVITE-FROM")] == expected
    assert [display(f) for f in logged(line, at_line, "INVITE-FROM")] == ["Nutzer 100"]
    assert len(diverted) == 1


@pytest_twisted.inlineCallbacks
def test_busy_forward_for_internal_callers_only(appliance, phones, reactor):
    """200 forwards on busy for internal calls only (*68) and is in a call: an external
    caller meets the busy line (486), an internal one goes to 300 with the display."""
    setup_users(appliance)
    forward(appliance, "200", "busy", "300", scope="internal")
    line, peer, target = phones("200"), phones("101"), phones("300")
    diverted = channels_seen(appliance, "300")
    yield registered(appliance, reactor, line, peer, target)
    yield busy_with(reactor, appliance, line, peer)
    outside = phones("trunk")._run(
        "cc_busy", {"target": "200", "code": 486, "extra": FROM_OUTSIDE}, timeout=20
    )
    yield answered(outside)
    assert diverted == []
    answering = run(target, "fwd_answer")
    yield answered(answering, phones("100").call("200", hold_ms=300))
    assert [display(f) for f in logged(target, answering, "INVITE-FROM")] == [FORWARDED_100]


@pytest_twisted.inlineCallbacks
def test_group_breaks_through_every_forward(appliance, phones, reactor):
    """FWD_BREAKTHROUGH_GROUPS=reception: 101 (a member) rings 200 despite the forward;
    100 (not a member) is forwarded to 300."""
    setup_users(appliance)
    appliance.directory.put_group(Group("reception", "650", ("101",)))
    appliance.settings.set("FWD_BREAKTHROUGH_GROUPS", "reception")
    forward(appliance, "200", "unconditional", "300")
    line, target = phones("200"), phones("300")
    yield registered(appliance, reactor, line, target)
    at_target = run(target, "fwd_answer")
    yield answered(at_target, phones("100").call("200", hold_ms=300))
    at_line = run(line, "fwd_answer")
    yield answered(at_line, phones("101").call("200", hold_ms=300))
    assert [display(f) for f in logged(target, at_target, "INVITE-FROM")] == [FORWARDED_100]
    assert [display(f) for f in logged(line, at_line, "INVITE-FROM")] == ["Nutzer 101"]


@pytest_twisted.inlineCallbacks
def test_caller_id_breaks_through_every_forward(appliance, phones, reactor):
    """FWD_BREAKTHROUGH_CALLERIDS: the listed external number rings 200 despite the
    forward; another external number is forwarded to 300."""
    setup_users(appliance)
    appliance.settings.set("FWD_BREAKTHROUGH_CALLERIDS", OUTSIDE)
    forward(appliance, "200", "unconditional", "300")
    line, target = phones("200"), phones("300")
    yield registered(appliance, reactor, line, target)
    at_target = run(target, "fwd_answer")
    yield answered(at_target, trunk_call(phones, "200", OTHER_OUTSIDE))
    at_line = run(line, "fwd_answer")
    yield answered(at_line, trunk_call(phones, "200", OUTSIDE))
    assert [display(f) for f in logged(target, at_target, "INVITE-FROM")] == [
        f"Uml. für Nutzer 200: {OTHER_OUTSIDE}"
    ]
    [seen] = logged(line, at_line, "INVITE-FROM")
    assert "Uml." not in seen and f"sip:{OUTSIDE}@" in seen


@pytest_twisted.inlineCallbacks
def test_faq1_forward_to_a_group_gives_members_no_right(appliance, phones, reactor, routed):
    """200 forwards to group 610 (300, 301): member 300 calling 200 (from a phone not
    logged in as 300's line, so the group's leg to 300 finds no phone) does not break
    through; the call goes to the group and 301 rings with the display; 200 never rings."""
    setup_users(appliance)
    appliance.directory.put_user(User("301", "User 301"))
    appliance.directory.put_group(Group("team", "610", ("300", "301")))
    forward(appliance, "200", "unconditional", "610")
    caller, member = phones("300"), phones("301")
    yield registered(appliance, reactor, caller, member)
    yield caller.unregister().done
    pbx = appliance.pbx
    yield wait_model(reactor, pbx, lambda: not pbx.endpoint("300").registered, "300 logged out")
    at_forwarder = channels_seen(appliance, "200")
    answering = run(member, "fwd_answer")
    yield answered(answering, caller.call("200", hold_ms=300))
    assert [display(f) for f in logged(member, answering, "INVITE-FROM")] == [FORWARDED_300]
    assert at_forwarder == []
    yield route_finished(reactor, appliance, routed)
    [(leg, _)] = routed[-1].legs
    where = (leg.destination.kind, leg.destination.members, leg.reason)
    assert where == ("group", ("300", "301"), "forwarded")


@pytest_twisted.inlineCallbacks
def test_faq2_the_right_is_not_inherited(appliance, phones, reactor):
    """A(200)→B(201)→C(300): C calling A is forwarded to B and breaks through B's forward
    there (B rings, A never); B calling A breaks through A's forward (A rings)."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "201")
    forward(appliance, "201", "unconditional", "300")
    a, b = phones("200"), phones("201")
    yield registered(appliance, reactor, a, b)
    at_a = channels_seen(appliance, "200")
    at_b = run(b, "fwd_answer")
    yield answered(at_b, phones("300").call("200", hold_ms=300))
    assert [display(f) for f in logged(b, at_b, "INVITE-FROM")] == [FORWARDED_300]
    assert at_a == []
    at_a_run = run(a, "fwd_answer")
    yield answered(at_a_run, phones("201").call("200", hold_ms=300))
    assert [display(f) for f in logged(a, at_a_run, "INVITE-FROM")] == ["Nutzer 201"]


@pytest.mark.parametrize("target", ["3900", "300"], ids=["further-number", "primary-number"])
@pytest_twisted.inlineCallbacks
def test_faq3_only_the_primary_number_counts(appliance, phones, reactor, target):
    """300 also owns 3900.  200 forwards to 3900: 300 calling 200 does not break through
    (its own phone rings, with the display; 200 never rings).  200 forwards to 300:
    300 breaks through and 200 rings."""
    setup_users(appliance)
    appliance.directory.put_user(replace(appliance.directory.user("300"), numbers=("3900",)))
    forward(appliance, "200", "unconditional", target)
    line, own = phones("200"), phones("300")
    yield registered(appliance, reactor, line, own)
    at_line, at_own = channels_seen(appliance, "200"), channels_seen(appliance, "300")
    ringing = run(line if target == "300" else own, "fwd_ring")
    calling = call_and_cancel(phones, "200", ring_ms=1000, caller="300")
    yield answered(ringing, calling)
    if target == "300":
        assert [display(f) for f in logged(line, ringing, "INVITE-FROM")] == ["Nutzer 300"]
        assert len(at_line) == 1
    else:
        assert [display(f) for f in logged(own, ringing, "INVITE-FROM")] == [FORWARDED_300]
        assert at_line == [] and len(at_own) >= 1
