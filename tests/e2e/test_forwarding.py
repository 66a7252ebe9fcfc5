"""Call forwarding end to end: sipp phones, the real Asterisk, the appliance in-process.

What a phone would show is read from the INVITE it received (sipp logs its
From header).  Transfers are real SIP REFERs from the sipp phone; the test
tells that phone when and where to transfer with an in-dialog NOTIFY (AMI
``PJSIPNotify`` on its channel) carrying the Refer-To to use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults

from appliance.directory import User
from appliance.forwarding.records import Forward
from appliance.pbx import ChannelChanged, Presence
from tests.e2e.calls import route_finished
from tests.e2e.phones import Phone, SippRun
from tests.e2e.waiting import wait_model

EXTENSIONS = ("100", "101", "200", "201", "300")


@pytest.fixture(autouse=True)
def no_calls_left(appliance, reactor):
    """Killed sipp phones leave their calls up in Asterisk; end them so the next test
    (and the next suite) finds every line idle."""
    yield
    pbx = appliance.pbx
    hangups = [
        appliance.ami.sendAction("Hangup", Channel=channel.name).addErrback(lambda _: None)
        for channel in list(pbx.channels.values())
    ]
    pytest_twisted.blockon(gatherResults(hangups))
    pytest_twisted.blockon(wait_model(reactor, pbx, lambda: not pbx.channels, "all calls ended"))


def setup_users(appliance) -> None:
    for ext in EXTENSIONS:
        appliance.directory.put_user(User(ext, f"Nutzer {ext}", language="de"))


def run(phone: Phone, scenario: str, listen: bool = True, timeout: int = 60, **values: object) -> SippRun:
    """One of our scenarios, with sipp's message log on (``<log>`` actions); NOTIFYs the
    scenario does not wait for (transfer progress) are answered 200 by sipp itself."""
    return phone._run(
        scenario,
        {"ring_ms": 200, **values},
        "-trace_logs",
        "-aa",
        local_port=phone.port if listen else None,
        timeout=timeout,
    )


def call_from_trunk(phones: Any, target: str, number: str) -> SippRun:
    """An outside caller with caller ID ``number`` (P-Asserted-Identity) calls ``target``."""
    return run(
        phones("trunk"),
        "fwd_call",
        listen=False,
        target=target,
        hold_ms=300,
        name="Outside",
        extra=f"P-Asserted-Identity: <sip:{number}@127.0.0.1>\r\n",
    )


def logged(phone: Phone, sipp: SippRun, tag: str) -> list[str]:
    """What the scenario logged under ``tag`` (e.g. every INVITE's From header)."""
    lines: list[str] = []
    for path in sorted(Path(phone.workdir).glob(f"{sipp.name}_*_logs.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(tag + " "):
                lines.append(line[len(tag) + 1 :])
    return lines


def display(from_header: str) -> str:
    """The display name of a From header value."""
    match = re.match(r'\s*"((?:[^"\\]|\\.)*)"', from_header)
    return match.group(1) if match else ""


def registered(appliance, reactor, *phones: Phone):
    """Register the phones and wait until the model shows each at its own port."""
    pbx = appliance.pbx

    def all_there() -> bool:
        return all(any(f":{p.port}" in uri for uri in pbx.endpoint(p.extension).contacts) for p in phones)

    done = DeferredList([p.register().done for p in phones], fireOnOneErrback=True, consumeErrors=True)
    done.addCallback(lambda _: wait_model(reactor, pbx, all_there, "phones registered"))
    return done


def channels_seen(appliance, extension: str) -> list[str]:
    """Every channel of ``extension`` created from now on."""
    seen: list[str] = []

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and change.channel.endpoint == extension:
            if change.channel.name not in seen:
                seen.append(change.channel.name)

    appliance.pbx.subscribe(record)
    return seen


def forward(appliance, line: str, kind: str, target: str, **options: object) -> None:
    appliance.forwarding.forwards.set(line, Forward(kind, target, **options))  # type: ignore[arg-type]


@pytest_twisted.inlineCallbacks
def test_unconditional_forward_shows_display(appliance, phones, reactor):
    """200 forwards all calls to 300: 300 rings and shows ``Uml. für <200's name>: <caller>``."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300")
    target, caller = phones("300"), phones("100")
    yield registered(appliance, reactor, target)
    answering = run(target, "fwd_answer")
    calling = caller.call("200", hold_ms=500)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    [seen] = logged(target, answering, "INVITE-FROM")
    assert display(seen) == "Uml. für Nutzer 200: Nutzer 100", seen
    assert "sip:100@" in seen


@pytest_twisted.inlineCallbacks
def test_busy_forward_only_when_busy(appliance, phones, reactor):
    """200 forwards on busy: idle it rings itself; busy, the next call goes to 300 with display."""
    setup_users(appliance)
    forward(appliance, "200", "busy", "300")
    line, target = phones("200"), phones("300")
    yield registered(appliance, reactor, line, target)
    first = run(line, "fwd_answer")
    phones("101").call("200", hold_ms=30000)
    yield wait_model(
        reactor, appliance.pbx, lambda: appliance.pbx.presence("200") is Presence.BUSY, "200 busy"
    )
    second = run(target, "fwd_answer")
    calling = phones("100").call("200", hold_ms=300)
    results = yield DeferredList([second.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    assert [display(f) for f in logged(line, first, "INVITE-FROM")] == ["Nutzer 101"]
    assert [display(f) for f in logged(target, second, "INVITE-FROM")] == ["Uml. für Nutzer 200: Nutzer 100"]


@pytest_twisted.inlineCallbacks
def trunk_call_rings_200_undiverted(appliance, phones, reactor):
    """+4930123456 calls 200 from the trunk: 200 rings showing that number, no
    "Uml." display, and nothing reaches 300 (200's forward target)."""
    line = phones("200")
    diverted = channels_seen(appliance, "300")
    yield registered(appliance, reactor, line)
    answering = run(line, "fwd_answer")
    calling = call_from_trunk(phones, "200", "+4930123456")
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    [seen] = logged(line, answering, "INVITE-FROM")
    assert "+4930123456" in seen and "Uml." not in seen, seen
    assert diverted == []


@pytest_twisted.inlineCallbacks
def test_internal_only_forward_ignores_external_call(appliance, phones, reactor):
    """200 forwards internal calls only: a call from the trunk rings 200, undisplayed."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300", scope="internal")
    yield trunk_call_rings_200_undiverted(appliance, phones, reactor)


@pytest_twisted.inlineCallbacks
def test_noanswer_forward_after_seconds_without_display(appliance, phones, reactor):
    """200 forwards after 3 s without answer: 200 rings 3 s, then 300 with the caller's own name."""
    setup_users(appliance)
    forward(appliance, "200", "noanswer", "300", seconds=3)
    line, target = phones("200"), phones("300")
    yield registered(appliance, reactor, line, target)
    created: dict[str, float] = {}

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and change.channel.endpoint in ("200", "300"):
            created.setdefault(change.channel.endpoint or "", reactor.seconds())

    appliance.pbx.subscribe(record)
    ringing = run(line, "fwd_ring")
    answering = run(target, "fwd_answer")
    calling = phones("100").call("200", hold_ms=300)
    results = yield DeferredList([ringing.done, answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True, True], results
    assert [display(f) for f in logged(line, ringing, "INVITE-FROM")] == ["Nutzer 100"]
    assert [display(f) for f in logged(target, answering, "INVITE-FROM")] == ["Nutzer 100"]
    assert created["300"] - created["200"] >= 2.9


@pytest_twisted.inlineCallbacks
def test_external_target_is_dialled_over_the_trunk(appliance, phones, reactor):
    """200 forwards to an external number: the call leaves over the trunk to that
    number, with the forward display."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "01701234567")
    outside = phones("trunk")
    yield outside.register().done
    yield wait_model(reactor, appliance.pbx, lambda: appliance.pbx.endpoint("trunk").registered, "trunk up")
    try:
        answering = run(outside, "fwd_answer")
        calling = phones("100").call("200", hold_ms=300)
        results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
        assert [ok for ok, _ in results] == [True, True], results
    finally:
        yield outside.unregister().done
    assert [display(f) for f in logged(outside, answering, "INVITE-FROM")] == [
        "Uml. für Nutzer 200: Nutzer 100"
    ]
    [to] = logged(outside, answering, "INVITE-TO")
    assert "sip:01701234567@" in to, to


@pytest_twisted.inlineCallbacks
def test_switchboard_breaks_any_forward(appliance, phones, reactor):
    """101 is in FWD_BREAKTHROUGH_USERS: its call rings 200 despite the forward to 300."""
    setup_users(appliance)
    appliance.settings.set("FWD_BREAKTHROUGH_USERS", "101")
    forward(appliance, "200", "unconditional", "300")
    line = phones("200")
    diverted = channels_seen(appliance, "300")
    yield registered(appliance, reactor, line)
    answering = run(line, "fwd_answer")
    calling = phones("101").call("200", hold_ms=300)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    assert [display(f) for f in logged(line, answering, "INVITE-FROM")] == ["Nutzer 101"]
    assert diverted == []


@pytest_twisted.inlineCallbacks
def test_loop_ends_cleanly(appliance, phones, reactor, routed):
    """200 and 300 forward to each other: the call ends at 300, which rings once."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300")
    forward(appliance, "300", "unconditional", "200")
    target = phones("300")
    yield registered(appliance, reactor, target)
    answering = run(target, "fwd_answer")
    calling = phones("100").call("200", hold_ms=300)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    assert [display(f) for f in logged(target, answering, "INVITE-FROM")] == [
        "Uml. für Nutzer 200: Nutzer 100"
    ]
    yield route_finished(reactor, appliance, routed)
    [outcome] = routed
    assert (outcome.number, outcome.origin, outcome.status) == ("200", "internal", "ANSWER")
    assert [(leg.destination.number, leg.reason) for leg, _ in outcome.legs] == [("300", "loop")]


def _leg_of(appliance, extension: str, dialled: bool):
    """The live channel of ``extension`` that a Dial created (or that its phone placed)."""
    for channel in appliance.pbx.channels_of(extension):
        if (channel.dialed_by is not None) == dialled:
            return channel
    return None


def _transfer(appliance, channel: str, refer_to: str):
    """Tell the sipp phone on ``channel`` to send REFER with this Refer-To."""
    return appliance.ami.sendAction(
        "PJSIPNotify", Channel=channel, Variable=["Event=appliance-test", f"X-Refer-To={refer_to}"]
    )


@pytest_twisted.inlineCallbacks
def test_attended_transfer_back_breaks_through(appliance, phones, lab, reactor):
    """300, target of 200's forward, consults 200 (which rings despite the forward) and
    completes an attended transfer: the caller ends up talking to 200."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300")
    pbx = appliance.pbx
    secretary, boss = phones("300"), phones("200")
    yield registered(appliance, reactor, secretary, boss)
    taking = run(secretary, "fwd_transfer")
    phones("100").call("200", hold_ms=60000)
    yield wait_model(
        reactor, pbx, lambda: (c := _leg_of(appliance, "300", True)) and c.state == "Up", "300 talks"
    )

    boss_answering = run(boss, "fwd_answer")
    consult = phones("300").call("200", hold_ms=60000, caller_name="Consult")
    yield wait_model(
        reactor, pbx, lambda: (c := _leg_of(appliance, "200", True)) and c.state == "Up", "200 talks"
    )
    consult_leg = _leg_of(appliance, "300", False)
    assert consult_leg is not None
    tags = {}
    for key in ("call-id", "local_tag", "remote_tag"):
        reply = yield appliance.ami.sendAction(
            "Getvar", Channel=consult_leg.name, Variable=f"CHANNEL(pjsip,{key})"
        )
        tags[key] = reply.get("Value")
    replaces = quote(f"{tags['call-id']};to-tag={tags['local_tag']};from-tag={tags['remote_tag']}", safe="")
    talking = _leg_of(appliance, "300", True)
    yield _transfer(
        appliance, talking.name, f"<sip:200@{lab.ports.host}:{lab.ports.sip}?Replaces={replaces}>"
    )

    def caller_with_boss() -> bool:
        return any(c.connected_num == "200" and c.state == "Up" for c in pbx.channels_of("100"))

    yield wait_model(reactor, pbx, caller_with_boss, "100 connected to 200")
    yield taking.done
    assert [display(f) for f in logged(boss, boss_answering, "INVITE-FROM")] == ["Nutzer 300"]
    assert [display(f) for f in logged(secretary, taking, "INVITE-FROM")] == [
        "Uml. für Nutzer 200: Nutzer 100"
    ]
    consult.kill()


@pytest_twisted.inlineCallbacks
def test_blind_transfer_back_is_forwarded(appliance, phones, lab, reactor):
    """300, target of 200's forward, blind-transfers the caller to 200: the call is
    forwarded to 300 again (with display) and 200 never rings."""
    setup_users(appliance)
    forward(appliance, "200", "unconditional", "300")
    pbx = appliance.pbx
    secretary, boss = phones("300"), phones("200")
    yield registered(appliance, reactor, secretary, boss)
    boss_channels = channels_seen(appliance, "200")
    taking = run(secretary, "fwd_transfer")
    phones("100").call("200", hold_ms=60000)
    yield wait_model(
        reactor, pbx, lambda: (c := _leg_of(appliance, "300", True)) and c.state == "Up", "300 talks"
    )
    talking = _leg_of(appliance, "300", True)

    # The secretary's second call arrives at another port of the same line.
    again = phones("300")
    yield registered(appliance, reactor, again)
    answering_again = run(again, "fwd_answer")
    yield _transfer(appliance, talking.name, f"<sip:200@{lab.ports.host}:{lab.ports.sip}>")

    def talks_again() -> bool:
        return any(c.state == "Up" and c.name != talking.name for c in pbx.channels_of("300"))

    yield wait_model(reactor, pbx, talks_again, "300 talks again")
    yield taking.done
    [seen] = logged(again, answering_again, "INVITE-FROM")
    assert display(seen) == "Uml. für Nutzer 200: Nutzer 100" and "sip:100@" in seen, seen
    assert boss_channels == []


@pytest_twisted.inlineCallbacks
def test_feature_codes_set_and_clear(appliance, phones, reactor):
    """200 dials ``*21300``: its unconditional forward to 300 is stored; ``#21`` clears it."""
    setup_users(appliance)
    phone = phones("200")
    yield phone.call("*21300", hold_ms=15000).done
    assert appliance.forwarding.forwards.of("200") == [Forward("unconditional", "300")]
    yield phone.call("%2321", hold_ms=15000).done
    assert appliance.forwarding.forwards.of("200") == []
