"""Callback and click to call from the browser, with real calls in the Asterisk lab.

User 101 asks on the page for a callback to 201, who is in a real call; when
that call ends the appliance rings 101, then 201.  Then 101 clicks "Call" for
202: 101's phone rings first, and once answered 202 rings with caller ID 101.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks

from appliance.directory import User
from appliance.pbx import Presence
from tests.browser.conftest import Running, log_in, reactor, screenshot
from tests.browser.test_lab_forward import close_all, hang_up_all, registered
from tests.e2e.phones import Phone, SippRun
from tests.e2e.waiting import wait_model, wait_until

pytestmark = pytest.mark.e2e


def answering(phone: Phone, expect_from: str, ring_ms: int = 300) -> SippRun:
    """Answer one call whose From is ``expect_from``; accept re-INVITEs until the BYE."""
    values = {"expect_from": expect_from, "expect_to": phone.extension, "ring_ms": ring_ms}
    return phone._run("cc_recall", values, local_port=phone.port)


def test_callback_and_click_to_call_from_the_browser(page: Page, on_lab: Running) -> None:
    """A callback requested in Chromium for a busy line is recalled after that call;
    "Call" rings the user's phone, then the number, which sees the user's number."""
    appliance = on_lab.appliance
    pbx = appliance.pbx
    on_lab.add_user(User("101", "Clara Caller", language="en"), "caller-secret")
    for extension in ("201", "202", "301"):
        on_lab.call(appliance.directory.put_user, User(extension, f"Lab {extension}", language="en"))
    assert on_lab.lab is not None
    ports = on_lab.lab.ports
    numbers = ("101", "201", "301", "202", "201")
    user, busy, other, called, again = (Phone(reactor, ports, n) for n in numbers)
    runs: dict[str, SippRun] = {}

    @inlineCallbacks
    def prepare() -> Any:
        for phone in (user, busy, other, called):
            yield registered(on_lab, phone)
        runs["busy"] = busy.answer_waiting(ring_ms=100)
        runs["other"] = other._run(
            "call", {"target": "201", "hold_ms": 120000, "name": "Lab 301"}, timeout=150
        )
        yield wait_model(
            reactor, pbx, lambda: pbx.presence("201") is Presence.BUSY, "201 in a call", timeout=15
        )

    try:
        on_lab.call(prepare)
        log_in(page, on_lab, "101", "caller-secret")
        page.click("nav >> text=Callbacks")
        page.fill("#request-number", "201")
        page.click("form.request-form button[type=submit]")
        expect(page.locator("#request-outcome")).to_have_text("Callback requested.")
        screenshot(page, "40-lab-callback-requested")
        assert [r.id for r in on_lab.call(appliance.callbacks.pending)] == ["101:201"]
        expect(page.locator("#callback-101-201")).to_be_visible()

        @inlineCallbacks
        def recall() -> Any:
            # 201 takes the recall on another port of its line, registered while busy:
            # the BYE that ends its first call (and any retransmission of it) goes to
            # the first port and never meets the answering phone.
            yield registered(on_lab, again)
            runs["target"] = again._run(
                "cc_answer_from",
                {"expect_from": "101", "ring_ms": 300, "hold_ms": 800},
                local_port=again.port,
            )
            runs["recall"] = answering(user, "201", ring_ms=1000)
            for channel in pbx.channels_of("201"):
                yield appliance.ami.sendAction("Hangup", Channel=channel.name)
            yield wait_model(reactor, pbx, lambda: pbx.presence("201") is Presence.IDLE, "201 free")
            results = yield DeferredList([runs["recall"].done, runs["target"].done], consumeErrors=True)
            return results

        results = on_lab.call(recall)
        assert [ok for ok, _ in results] == [True, True], results
        on_lab.call(
            lambda: wait_until(
                reactor,
                appliance.store.subscribe,
                lambda: not appliance.callbacks.pending(),
                "request done after the recall",
            )
        )

        def start_answering() -> None:
            runs["mine"] = answering(user, "202")
            runs["called"] = called._run(
                "cc_answer_from",
                {"expect_from": "101", "ring_ms": 300, "hold_ms": 800},
                local_port=called.port,
            )

        on_lab.call(start_answering)
        page.fill("#call-number", "202")
        page.click("form.call-form button[type=submit]")
        expect(page.locator("#call-outcome")).to_have_text("Your phone is ringing.")
        screenshot(page, "41-lab-click-to-call")

        def both() -> Deferred[Any]:
            return DeferredList([runs["mine"].done, runs["called"].done], consumeErrors=True)

        results = on_lab.call(both)
        assert [ok for ok, _ in results] == [True, True], results
    finally:
        on_lab.call(close_all, (user, busy, other, called, again))
        on_lab.call(hang_up_all, on_lab)
