"""Our AMI client and FastAGI server against the real Asterisk."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, inlineCallbacks

NASTY_VALUES = [
    "two words",
    'say "hello"',
    'back\\slash and \\" mix',
    "  leading and trailing  ",
    "Müller-Lüdenscheidt ß",
    "semi;colon,comma|pipe",
    "",
]


@pytest_twisted.inlineCallbacks
def test_set_variable_round_trip(appliance, phones, reactor):
    """SET VARIABLE values with spaces, quotes and backslashes arrive intact in
    Asterisk: read back with GET VARIABLE and through the dialplan's own LEN()."""
    seen: Deferred[list[tuple[str, str | None, str | None]]] = Deferred()

    @inlineCallbacks
    def probe(agi):
        results = []
        for index, value in enumerate(NASTY_VALUES):
            name = f"PROBE{index}"
            yield agi.setVariable(name, value)
            back = yield agi.getVariable(name)
            length = yield agi.getFullVariable(f"${{LEN(${{{name}}})}}")
            results.append((value, back, length))
        seen.callback(results)

    appliance.routes["call"] = probe
    caller = phones("103")
    caller.call("299", hold_ms=100)
    results = yield seen
    for value, back, length in results:
        assert back == value, (value, back)
        assert length == str(len(value.encode())), (value, length)  # LEN() counts UTF-8 bytes


@pytest_twisted.inlineCallbacks
def test_ami_command_and_lists(appliance):
    """Command output and event lists come back from the real Asterisk."""
    lines = yield appliance.ami.command("core show version")
    assert any(line.startswith("Asterisk 22") for line in lines), lines
    endpoints = yield appliance.ami.collectEvents("PJSIPShowEndpoints")
    names = {event.get("ObjectName") for event in endpoints}
    assert {"100", "200", "309", "trunk"} <= names


@pytest_twisted.inlineCallbacks
def test_concurrent_actions_each_get_their_reply(appliance):
    """Twenty concurrent Getvar actions each get their own variable's value."""
    from twisted.internet.defer import gatherResults

    yield gatherResults(
        [appliance.ami.sendAction("Setvar", Variable=f"GLOBAL(APPL_T{i})", Value=f"v{i}") for i in range(20)]
    )
    replies = yield gatherResults(
        [appliance.ami.sendAction("Getvar", Variable=f"GLOBAL(APPL_T{i})") for i in range(20)]
    )
    assert [reply.get("Value") for reply in replies] == [f"v{i}" for i in range(20)]


@pytest_twisted.inlineCallbacks
def test_unread_events_filtered_out(appliance, phones, reactor, routed):
    """After login the appliance's AMI session gets none of the unread events
    (VarSet, Newexten, bridges, AGI …; issue 19: they were most of the parsing
    before the events that matter),
    while a call still brings every event the PBX model reads."""
    from appliance.asterisk.eventfilter import UNREAD_EVENTS
    from appliance.pbx import Presence
    from tests.e2e.calls import route_finished
    from tests.e2e.waiting import wait_model

    names: list[str] = []
    appliance.ami.subscribe(None, lambda event: names.append(event.get("Event") or ""))
    pbx = appliance.pbx
    callee, caller = phones("205"), phones("105")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("205") is Presence.IDLE, "205 logged in")
    callee.answer(ring_ms=50)
    yield caller.call("205", hold_ms=300).done
    yield route_finished(reactor, appliance, routed)
    yield wait_model(reactor, pbx, lambda: pbx.presence("205") is Presence.IDLE, "205 free again")
    assert {"Newchannel", "Newstate", "DialBegin", "DialEnd", "Hangup", "DeviceStateChange"} <= set(names)
    assert not set(UNREAD_EVENTS) & set(names), sorted(set(names))
