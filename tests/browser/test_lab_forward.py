"""A forward set in the browser is followed by a real SIP call in the Asterisk lab.

The appliance of ``conftest.on_lab`` talks AMI and FastAGI to the lab; sipp
phones run from the reactor thread (``Running.call``), and the test waits on
their Deferreds, which sipp's own timeout bounds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from twisted.internet.defer import Deferred, DeferredList, gatherResults

from appliance.directory import User
from appliance.forwarding.records import Forward
from appliance.pbx import ChannelChanged
from tests.browser.conftest import Running, log_in, reactor, screenshot
from tests.e2e.phones import Phone, SippRun
from tests.e2e.waiting import wait_model

pytestmark = pytest.mark.e2e


def registered(running: Running, phone: Phone) -> Deferred[Any]:
    """Register ``phone`` and fire once the PBX model shows it at its own port."""
    pbx = running.appliance.pbx

    def there() -> bool:
        return any(f":{phone.port}" in uri for uri in pbx.endpoint(phone.extension).contacts)

    done = phone.register().done
    done.addCallback(lambda _: wait_model(reactor, pbx, there, f"{phone.extension} registered"))
    return done


def invite_from(phone: Phone, sipp: SippRun) -> list[str]:
    """The From header of every INVITE the answering scenario logged."""
    lines = []
    for path in sorted(Path(phone.workdir).glob(f"{sipp.name}_*_logs.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("INVITE-FROM "):
                lines.append(line.removeprefix("INVITE-FROM "))
    return lines


def close_all(phones: Iterable[Phone]) -> None:
    """Close each phone (its sipp runs are killed, its port given back)."""
    for phone in phones:
        phone.close()


def hang_up_all(running: Running) -> Deferred[Any]:
    """End what killed sipp phones left up, so the lab is idle for the next suite."""
    appliance = running.appliance
    pbx = appliance.pbx
    hangups = [
        appliance.ami.sendAction("Hangup", Channel=channel.name).addErrback(lambda _: None)
        for channel in list(pbx.channels.values())
    ]
    done = gatherResults(hangups)
    done.addCallback(lambda _: wait_model(reactor, pbx, lambda: not pbx.channels, "all calls ended"))
    return done


def test_forward_set_in_the_browser_is_followed_by_a_real_call(page: Page, on_lab: Running) -> None:
    """User 200 sets "always forward to 300" on the page; 100 calls 200 and 300's phone rings and answers."""
    appliance = on_lab.appliance
    for extension in ("100", "300"):
        on_lab.call(appliance.directory.put_user, User(extension, f"Lab {extension}", language="en"))
    on_lab.add_user(User("200", "Forwarding User", language="en"), "forwarder-secret")
    on_lab.call(appliance.forwarding.forwards.clear, "200")
    assert on_lab.lab is not None
    ports = on_lab.lab.ports
    target = Phone(reactor, ports, "300")
    caller = Phone(reactor, ports, "100")
    seen: list[str] = []

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and change.channel.endpoint == "300":
            seen.append(change.channel.name)

    unsubscribe = on_lab.call(appliance.pbx.subscribe, record)
    try:
        on_lab.call(registered, on_lab, target)

        log_in(page, on_lab, "200", "forwarder-secret")
        page.click("nav >> text=Forwards")
        page.select_option("#kind", "unconditional")
        page.select_option("#scope", "all")
        page.fill("#target", "300")
        page.click("form.forward-form button[type=submit]")
        expect(page.get_by_role("status")).to_have_text("Forward saved.")
        screenshot(page, "30-lab-forward-set")
        assert on_lab.call(appliance.forwarding.forwards.of, "200") == [Forward("unconditional", "300")]

        runs: dict[str, SippRun] = {}

        def call() -> Deferred[Any]:
            runs["answer"] = target._run(
                "fwd_answer", {"ring_ms": 200}, "-trace_logs", local_port=target.port
            )
            runs["call"] = caller.call("200", hold_ms=500)
            both = DeferredList([runs["answer"].done, runs["call"].done], consumeErrors=True)
            return both.addTimeout(120, reactor)  # sipp's own -timeout is 60 s: never hang the suite

        results = on_lab.call(call)
        assert [ok for ok, _ in results] == [True, True], results
        [from_header] = invite_from(target, runs["answer"])
        assert "sip:100@" in from_header, from_header
        assert seen, "the PBX model saw no channel of 300"
    finally:
        on_lab.call(unsubscribe)
        on_lab.call(close_all, (target, caller))
        on_lab.call(hang_up_all, on_lab)
