"""A group made on the admin page in Chromium rings its members on a real call.

The appliance of ``conftest.on_lab`` talks AMI and FastAGI to the Asterisk lab
(instance ``APPLIANCE_TEST_LAB``); sipp phones run from the reactor thread and
the test waits on their Deferreds, which sipp's own timeout bounds.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from twisted.internet.defer import Deferred, DeferredList

from appliance.directory import Group, User
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, reactor, screenshot
from tests.browser.test_lab_forward import hang_up_all, invite_from, registered
from tests.e2e.phones import Phone, SippRun
from tests.unit.test_recordings import tone

pytestmark = pytest.mark.e2e

GROUP_NUMBER = "600"


@pytest.fixture
def page_without_javascript(browser: Browser) -> Iterator[Page]:
    """The group pages are plain forms: they must work with JavaScript off."""
    context = browser.new_context(
        locale="en-US", viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_group_created_in_the_browser_rings_its_members(
    page_without_javascript: Page, on_lab: Running
) -> None:
    """The admin creates group 600 (200 then 201, ring all) with JavaScript off: a bad ring
    time is refused beside its field, the fixed form is saved, the list shows both members
    logged in, and 100 calling 600 rings both phones; 200 answers."""
    page = page_without_javascript
    appliance = on_lab.appliance
    for extension, name in (("100", "Lab Caller"), ("200", "Anna Vertrieb"), ("201", "Ben Vertrieb")):
        on_lab.call(appliance.directory.put_user, User(extension, name, language="en"))
    for group in on_lab.call(appliance.directory.groups):
        on_lab.call(appliance.directory.delete_group, group.name)
    for number in ("200", "201", GROUP_NUMBER):  # earlier tests of the suite set forwards
        on_lab.call(appliance.forwarding.forwards.clear, number)
    on_lab.call(appliance.web.credentials.set_password, "admin", ADMIN_PASSWORD)
    assert on_lab.lab is not None
    ports = on_lab.lab.ports
    answering, ringing, caller = (Phone(reactor, ports, e) for e in ("200", "201", "100"))
    try:
        on_lab.call(registered, on_lab, answering)
        on_lab.call(registered, on_lab, ringing)

        log_in(page, on_lab, "admin", ADMIN_PASSWORD)
        page.click("nav >> text=Groups")
        page.get_by_role("link", name="Add group").click()
        page.fill("#name", "vertrieb")
        page.fill("#number", GROUP_NUMBER)
        page.fill("#members", "200\n201")
        page.select_option("#strategy", "ringall")
        page.fill("#ring_seconds", "twenty")
        page.click("form.group-form button[type=submit]")
        expect(page.locator("#error-ring_seconds")).to_have_text(
            "Ring time: “twenty” is not a whole number of seconds from 5 to 300."
        )
        expect(page.locator("#ring_seconds")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#members")).to_have_value("200\n201")
        screenshot(page, "40-lab-group-refused")
        assert on_lab.call(appliance.directory.groups) == []

        page.fill("#ring_seconds", "20")
        page.click("form.group-form button[type=submit]")
        expect(page.get_by_role("status")).to_have_text("Group saved.")
        screenshot(page, "41-lab-group-saved")
        saved = Group("vertrieb", GROUP_NUMBER, ("200", "201"), "ringall", 20, "")
        assert on_lab.call(appliance.directory.group_by_number, GROUP_NUMBER) == saved

        page.get_by_role("link", name="Call groups").click()
        for extension in ("200", "201"):
            expect(page.locator(f"#member-vertrieb-{extension} .state")).to_have_text("logged in")
        screenshot(page, "42-lab-group-list")

        runs: dict[str, SippRun] = {}

        def call() -> Deferred[Any]:
            runs["answer"] = answering._run(
                "fwd_answer", {"ring_ms": 300}, "-trace_logs", local_port=answering.port
            )
            runs["ring"] = ringing._run("fwd_ring", {}, "-trace_logs", local_port=ringing.port)
            runs["call"] = caller.call(GROUP_NUMBER, hold_ms=500)
            all_ended = DeferredList([run.done for run in runs.values()], consumeErrors=True)
            return all_ended.addTimeout(120, reactor)  # sipp's own -timeout is 60 s

        results = on_lab.call(call)
        assert [ok for ok, _ in results] == [True, True, True], results
        [answered_from] = invite_from(answering, runs["answer"])
        [rang_from] = invite_from(ringing, runs["ring"])
        assert "sip:100@" in answered_from, answered_from
        assert "sip:100@" in rang_from, rang_from
    finally:

        def close_all() -> None:
            for phone in (answering, ringing, caller):
                phone.close()

        on_lab.call(close_all)
        on_lab.call(hang_up_all, on_lab)


@pytest.fixture
def closed_group(on_lab: Running) -> Iterator[Phone]:
    """Group 600 "empfang" (member 200) without forwards, the admin's password set; yields
    caller 100's phone and hangs everything up afterwards."""
    appliance = on_lab.appliance
    for extension, name in (("100", "Lab Caller"), ("200", "Anna Vertrieb")):
        on_lab.call(appliance.directory.put_user, User(extension, name, language="en"))
    for group in on_lab.call(appliance.directory.groups):
        on_lab.call(appliance.directory.delete_group, group.name)
    on_lab.call(appliance.directory.put_group, Group("empfang", GROUP_NUMBER, ("200",)))
    on_lab.call(appliance.forwarding.forwards.clear, GROUP_NUMBER)
    on_lab.call(appliance.web.credentials.set_password, "admin", ADMIN_PASSWORD)
    assert on_lab.lab is not None
    caller = Phone(reactor, on_lab.lab.ports, "100")
    yield caller
    on_lab.call(caller.close)
    on_lab.call(appliance.forwarding.forwards.clear, GROUP_NUMBER)
    on_lab.call(hang_up_all, on_lab)


def seconds_heard(on_lab: Running, caller: Phone, listen_ms: int) -> float:
    """``caller`` calls the group and listens until the appliance hangs up."""

    def call() -> Any:  # a Deferred of the seconds heard; on_lab.call waits for it
        run = caller.listen(GROUP_NUMBER, listen_ms=listen_ms)
        return run.done.addCallback(lambda _: caller.listened_seconds(run)).addTimeout(120, reactor)

    heard: float = on_lab.call(call)
    return heard


def test_office_closed_announcement_chosen_in_the_browser(
    page_without_javascript: Page, on_lab: Running, closed_group: Phone
) -> None:
    """On the group's page the admin forwards group 600 always to the announcement
    "Outside business hours" (JavaScript off): the list names it, and 100 calling 600
    is answered, hears the whole announcement and is hung up by the appliance."""
    page = page_without_javascript
    assert on_lab.lab is not None
    sound = on_lab.appliance.announcements.sound("closed")
    with wave.open(str(on_lab.lab.root / "usr/share/asterisk/sounds" / f"{sound}.wav")) as played:
        length = played.getnframes() / played.getframerate()
    log_in(page, on_lab, "admin", ADMIN_PASSWORD)
    page.goto(f"{on_lab.url}/admin/groups/empfang")
    page.select_option("#kind", "unconditional")
    page.select_option("#announcement", "closed")
    page.click("form.forward-form button[type=submit]")
    expect(page.get_by_role("status")).to_have_text("Forward saved.")
    expect(page.locator("#forward-unconditional-all")).to_contain_text("Announcement: Outside business hours")
    screenshot(page, "43-lab-group-announcement")
    heard = seconds_heard(on_lab, closed_group, int(length * 1000) + 15000)
    assert length <= heard < length + 5, (heard, length)


def test_own_recording_uploaded_in_the_browser_is_played(
    page_without_javascript: Page, on_lab: Running, closed_group: Phone, tmp_path: Path
) -> None:
    """The admin uploads a 2 s WAV on Announcements (a stereo file first: refused with the
    sox command), forwards group 600 to it on the group's page, and 100 calling 600 hears
    the whole recording."""
    page = page_without_javascript
    stereo, mono = tmp_path / "stereo.wav", tmp_path / "urlaub.wav"
    stereo.write_bytes(tone(1, channels=2))
    mono.write_bytes(tone(2))
    log_in(page, on_lab, "admin", ADMIN_PASSWORD)
    page.click("nav >> text=Announcements")
    page.fill("#label", "Betriebsurlaub")
    page.set_input_files("#file", str(stereo))
    page.click("form.recording-form button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("WAV file: 8000 Hz, 2 channel(s), 16 bit")
    expect(page.get_by_role("alert")).to_contain_text("sox")
    page.set_input_files("#file", str(mono))
    page.click("form.recording-form button[type=submit]")
    expect(page.get_by_role("status")).to_have_text("Announcement uploaded.")
    expect(page.locator("#announcement-rec-betriebsurlaub")).to_contain_text("2.0 s")
    screenshot(page, "44-lab-recording-uploaded")

    page.goto(f"{on_lab.url}/admin/groups/empfang")
    page.select_option("#announcement", label="Betriebsurlaub")
    page.click("form.forward-form button[type=submit]")
    expect(page.locator("#forward-unconditional-all")).to_contain_text("Announcement: Betriebsurlaub")
    heard = seconds_heard(on_lab, closed_group, 20000)
    assert 2.0 <= heard < 2.0 + 5, heard
