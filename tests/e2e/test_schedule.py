"""Forward schedules and announcements end to end: a schedule edited over the API to include
"now" lets a lab call follow the forward; edited to exclude "now" it does not."""

from __future__ import annotations

import wave
from datetime import datetime, timedelta

import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.directory import Group, User
from appliance.forwarding.records import Forward
from tests.e2e.calls import answered_call, call_finished, lines_rung, registered_here, route_finished
from tests.e2e.test_api import call_api
from tests.unit.test_recordings import tone


def window(now: datetime, start: timedelta, end: timedelta) -> dict[str, object]:
    """A window on every day, from now+start to now+end (over midnight if it wraps)."""
    return {
        "windows": [
            {"start": (now + start).strftime("%H:%M"), "end": (now + end).strftime("%H:%M")},
        ]
    }


@pytest_twisted.inlineCallbacks
def test_scheduled_forward_applies_inside_its_window_only(appliance, phones, reactor):
    """203 forwards to 303 on a schedule: inside the window 103's call rings 303;
    with the window moved away from now, the same call rings 203 itself."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    for ext in ("103", "203", "303"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    token, _ = appliance.api_tokens.create("203", "")
    now = appliance.forwarding.now()

    code, body = yield call_api(
        base, "PUT", "/api/v1/users/me/forwards", token, {"kind": "unconditional", "target": "303"}
    )
    assert code == 200, body
    path = "/api/v1/users/me/schedules/unconditional/all"
    code, body = yield call_api(
        base, "PUT", path, token, window(now, timedelta(minutes=-5), timedelta(minutes=30))
    )
    assert code == 200, body

    rang = lines_rung(appliance)
    p103, p203, p303 = phones("103"), phones("203"), phones("303")
    yield registered_here(reactor, appliance, p203)
    yield answered_call(reactor, appliance, p103, "203", p303)
    assert "303" in rang and "203" not in rang, rang
    answering_303 = p303.answer(ring_ms=200)  # would take a wrongly forwarded call
    yield call_finished(reactor, appliance, "103")

    del rang[:]
    code, body = yield call_api(base, "PUT", path, token, window(now, timedelta(hours=2), timedelta(hours=3)))
    assert code == 200, body
    yield answered_call(reactor, appliance, p103, "203", p203)
    assert "203" in rang and "303" not in rang, rang
    answering_303.kill()


@pytest_twisted.inlineCallbacks
def test_office_closed_forwards_a_group_only_outside_office_hours(appliance, phones, reactor):
    """Group 640 (member 204) forwards unconditionally to 304 on an "office closed"
    schedule: while it covers now, 104's call to the group rings 304; with the
    schedule moved away from now, the same call rings the member."""
    for ext in ("104", "204", "304"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    appliance.directory.put_group(Group("Zentrale", "640", ("204",)))
    appliance.forwarding.forwards.set("640", Forward("unconditional", "304"))
    now = appliance.forwarding.now()
    closed = window(now, timedelta(minutes=-5), timedelta(minutes=30))
    appliance.schedules.set("640", "unconditional", "all", closed)

    rang = lines_rung(appliance)
    p104, p204, p304 = phones("104"), phones("204"), phones("304")
    yield registered_here(reactor, appliance, p204)
    yield answered_call(reactor, appliance, p104, "640", p304)
    assert "304" in rang and "204" not in rang, rang
    answering_304 = p304.answer(ring_ms=200)  # would take a wrongly forwarded call
    yield call_finished(reactor, appliance, "104")

    del rang[:]
    appliance.schedules.set(
        "640", "unconditional", "all", window(now, timedelta(hours=2), timedelta(hours=3))
    )
    yield answered_call(reactor, appliance, p104, "640", p204)
    assert "204" in rang and "304" not in rang, rang
    answering_304.kill()


@pytest_twisted.inlineCallbacks
def test_office_closed_plays_the_announcement_and_hangs_up(appliance, lab, phones, reactor, routed):
    """Group 641 (member 205) forwards to the "outside business hours" announcement on
    an "office closed" schedule: 105's call is answered, hears the whole announcement
    and is hung up by the appliance, and the member never rings.  With the schedule
    moved away from now, the same call rings the member."""
    for ext in ("105", "205"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    appliance.directory.put_group(Group("Empfang", "641", ("205",)))
    appliance.forwarding.forwards.set("641", Forward("unconditional", "announcement:closed"))
    now = appliance.forwarding.now()
    appliance.schedules.set(
        "641", "unconditional", "all", window(now, timedelta(minutes=-5), timedelta(minutes=30))
    )
    sound = appliance.announcements.sound("closed")
    with wave.open(str(lab.root / "usr/share/asterisk/sounds" / f"{sound}.wav")) as played:
        length = played.getnframes() / played.getframerate()
    log_start = lab.logfile.stat().st_size

    rang = lines_rung(appliance)
    p105, p205 = phones("105"), phones("205")
    yield registered_here(reactor, appliance, p205)
    answering_205 = p205.answer(ring_ms=200)  # would take a call that rang the member
    listening = p105.listen("641", listen_ms=int(length * 1000) + 15000)
    yield listening.done
    heard = p105.listened_seconds(listening)
    assert length <= heard < length + 5, (heard, length)
    yield route_finished(reactor, appliance, routed)
    assert [(o.number, o.status, o.dials) for o in routed] == [("641", "ANNOUNCED", ())]
    assert "205" not in rang, rang
    with lab.logfile.open("rb") as log:
        log.seek(log_start)
        assert f"Playing '{sound}." in log.read().decode("utf-8", "replace")

    del rang[:]
    appliance.schedules.set(
        "641", "unconditional", "all", window(now, timedelta(hours=2), timedelta(hours=3))
    )
    calling = p105.call("641", hold_ms=300)
    yield DeferredList([answering_205.done, calling.done], fireOnOneErrback=True, consumeErrors=True)
    assert "205" in rang, rang


@pytest_twisted.inlineCallbacks
def test_nobody_answers_the_group_then_its_own_recording_plays(appliance, lab, phones, reactor, routed):
    """The admin's own recording (a 3 s, 16 kHz WAV, written where the lab's Asterisk
    reads it) ends calls group 642 did not take: member 206 rings its 5 s, then 106
    hears the whole recording and is hung up."""
    for ext in ("106", "206"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    appliance.directory.put_group(Group("Service", "642", ("206",), ring_seconds=5))
    recording = yield appliance.recordings.add("Betriebsferien", tone(3, rate=16000))
    appliance.forwarding.forwards.set("642", Forward("noanswer", f"announcement:{recording.name}", seconds=5))
    log_start = lab.logfile.stat().st_size

    p106, p206 = phones("106"), phones("206")
    yield registered_here(reactor, appliance, p206)
    ringing = p206.ring_unanswered()
    listening = p106.listen("642", listen_ms=30000)
    yield DeferredList([ringing.done, listening.done], fireOnOneErrback=True, consumeErrors=True)
    assert 4.5 < p206.rang_seconds(ringing) < 7, p206.rang_seconds(ringing)
    heard = p106.listened_seconds(listening)
    assert 3.0 <= heard < 3.0 + 5, heard
    yield route_finished(reactor, appliance, routed)
    assert [(o.number, o.status) for o in routed] == [("642", "ANNOUNCED")]
    _, played_from = lab.recordings
    with lab.logfile.open("rb") as log:
        log.seek(log_start)
        assert f"Playing '{played_from}/{recording.name}." in log.read().decode("utf-8", "replace")
