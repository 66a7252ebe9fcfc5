"""The admin uploads mail templates in Chromium; real missed calls in the Asterisk lab
show which template the mails were written with.

A broken template is refused on the page (line and reason) and the next mail is still
written with the old one; a good one is saved and the next mail uses it.  Mail goes
to a real SMTP server (aiosmtpd) on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import lxml.html
import pytest
from playwright.sync_api import Page, expect
from twisted.internet.defer import Deferred, DeferredList

from appliance.directory import User
from appliance.mail import SMTPRelay
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, reactor, reserved_port, screenshot
from tests.browser.test_lab_forward import close_all, hang_up_all, registered
from tests.e2e.phones import Phone
from tests.e2e.test_missed import VCF, Inbox, call_and_cancel, run
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

BROKEN = b"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/missedCall">
    <html><body><p>Broken
  </xsl:template>
</xsl:stylesheet>
"""
GOOD = b"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8"/>
  <xsl:template match="/missedCall">
    <html><body><h1>Custom template</h1><p>Caller: <xsl:value-of select="caller/number"/></p></body></html>
  </xsl:template>
</xsl:stylesheet>
"""


@pytest.fixture
def mail_lab(on_lab: Running) -> Iterator[tuple[Running, Inbox]]:
    """The lab appliance with 200 (English, with e-mail), the caller as a contact, and its
    outbox sending to an SMTP server of this test."""
    appliance = on_lab.appliance
    inbox = on_lab.call(lambda: Inbox(reactor, reserved_port()))
    on_lab.call(inbox.start)
    relay = SMTPRelay(replace(appliance.config.smtp, port=inbox.port), reactor)
    send = appliance.outbox.send

    def prepare() -> None:
        appliance.outbox.send = relay.send
        appliance.outbox.backoff = lambda attempt: 1.0
        appliance.directory.put_user(User("200", "Anna Berger", "u200@example.org", language="en"))
        appliance.contacts.import_vcf(VCF)
        appliance.web.credentials.set_password("admin", ADMIN_PASSWORD)
        appliance.forwarding.forwards.clear("200")
        appliance.renderer.remove("en")

    on_lab.call(prepare)
    try:
        yield on_lab, inbox
    finally:

        def restore() -> None:
            appliance.outbox.send = send
            appliance.renderer.remove("en")

        on_lab.call(restore)
        on_lab.call(inbox.stop)


def missed_call_mail(running: Running, inbox: Inbox) -> Any:
    """A trunk call rings 200 for 2.5 s and is given up; returns the mail it produced."""
    assert running.lab is not None
    ports = running.lab.ports
    before = len(inbox.messages)
    line = Phone(reactor, ports, "200")
    made: list[Phone] = [line]

    def phones(extension: str) -> Phone:
        phone = Phone(reactor, ports, extension)
        made.append(phone)
        return phone

    def call() -> Deferred[Any]:
        done = registered(running, line)

        def ring(_: object) -> Any:
            ringing = run(line, "mc_ring", {}, listen=True)
            calling = call_and_cancel(phones, "200", ring_ms=2500)
            return DeferredList([ringing.done, calling.done], consumeErrors=True)

        return done.addCallback(ring)

    try:
        results = running.call(call)
        assert [ok for ok, _ in results] == [True, True], results
        running.call(
            lambda: wait_until(
                reactor, inbox.subscribe, lambda: len(inbox.messages) > before, "the mail", timeout=30
            )
        )
    finally:
        running.call(close_all, made)
        running.call(hang_up_all, running)
    [mail] = inbox.messages[before:]
    return mail


def html_of(mail: Any) -> Any:
    return lxml.html.fromstring(mail.get_body(("html",)).get_content())


def upload(page: Page, content: bytes) -> None:
    page.fill("#language", "en")
    page.set_input_files(
        "#file", {"name": "missed_call.en.xsl", "mimeType": "application/xslt+xml", "buffer": content}
    )
    page.click("form.card button[value=save]")


def test_broken_template_is_refused_and_a_good_one_serves_the_next_mail(
    page: Page, mail_lab: tuple[Running, Inbox]
) -> None:
    """Upload a broken template: refused with line and reason, and a missed call is still
    mailed with the shipped template; upload a good one: saved, and the next missed
    call's mail is written with it."""
    running, inbox = mail_lab
    log_in(page, running, "admin", ADMIN_PASSWORD)
    page.click("nav >> text=Mail templates")
    expect(page.locator("#template-en .origin")).to_have_text("shipped")

    upload(page, BROKEN)
    refused = page.locator("#template-refused")
    expect(refused).to_contain_text("The template was refused; the previous one stays in use.")
    expect(refused.locator(".line")).to_have_text("5")  # the end tag that does not match
    expect(refused.locator(".reason")).to_contain_text("not well-formed XML")
    expect(page.locator("#template-en .origin")).to_have_text("shipped")
    screenshot(page, "40-template-refused")

    first = missed_call_mail(running, inbox)
    assert str(first["Subject"]) == "Missed call from Erika Mustermann"
    assert [h.text_content() for h in html_of(first).xpath("//h1")] == ["Missed call"]

    with page.context.expect_page() as preview_page:
        page.fill("#language", "en")
        page.set_input_files(
            "#file", {"name": "missed_call.en.xsl", "mimeType": "application/xslt+xml", "buffer": GOOD}
        )
        page.click("form.card button[value=preview]")
    preview = preview_page.value
    expect(preview.locator("h1")).to_have_text("Custom template")
    expect(preview.locator("p")).to_have_text("Caller: +4930123456")  # the sample call
    preview.close()
    expect(page.locator("#template-en .origin")).to_have_text("shipped")  # a preview saves nothing

    upload(page, GOOD)
    expect(page.get_by_role("status")).to_have_text("Template saved; the next mail uses it.")
    expect(page.locator("#template-en .origin")).to_have_text("customised")
    screenshot(page, "41-template-saved")

    second = missed_call_mail(running, inbox)
    body = html_of(second)
    assert [h.text_content() for h in body.xpath("//h1")] == ["Custom template"]
    assert "Caller: +4930123456" in body.text_content()
