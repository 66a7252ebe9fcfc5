"""Automatic callback end to end: sipp phones, the real Asterisk, the appliance in-process."""

from __future__ import annotations

import re

import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from appliance import settings as keys
from appliance import tap
from appliance.pbx import ChannelChanged, Presence, Resynced
from tests.e2e.conftest import appliance_config
from tests.e2e.waiting import wait_model, wait_synced, wait_until

RECALL_BOUND = 5.0
"""Seconds from the target being free to the recall ringing at the requester
(the seed allows 60; the appliance starts it on the model event)."""
OUTSIDE = "+4930123456"
"""An external caller's number, as the trunk asserts it."""
FROM_OUTSIDE = f"P-Asserted-Identity: <sip:{OUTSIDE}@127.0.0.1>\r\n"


def pending_ids(appliance):  # type: ignore[no-untyped-def]
    return [r.id for r in appliance.callbacks.pending()]


def wait_pending(reactor, appliance, check, what, timeout=15.0):  # type: ignore[no-untyped-def]
    """Wait on the store's change events until ``check(pending ids)`` holds."""
    return wait_until(
        reactor, appliance.store.subscribe, lambda: check(pending_ids(appliance)), what, timeout=timeout
    )


@pytest_twisted.inlineCallbacks
def registered(reactor, appliance, *phones):  # type: ignore[no-untyped-def]
    pbx = appliance.pbx
    for phone in phones:
        yield phone.register().done
    names = [p.extension for p in phones]
    yield wait_model(
        reactor, pbx, lambda: all(pbx.presence(n) is Presence.IDLE for n in names), f"{names} logged in"
    )


def offer(phone, target, key="5", pause_ms=1500, extra=""):  # type: ignore[no-untyped-def]
    """Call ``target``, take the offer with ``key`` (SIP INFO), wait for the appliance's hangup."""
    values = {"target": target, "key": key, "pause_ms": pause_ms, "extra": extra}
    return phone._run("cc_offer", values, timeout=30)


def take_recall(phone, target, to=None):  # type: ignore[no-untyped-def]
    """The requester's phone answers the recall, which must show ``target`` and be
    addressed to ``to`` (a regular expression; the phone's own extension by default)."""
    values = {"expect_from": target, "expect_to": to or phone.extension, "ring_ms": 200}
    return phone._run("cc_recall", values, local_port=phone.port)


def answer_expecting(phone, caller, hold_ms=800):  # type: ignore[no-untyped-def]
    """Answer one call on the phone's registered port; fail unless From is ``caller``."""
    return phone._run(
        "cc_answer_from",
        {"expect_from": caller, "ring_ms": 300, "hold_ms": hold_ms},
        local_port=phone.port,
    )


def refuse_busy(phone):  # type: ignore[no-untyped-def]
    """A phone in a call without call waiting: the next INVITE gets 486 Busy Here."""
    return phone._run("cc_reject", {"ring_ms": 0, "code": 486}, local_port=phone.port)


@pytest_twisted.inlineCallbacks
def busy_with(reactor, appliance, phone, other):  # type: ignore[no-untyped-def]
    """``phone`` calls ``other`` and stays in the call until the test ends it."""
    pbx = appliance.pbx
    answering = other.answer(ring_ms=100)
    calling = phone.call(other.extension, hold_ms=60000)
    both = (phone.extension, other.extension)
    yield wait_model(
        reactor, pbx, lambda: all(pbx.presence(n) is Presence.BUSY for n in both), f"{both} talking"
    )
    return answering, calling


@pytest_twisted.inlineCallbacks
def end_call_of(reactor, appliance, extension):  # type: ignore[no-untyped-def]
    """Hang up ``extension``'s peer; the phone gets a BYE and its call ends."""
    pbx = appliance.pbx
    for channel in pbx.channels_of(extension):
        yield appliance.ami.sendAction("Hangup", Channel=channel.name)
    yield wait_model(reactor, pbx, lambda: pbx.presence(extension) is Presence.IDLE, f"{extension} free")


@pytest_twisted.inlineCallbacks
def test_busy_target_recalled_after_its_call(appliance, phones, reactor):
    """100 calls busy 200, takes the offer with key 5; when 200's call ends, 100
    is rung within the bound, answers, and 200 rings with caller ID 100 and answers."""
    p100, p200, p300 = phones("100"), phones("200"), phones("300")
    yield registered(reactor, appliance, p100, p200, p300)
    held = yield busy_with(reactor, appliance, p200, p300)
    refusing = refuse_busy(p200)

    yield offer(p100, "200").done
    yield refusing.done
    assert pending_ids(appliance) == ["100:200"]
    assert appliance.store.get("callbacks", "100:200")["target"] == "200"

    requester = take_recall(p100, "200")
    target = answer_expecting(p200, "100")
    freed = reactor.seconds()
    yield end_call_of(reactor, appliance, "200")
    yield wait_model(
        reactor,
        appliance.pbx,
        lambda: appliance.pbx.channels_of("100"),
        "recall ringing at 100",
        timeout=RECALL_BOUND,
    )
    assert reactor.seconds() - freed < RECALL_BOUND
    results = yield DeferredList([requester.done, target.done, *[r.done for r in held]], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 4, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    recall = appliance.callbacks.originated[-1][1]
    assert (recall.requester, recall.target, recall.attempt) == ("100", "200", 1)


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
def test_ccnr_by_feature_code(appliance, phones, reactor):
    """With CCNR on, 103 calls 203 who does not answer; 103 dials *39 and is
    recalled after 203's next call ends."""
    appliance.settings.set(keys.CC_CCNR_ENABLED, "on")
    p103, p203, p303 = phones("103"), phones("203"), phones("303")
    yield registered(reactor, appliance, p103, p203, p303)
    p203._run("cc_reject", {"ring_ms": 500, "code": 480}, local_port=p203.port)
    # the no-answer ends in busy
    yield p103._run("cc_busy", {"target": "203", "code": 480, "extra": ""}, timeout=20).done
    assert appliance.store.get("callbacks_ccnr", "103") == "203"
    assert pending_ids(appliance) == []
    yield p103.call("*39", hold_ms=20000).done
    assert pending_ids(appliance) == ["103:203"]

    held = yield busy_with(reactor, appliance, p203, p303)
    requester = take_recall(p103, "203")
    target = answer_expecting(p203, "103")
    yield end_call_of(reactor, appliance, "203")
    results = yield DeferredList([requester.done, target.done, *[r.done for r in held]], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 4, results


@pytest_twisted.inlineCallbacks
def test_offer_off_gives_plain_busy(appliance, phones, reactor):
    """With CC_OFFER off, a call to a busy line gets 486 Busy and no request is made."""
    appliance.settings.set(keys.CC_OFFER, "off")
    p104, p204, p304 = phones("104"), phones("204"), phones("304")
    yield registered(reactor, appliance, p104, p204, p304)
    held = yield busy_with(reactor, appliance, p204, p304)
    refusing = refuse_busy(p204)
    yield p104._run("cc_busy", {"target": "204", "code": 486, "extra": ""}, timeout=20).done
    yield refusing.done
    assert pending_ids(appliance) == []
    yield end_call_of(reactor, appliance, "204")
    yield DeferredList([r.done for r in held], consumeErrors=True)


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
        refusing = refuse_busy(p205)
        yield offer(p105, "205").done
        yield refusing.done
        assert pending_ids(first) == ["105:205"]
    finally:
        yield first.stopService()

    fresh = tap.build(config, reactor)
    fresh.startService()
    try:
        yield wait_synced(reactor, fresh)
        assert pending_ids(fresh) == ["105:205"]
        requester = take_recall(p105, "205")
        target = answer_expecting(p205, "105")
        yield end_call_of(reactor, fresh, "205")
        results = yield DeferredList(
            [requester.done, target.done, *[r.done for r in held]], consumeErrors=True
        )
        assert [ok for ok, _ in results] == [True] * 4, results
        yield wait_pending(reactor, fresh, lambda ids: not ids, "request done after the recall")
    finally:
        yield fresh.stopService()


@pytest_twisted.inlineCallbacks
def test_request_expires_after_cc_timeout(appliance, phones, reactor):
    """With CC_TIMEOUT 1 minute the request is deleted about a minute after it was
    made, and the target's hangup afterwards starts no recall.  (The exact moment
    is covered by the engine tests with a Clock.)"""
    appliance.settings.set(keys.CC_TIMEOUT, "1")
    p106, p206, p306 = phones("106"), phones("206"), phones("306")
    yield registered(reactor, appliance, p106, p206, p306)
    held = yield busy_with(reactor, appliance, p206, p306)
    refusing = refuse_busy(p206)
    yield offer(p106, "206").done
    yield refusing.done
    made = appliance.callbacks.pending()[0].created
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request expired", timeout=75)
    assert 60.0 <= reactor.seconds() - made < 62.0
    started = len(appliance.callbacks.originated)
    yield end_call_of(reactor, appliance, "206")
    yield DeferredList([r.done for r in held], consumeErrors=True)
    assert len(appliance.callbacks.originated) == started
    assert not appliance.pbx.channels_of("106")


@pytest_twisted.inlineCallbacks
def test_external_caller_recalled_over_the_trunk(appliance, phones, reactor):
    """With CC_EXTERNAL on, an outside caller (the trunk asserting +4930123456) takes
    the offer for busy 209; when 209 is free the recall goes out over the trunk to
    +4930123456, and once that is answered 209 rings with the outside number."""
    appliance.settings.set(keys.CC_EXTERNAL, "on")
    outside, p209, p309 = phones("trunk"), phones("209"), phones("309")
    yield registered(reactor, appliance, p209, p309, outside)  # the trunk's contact: the sipp UAS
    try:
        held = yield busy_with(reactor, appliance, p209, p309)
        refusing = refuse_busy(p209)
        yield offer(outside, "209", extra=FROM_OUTSIDE).done
        yield refusing.done
        assert pending_ids(appliance) == [f"{OUTSIDE}:209"]
        assert appliance.store.get("callbacks", f"{OUTSIDE}:209")["origin"] == "external"

        requester = take_recall(outside, "209", to=re.escape(OUTSIDE))
        target = answer_expecting(p209, re.escape(OUTSIDE))
        yield end_call_of(reactor, appliance, "209")
        results = yield DeferredList(
            [requester.done, target.done, *[r.done for r in held]], consumeErrors=True
        )
        assert [ok for ok, _ in results] == [True] * 4, results
        yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
        recall = appliance.callbacks.originated[-1][1]
        assert (recall.requester, recall.target, recall.origin) == (OUTSIDE, "209", "external")
    finally:
        yield outside.unregister().done


@pytest_twisted.inlineCallbacks
def test_external_caller_gets_no_offer_without_cc_external(appliance, phones, reactor):
    """With CC_EXTERNAL off (the default) an outside caller to busy 209 gets a plain
    486 Busy, and no request is made."""
    assert not appliance.settings.get(keys.CC_EXTERNAL)
    p209, p309 = phones("209"), phones("309")
    yield registered(reactor, appliance, p209, p309)
    held = yield busy_with(reactor, appliance, p209, p309)
    refusing = refuse_busy(p209)
    calling = phones("trunk")._run("cc_busy", {"target": "209", "code": 486, "extra": FROM_OUTSIDE})
    yield calling.done
    yield refusing.done
    router = appliance.router
    yield wait_until(
        reactor,
        router.subscribe,
        lambda: ("209", "external", "BUSY") in router.recent,
        "the external call's route finished",
    )
    assert pending_ids(appliance) == []
    yield end_call_of(reactor, appliance, "209")
    yield DeferredList([r.done for r in held], consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_recall_survives_asterisk_restart(appliance, phones, lab, reactor):
    """107 requests a callback from busy 207; Asterisk restarts (207's call dies with
    it); after the AMI reconnect and resync the phones' registrations are back from
    astdb, the request is still open, and 107 is recalled, then 207 with caller ID 107."""
    pbx = appliance.pbx
    p107, p207, p307 = phones("107"), phones("207"), phones("307")
    yield registered(reactor, appliance, p107, p207, p307)
    held = yield busy_with(reactor, appliance, p207, p307)
    refusing = refuse_busy(p207)
    yield offer(p107, "207").done
    yield refusing.done
    assert pending_ids(appliance) == ["107:207"]
    started = len(appliance.callbacks.originated)

    logins: list[float] = []
    appliance.ami.addConnectedHook(lambda _protocol: logins.append(reactor.seconds()))
    resyncs: list[float] = []
    pbx.subscribe(lambda change: resyncs.append(reactor.seconds()) if isinstance(change, Resynced) else None)
    requester = take_recall(p107, "207")
    target = answer_expecting(p207, "107")
    yield deferToThread(lab.restart)
    yield wait_model(reactor, pbx, lambda: resyncs, "resync after the restart", timeout=30)
    for run in held:
        run.kill()  # their call ended with the old Asterisk
    assert pbx.endpoint("107").registered and pbx.endpoint("207").registered  # kept in astdb
    assert pending_ids(appliance) in (["107:207"], [])  # [] once the recall is already through

    results = yield DeferredList([requester.done, target.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "request done after the recall")
    # Asterisk hangs up 207's call while it stops, so a first recall may be tried
    # then and refused ("shutting down"): that one is lost, not counted, and the
    # recall that rang went out with the resync after the new AMI login.
    recalls = appliance.callbacks.originated[started:]
    assert {(r.request_id, r.attempt) for _, r in recalls} == {("107:207", 1)}, recalls
    assert logins[0] <= recalls[-1][0] <= resyncs[0] < logins[0] + RECALL_BOUND, (recalls, logins, resyncs)


@pytest_twisted.inlineCallbacks
def test_cancel_by_feature_code_prevents_recall(appliance, phones, reactor):
    """108 and then 109 request a callback from busy 208; 108 dials #39: its request
    leaves the engine and the store, and when 208 is free the engine recalls 109
    (next in line) and starts nothing for 108, whose phone sees no call."""
    pbx = appliance.pbx
    p108, p109, p208, p308 = phones("108"), phones("109"), phones("208"), phones("308")
    yield registered(reactor, appliance, p108, p109, p208, p308)
    held = yield busy_with(reactor, appliance, p208, p308)
    for requester in (p108, p109):
        refusing = refuse_busy(p208)
        yield offer(requester, "208").done
        yield refusing.done
    assert pending_ids(appliance) == ["108:208", "109:208"]

    yield p108.call("%2339", hold_ms=20000).done  # "#39"
    assert pending_ids(appliance) == ["109:208"]
    assert appliance.store.get("callbacks", "108:208") is None
    at_108: list[str] = []
    pbx.subscribe(
        lambda c: (
            at_108.append(c.channel.name)
            if isinstance(c, ChannelChanged) and c.channel.endpoint == "108"
            else None
        )
    )
    started = len(appliance.callbacks.originated)

    requester = take_recall(p109, "208")
    target = answer_expecting(p208, "109")
    # The engine subscribed to the model first: once the test sees 208 free, the
    # engine has handled that event and made every recall decision it will make.
    yield end_call_of(reactor, appliance, "208")
    assert [r.request_id for _, r in appliance.callbacks.originated[started:]] == ["109:208"]
    results = yield DeferredList([requester.done, target.done, *[r.done for r in held]], consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 4, results
    yield wait_pending(reactor, appliance, lambda ids: not ids, "109's request done after the recall")
    assert [r.request_id for _, r in appliance.callbacks.originated[started:]] == ["109:208"]
    assert at_108 == []
