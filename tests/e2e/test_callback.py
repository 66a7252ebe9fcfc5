"""Automatic callback end to end: sipp phones, the real Asterisk, the appliance in-process."""

from __future__ import annotations

import re

import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from appliance import settings as keys
from appliance import tap
from appliance.directory import User
from appliance.forwarding.records import Forward
from appliance.pbx import ChannelChanged, Presence, Resynced
from tests.e2e.conftest import appliance_config
from tests.e2e.waiting import wait_model, wait_synced, wait_until

RECALL_BOUND = 5.0
"""Seconds from the target being free to the recall ringing at the requester
(the seed allows 60; the appliance starts it on the model event)."""
OUTSIDE = "+4930123456"
"""An external caller's number, as the trunk asserts it."""
FROM_OUTSIDE = f"P-Asserted-Identity: <sip:{OUTSIDE}@127.0.0.1>\r\n"


def pending_ids(appliance):
    return [r.id for r in appliance.callbacks.pending()]


def wait_pending(reactor, appliance, check, what, timeout=15.0):
    """Wait on the store's change events until ``check(pending ids)`` holds."""
    return wait_until(
        reactor, appliance.store.subscribe, lambda: check(pending_ids(appliance)), what, timeout=timeout
    )


@pytest_twisted.inlineCallbacks
def registered(reactor, appliance, *phones):
    pbx = appliance.pbx
    for phone in phones:
        yield phone.register().done
    names = [p.extension for p in phones]
    yield wait_model(
        reactor, pbx, lambda: all(pbx.presence(n) is Presence.IDLE for n in names), f"{names} logged in"
    )


def offer(phone, target, key="5", pause_ms=1500, extra=""):
    """Call ``target``, take the offer with ``key`` (SIP INFO), wait for the appliance's hangup."""
    values = {"target": target, "key": key, "pause_ms": pause_ms, "extra": extra}
    return phone._run("cc_offer", values, timeout=30)


def take_recall(phone, target, to=None, ring_ms=1000):
    """The requester's phone answers the recall, which must show ``target`` and be
    addressed to ``to`` (a regular expression; the phone's own extension by default)."""
    values = {"expect_from": target, "expect_to": to or phone.extension, "ring_ms": ring_ms}
    return phone._run("cc_recall", values, "-trace_logs", local_port=phone.port)


def answer_expecting(phone, caller, hold_ms=800):
    """Answer one call on the phone's registered port; fail unless From is ``caller``."""
    return phone._run(
        "cc_answer_from",
        {"expect_from": caller, "ring_ms": 300, "hold_ms": hold_ms},
        "-trace_logs",
        local_port=phone.port,
    )


@pytest_twisted.inlineCallbacks
def busy_with(reactor, appliance, phone, other):
    """``other`` calls ``phone``, an office phone with call waiting, which answers;
    both stay in the call until the test ends it.  Returns (phone's run, other's run)."""
    pbx = appliance.pbx
    answering = phone.answer_waiting(ring_ms=100)
    values = {"target": phone.extension, "hold_ms": 150000, "name": f"Phone {other.extension}"}
    calling = other._run("call", values, timeout=180)
    both = (phone.extension, other.extension)
    yield wait_model(
        reactor, pbx, lambda: all(pbx.presence(n) is Presence.BUSY for n in both), f"{both} talking"
    )
    return answering, calling


@pytest_twisted.inlineCallbacks
def end_call_of(reactor, appliance, extension, held=None, waited=False):
    """Hang up ``extension``'s call; its phone gets a BYE.  With ``held`` (from
    `busy_with`) the office phone's run ends: by itself when a waiting call came
    (``waited``), else it is stopped; either way its port is free afterwards."""
    pbx = appliance.pbx
    for channel in pbx.channels_of(extension):
        yield appliance.ami.sendAction("Hangup", Channel=channel.name)
    yield wait_model(reactor, pbx, lambda: pbx.presence(extension) is Presence.IDLE, f"{extension} free")
    if held is not None:
        office, calling = held
        if waited:
            yield office.done
        else:
            yield calling.done
            office.kill()
            yield office.done


def channels_created(appliance, extension):
    """Names of the channels the PBX creates for ``extension`` from now on."""
    seen: list[str] = []
    before = {c.uniqueid for c in appliance.pbx.channels_of(extension)}

    def note(change):
        channel = change.channel if isinstance(change, ChannelChanged) else None
        if channel is not None and channel.endpoint == extension and channel.uniqueid not in before:
            if channel.name not in seen:
                seen.append(channel.name)

    appliance.pbx.subscribe(note)
    return seen


@pytest_twisted.inlineCallbacks
def test_busy_target_recalled_after_its_call(appliance, phones, reactor, recalls):
    """Call waiting off (the default): 200 is in a call on an office phone that could
    take a second call, yet 100's call to it rings nothing there and gets the offer
    at once; 100 takes it with key 5; when 200's call ends, 100 is rung within the
    bound, answers, and 200 rings with caller ID 100 and answers."""
    assert not appliance.settings.get(keys.CW_DEFAULT)
    p100, p200, p300 = phones("100"), phones("200"), phones("300")
    yield registered(reactor, appliance, p100, p200, p300)
    held = yield busy_with(reactor, appliance, p200, p300)
    at_200 = channels_created(appliance, "200")

    yield offer(p100, "200").done
    assert pending_ids(appliance) == ["100:200"]
    assert appliance.store.get("callbacks", "100:200")["target"] == "200"
    assert at_200 == []  # busy before anything rang

    requester = take_recall(p100, "200")
    freed = reactor.seconds()
    yield end_call_of(reactor, appliance, "200", held)
    assert p200.invites(held[0], "INVITE-WAITING") == []
    target = answer_expecting(p200, "100")
    yield wait_model(
        reactor,
        appliance.pbx,
        lambda: appliance.pbx.channels_of("100"),
        "recall ringing at 100",
        timeout=RECALL_BOUND,
    )
    assert reactor.seconds() - freed < RECALL_BOUND
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    recall = recalls[-1][1]
    assert (recall.requester, recall.target, recall.attempt) == ("100", "200", 1)


@pytest_twisted.inlineCallbacks
def test_busy_with_call_waiting_rings_then_offers(appliance, phones, reactor):
    """200 switches call waiting on with *43.  In a call, its office phone rings 102's
    call as a waiting call (180, no 486); after CW_RING_TIME unanswered while 200 is
    still in its call, 102 gets the offer, takes it, and is recalled when 200's call
    ends, then 200 rings with caller ID 102."""
    appliance.settings.set(keys.CW_RING_TIME, "4")
    p102, p202, p302 = phones("102"), phones("202"), phones("302")
    yield registered(reactor, appliance, p102, p202, p302)
    yield p202.call("*43", hold_ms=20000).done
    assert appliance.call_waiting.choice("202") is True
    held = yield busy_with(reactor, appliance, p202, p302)

    started = reactor.seconds()
    yield offer(p102, "202", pause_ms=1500).done
    assert reactor.seconds() - started >= 4.0  # it rang the waiting time first
    assert pending_ids(appliance) == ["102:202"]
    [waiting] = p202.invites(held[0], "INVITE-WAITING")
    assert "sip:102@" in waiting

    requester = take_recall(p102, "202")
    yield end_call_of(reactor, appliance, "202", held, waited=True)
    target = answer_expecting(p202, "102")
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    yield p202.call("%2343", hold_ms=20000).done  # "#43"
    assert appliance.call_waiting.choice("202") is False


@pytest_twisted.inlineCallbacks
def test_logged_out_target_recalled_when_it_registers(appliance, phones, reactor):
    """100 calls logged-out 201 and takes the offer; when 201 registers, 100 is
    rung and then 201 with caller ID 100."""
    p101, p201 = phones("101"), phones("201")
    yield registered(reactor, appliance, p101)
    yield p201.unregister().done
    yield wait_model(
        reactor, appliance.pbx, lambda: appliance.pbx.presence("201") is Presence.LOGGED_OUT, "201 out"
    )
    yield offer(p101, "201").done
    assert pending_ids(appliance) == ["101:201"]

    requester = take_recall(p101, "201")
    target = answer_expecting(p201, "101")
    yield p201.register().done
    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")


@pytest_twisted.inlineCallbacks
def test_dnd_by_feature_code_and_offer(appliance, phones, reactor):
    """*78 puts 202 on DND (the model shows it); a call to 202 gets the offer;
    #78 ends DND and 102 is recalled."""
    p102, p202 = phones("102"), phones("202")
    yield registered(reactor, appliance, p102, p202)
    pbx = appliance.pbx
    yield p202.call("*78", hold_ms=20000).done
    yield wait_model(reactor, pbx, lambda: pbx.presence("202") is Presence.DND, "202 on DND")
    yield offer(p102, "202").done
    assert pending_ids(appliance) == ["102:202"]

    requester = take_recall(p102, "202")
    yield p202.call("#78", hold_ms=20000).done
    target = answer_expecting(p202, "102")
    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results


@pytest_twisted.inlineCallbacks
def test_ccnr_after_the_caller_gave_up(appliance, phones, reactor, routed):
    """With CCNR on, 103 lets idle 203 ring for 5 s and hangs up (CANCEL), as people
    do; a plain *39 then requests the callback (CCNR: 203 is idle), and 103 is
    recalled once 203's next call ends, then 203 rings with caller ID 103."""
    appliance.settings.set(keys.CC_CCNR_ENABLED, "on")
    p103, p203, p303 = phones("103"), phones("203"), phones("303")
    yield registered(reactor, appliance, p103, p203, p303)
    ringing = p203._run("mc_ring", {}, local_port=p203.port)
    yield p103.give_up("203", ring_ms=5000).done
    yield ringing.done
    yield wait_until(
        reactor,
        appliance.call_extensions.on_finished,
        lambda: ("203", "internal", "CANCEL") in [(c.number, c.origin, c.status) for c in routed],
        "the route of the call 103 gave up on finished",
    )
    assert appliance.store.get("callbacks_ccnr", "103") == "203"
    assert pending_ids(appliance) == []
    yield p103.call("*39", hold_ms=20000).done
    assert pending_ids(appliance) == ["103:203"]
    assert appliance.callbacks.pending()[0].kind.value == "ccnr"

    held = yield busy_with(reactor, appliance, p203, p303)
    requester = take_recall(p103, "203")
    yield end_call_of(reactor, appliance, "203", held)
    target = answer_expecting(p203, "103")
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")


@pytest_twisted.inlineCallbacks
def test_busy_tone_then_key_recall(appliance, phones, reactor):
    """With CC_BUSY_TONE the caller of busy 201 hears the busy tone, not the
    announcement; key 5 during the tone still requests the callback, and 101 is
    recalled when 201's call ends."""
    appliance.settings.set(keys.CC_BUSY_TONE, "on")
    p101, p201, p301 = phones("101"), phones("201"), phones("301")
    yield registered(reactor, appliance, p101, p201, p301)
    held = yield busy_with(reactor, appliance, p201, p301)
    yield offer(p101, "201", pause_ms=800).done
    assert pending_ids(appliance) == ["101:201"]

    requester = take_recall(p101, "201")
    yield end_call_of(reactor, appliance, "201", held)
    target = answer_expecting(p201, "101")
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")


@pytest_twisted.inlineCallbacks
def test_offer_off_gives_plain_busy(appliance, phones, reactor):
    """With CC_OFFER off, a call to a busy line gets 486 Busy and no request is made."""
    appliance.settings.set(keys.CC_OFFER, "off")
    p104, p204, p304 = phones("104"), phones("204"), phones("304")
    yield registered(reactor, appliance, p104, p204, p304)
    held = yield busy_with(reactor, appliance, p204, p304)
    yield p104._run("cc_busy", {"target": "204", "code": 486, "extra": ""}, timeout=20).done
    assert pending_ids(appliance) == []
    yield end_call_of(reactor, appliance, "204", held)
    assert p204.invites(held[0], "INVITE-WAITING") == []


@pytest_twisted.inlineCallbacks
def test_recall_survives_appliance_restart(phones, reactor, tmp_path, lab):
    """The appliance is stopped after the request; a new one on the same store
    loads it and recalls when the target's call ends."""
    config = str(appliance_config(tmp_path, lab))
    first = tap.build(config, reactor)
    first.startService()
    try:
        yield wait_synced(reactor, first)
        p105, p205, p305 = phones("105"), phones("205"), phones("305")
        yield registered(reactor, first, p105, p205, p305)
        held = yield busy_with(reactor, first, p205, p305)
        yield offer(p105, "205").done
        assert pending_ids(first) == ["105:205"]
    finally:
        yield first.stopService()

    fresh = tap.build(config, reactor)
    fresh.startService()
    try:
        yield wait_synced(reactor, fresh)
        assert pending_ids(fresh) == ["105:205"]
        requester = take_recall(p105, "205")
        yield end_call_of(reactor, fresh, "205", held)
        target = answer_expecting(p205, "105")
        results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
        assert [ok for ok, _ in results] == [True] * 3, results
        yield wait_pending(reactor, fresh, lambda ids: not ids, "request done after the recall")
    finally:
        yield fresh.stopService()


@pytest_twisted.inlineCallbacks
def test_external_caller_recalled_over_the_trunk(appliance, phones, reactor, recalls):
    """With CC_EXTERNAL on, an outside caller (the trunk asserting +4930123456) takes
    the offer for busy 209; when 209 is free the recall goes out over the trunk to
    +4930123456, and once that is answered 209 rings with the outside number."""
    appliance.settings.set(keys.CC_EXTERNAL, "on")
    outside, p209, p309 = phones("trunk"), phones("209"), phones("309")
    yield registered(reactor, appliance, p209, p309, outside)  # the trunk's contact: the sipp UAS
    try:
        held = yield busy_with(reactor, appliance, p209, p309)
        yield offer(outside, "209", extra=FROM_OUTSIDE).done
        assert pending_ids(appliance) == [f"{OUTSIDE}:209"]
        assert appliance.store.get("callbacks", f"{OUTSIDE}:209")["origin"] == "external"

        requester = take_recall(outside, "209", to=re.escape(OUTSIDE))
        yield end_call_of(reactor, appliance, "209", held)
        target = answer_expecting(p209, re.escape(OUTSIDE))
        results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
        assert [ok for ok, _ in results] == [True] * 3, results
        yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
        recall = recalls[-1][1]
        assert (recall.requester, recall.target, recall.origin) == (OUTSIDE, "209", "external")
    finally:
        yield outside.unregister().done


@pytest_twisted.inlineCallbacks
def test_external_caller_gets_no_offer_without_cc_external(appliance, phones, reactor, routed):
    """With CC_EXTERNAL off (the default) an outside caller to busy 209 gets a plain
    486 Busy, and no request is made."""
    assert not appliance.settings.get(keys.CC_EXTERNAL)
    p209, p309 = phones("209"), phones("309")
    yield registered(reactor, appliance, p209, p309)
    held = yield busy_with(reactor, appliance, p209, p309)
    calling = phones("trunk")._run("cc_busy", {"target": "209", "code": 486, "extra": FROM_OUTSIDE})
    yield calling.done
    yield wait_until(
        reactor,
        appliance.call_extensions.on_finished,
        lambda: ("209", "external", "BUSY") in [(c.number, c.origin, c.status) for c in routed],
        "the external call's route finished",
    )
    assert pending_ids(appliance) == []
    yield end_call_of(reactor, appliance, "209", held)


@pytest_twisted.inlineCallbacks
def test_recall_survives_asterisk_restart(appliance, phones, lab, reactor, recalls):
    """107 requests a callback from busy 207; Asterisk restarts (207's call dies with
    it); after the AMI reconnect and resync the phones' registrations are back from
    astdb, the request is still open, and 107 is recalled, then 207 with caller ID 107."""
    pbx = appliance.pbx
    p107, p207, p307 = phones("107"), phones("207"), phones("307")
    yield registered(reactor, appliance, p107, p207, p307)
    held = yield busy_with(reactor, appliance, p207, p307)
    yield offer(p107, "207").done
    assert pending_ids(appliance) == ["107:207"]
    started = len(recalls)

    logins: list[float] = []
    appliance.ami.addConnectedHook(lambda _protocol: logins.append(reactor.seconds()))
    resyncs: list[float] = []
    pbx.subscribe(lambda change: resyncs.append(reactor.seconds()) if isinstance(change, Resynced) else None)
    requester = take_recall(p107, "207")
    yield deferToThread(lab.restart)
    yield wait_model(reactor, pbx, lambda: resyncs, "resync after the restart", timeout=30)
    for run in held:
        run.kill()  # their call ended with the old Asterisk
    yield held[0].done  # the office phone's port is free for the recall
    target = answer_expecting(p207, "107")
    assert pbx.endpoint("107").registered and pbx.endpoint("207").registered  # kept in astdb
    assert pending_ids(appliance) in (["107:207"], [])  # [] once the recall is already through

    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    # Asterisk hangs up 207's call while it stops, so a first recall may be tried
    # then and refused ("shutting down"): that one is lost, not counted, and the
    # recall that rang went out with the resync after the new AMI login.
    recalls = recalls[started:]
    assert {(r.request_id, r.attempt) for _, r in recalls} == {("107:207", 1)}, recalls
    assert logins[0] <= recalls[-1][0] <= resyncs[0] < logins[0] + RECALL_BOUND, (recalls, logins, resyncs)


@pytest_twisted.inlineCallbacks
def test_cancel_by_feature_code_prevents_recall(appliance, phones, reactor, recalls):
    """108 and then 109 request a callback from busy 208; 108 dials #39: its request
    leaves the engine and the store, and when 208 is free the engine recalls 109
    (next in line) and starts nothing for 108, whose phone sees no call."""
    pbx = appliance.pbx
    p108, p109, p208, p308 = phones("108"), phones("109"), phones("208"), phones("308")
    yield registered(reactor, appliance, p108, p109, p208, p308)
    held = yield busy_with(reactor, appliance, p208, p308)
    for requester in (p108, p109):
        yield offer(requester, "208").done
    assert pending_ids(appliance) == ["108:208", "109:208"]

    yield p108.call("%2339", hold_ms=20000).done  # "#39"
    assert pending_ids(appliance) == ["109:208"]
    assert appliance.store.get("callbacks", "108:208") is None
    # sipp ends with its BYE; Asterisk's Hangup event of that #39 call may come after.
    yield wait_model(reactor, pbx, lambda: not pbx.channels_of("108"), "108's #39 call gone")
    at_108: list[str] = []
    pbx.subscribe(
        lambda c: (
            at_108.append(c.channel.name)
            if isinstance(c, ChannelChanged) and c.channel.endpoint == "108"
            else None
        )
    )
    started = len(recalls)

    requester = take_recall(p109, "208")
    # The engine subscribed to the model first: once the test sees 208 free, the
    # engine has handled that event and made every recall decision it will make.
    yield end_call_of(reactor, appliance, "208", held)
    target = answer_expecting(p208, "109")
    assert [r.request_id for _, r in recalls[started:]] == ["109:208"]
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "109's request done after the recall")
    assert [r.request_id for _, r in recalls[started:]] == ["109:208"]
    assert at_108 == []


@pytest_twisted.inlineCallbacks
def test_wait_time_measured_at_the_phones(appliance, phones, reactor):
    """CC_WAIT_TIME 5: the recall rings at requester 106 for 5 s (its INVITE to the
    CANCEL, on the phone's clock), then the retry policy keeps the request waiting
    30 s.  CC_TARGET_RING_TIME 6: once requester 105 answered, target 205 rings 6 s."""
    appliance.settings.set_many({keys.CC_WAIT_TIME: "5", keys.CC_TARGET_RING_TIME: "6"})
    p105, p106, p205, p206, p305 = (phones(n) for n in ("105", "106", "205", "206", "305"))
    yield registered(reactor, appliance, p105, p106, p205, p206, p305)

    appliance.callbacks.engine.request("106", "206")  # 206 is free: recall at once
    ringing = p106.ring_unanswered()
    yield ringing.done
    rang = p106.rang_seconds(ringing)
    assert 4.5 <= rang < 7.0, rang  # the default would be 20 s
    yield wait_pending(
        reactor,
        appliance,
        lambda _ids: appliance.callbacks.engine.get("106:206").state.value == "waiting",
        "the unanswered recall reported",
    )
    request = appliance.callbacks.engine.get("106:206")
    assert request.attempts == 1
    assert 25.0 <= request.not_before - reactor.seconds() <= 30.0  # retried after 30 s
    appliance.callbacks.engine.cancel("106")

    held = yield busy_with(reactor, appliance, p205, p305)
    appliance.callbacks.engine.request("105", "205")
    requester = take_recall(p105, "205", ring_ms=300)
    yield end_call_of(reactor, appliance, "205", held)
    target = p205.ring_unanswered()
    yield target.done
    rang = p205.rang_seconds(target)
    assert 5.5 <= rang < 8.0, rang  # the old fixed ring time was 60 s
    assert "sip:105@" in p205.invites(target)[0]
    results = yield DeferredList([requester.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 2, results


def display_name(from_header: str) -> str:
    """The display name of a From header value."""
    match = re.match(r'\s*"((?:[^"\\]|\\.)*)"', from_header)
    return match.group(1) if match else ""


@pytest_twisted.inlineCallbacks
def test_one_name_per_person(appliance, phones, reactor):
    """The directory names 100 "Anna Berger" and 200 "Ben Cole": a plain call from 100
    shows "Anna Berger" (not the phone's "Lab 100"), a forward display shows it too,
    and in the recall 100's phone shows "Ben Cole" and 200's shows "Anna Berger"."""
    for ext, name in (("100", "Anna Berger"), ("200", "Ben Cole"), ("201", "Nutzer 201")):
        appliance.directory.put_user(User(ext, name))
    appliance.forwarding.forwards.set("201", Forward("unconditional", "301"))
    p100, p200, p300, p301 = (phones(n) for n in ("100", "200", "300", "301"))
    yield registered(reactor, appliance, p100, p200, p300, p301)

    plain = answer_expecting(p300, "100", hold_ms=300)
    yield DeferredList([plain.done, p100.call("300", hold_ms=5000).done], consumeErrors=True)
    forwarded = answer_expecting(p301, "100", hold_ms=300)
    yield DeferredList([forwarded.done, p100.call("201", hold_ms=5000).done], consumeErrors=True)
    assert [display_name(f) for f in p300.invites(plain)] == ["Anna Berger"]
    assert [display_name(f) for f in p301.invites(forwarded)] == ["Uml. für Nutzer 201: Anna Berger"]

    held = yield busy_with(reactor, appliance, p200, p300)
    yield offer(p100, "200").done
    requester = take_recall(p100, "200")
    yield end_call_of(reactor, appliance, "200", held)
    target = answer_expecting(p200, "100")
    results = yield DeferredList([requester.done, target.done, held[1].done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 3, results
    assert [display_name(f) for f in p100.invites(requester)] == ["Ben Cole"]
    assert [display_name(f) for f in p200.invites(target)] == ["Anna Berger"]
