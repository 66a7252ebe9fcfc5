"""Missed-call mail as seed 001 says, end to end: sipp phones and a sipp trunk, the real
Asterisk, the appliance in-process, a real SMTP server (aiosmtpd), and for the relay
test STARTTLS with a certificate made here and AUTH.

Covers what only unit tests showed before: recipients "none", the caller as sender,
custom and switched-off link prefixes, the exceptions "no contact", "same day" and
"until logged in again" (phone, web login, journal seen), the mail's language by
precedence and from a template added at run time, STARTTLS + AUTH.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from twisted.internet.defer import DeferredList, inlineCallbacks

from appliance.lab import Lab
from appliance.pbx import Presence
from tests.certs import make_pki
from tests.e2e import test_missed
from tests.e2e.phones import Phone, SippRun
from tests.e2e.portblocks import PortBlocks
from tests.e2e.test_missed import (
    EXTERNAL,
    Inbox,
    Rig,
    call_and_cancel,
    parse_html,
    ringing_phones,
    run,
)
from tests.e2e.waiting import wait_model, wait_until

UNKNOWN = "+4940999888"

# The relay and the appliance rig of the missed-call suite, as fixtures here too.
relay_port = test_missed.relay_port
inbox = test_missed.inbox
rig = test_missed.rig


@pytest.fixture
def web_port(lab: Lab) -> Iterator[int]:
    """A port of the lab instance's own range for the settings page."""
    blocks = PortBlocks.for_lab(lab.ports)
    block = blocks.take()
    yield block.tcp[0]
    blocks.release(block)


class Line:
    """One registered desk phone that rings for each call and never answers; it stays
    registered between calls, as a desk phone does."""

    def __init__(self, rig: Rig, phone: Phone) -> None:
        self.rig = rig
        self.phone = phone

    @inlineCallbacks
    def register(self) -> Any:
        pbx = self.rig.appliance.pbx
        yield self.phone.register().done
        yield wait_model(
            self.rig.reactor, pbx, lambda: pbx.presence(self.phone.extension) is Presence.IDLE, "logged in"
        )

    @inlineCallbacks
    def unregister(self) -> Any:
        pbx = self.rig.appliance.pbx
        yield self.phone.unregister().done
        yield wait_model(
            self.rig.reactor,
            pbx,
            lambda: not pbx.endpoint(self.phone.extension).registered,
            "logged out",
        )

    def ring(self) -> SippRun:
        return run(self.phone, "mc_ring", {}, listen=True)


@inlineCallbacks
def missed_call(
    rig: Rig, line: Line, phones: Callable[[str], Phone], number: str = EXTERNAL, ring_ms: int = 2500
) -> Any:
    """One external call that rings ``line`` and is given up; fires with its decision."""
    before = len(rig.decisions)
    ringing = line.ring()
    calling = call_and_cancel(phones, line.phone.extension, ring_ms=ring_ms, number=number)
    results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_until(
        rig.reactor,
        lambda cb: rig.appliance.missed.subscribe(lambda call, decision: cb(call)),
        lambda: len(rig.decisions) > before,
        "the call decided",
        timeout=30,
    )
    yield rig.wait_outbox_settled()
    return rig.decisions[before][1]


@pytest.fixture
def line(rig: Rig, phones: Callable[[str], Phone]) -> Iterator[Line]:
    desk = Line(rig, phones("200"))
    pytest_twisted.blockon(desk.register())
    yield desk


def arrived(rig: Rig, inbox: Inbox, count: int) -> Any:
    return wait_until(rig.reactor, inbox.subscribe, lambda: len(inbox.messages) >= count, f"{count} mails")


@pytest_twisted.inlineCallbacks
def test_recipients_none_keeps_the_journal_and_sends_nothing(rig: Rig, inbox: Inbox, phones: Any) -> Any:
    """MC_RECIPIENTS none: a group call nobody answers is in every member's journal, and
    no mail is queued or sent."""
    rig.appliance.settings.set("MC_RECIPIENTS", "none")
    ringing = yield ringing_phones(rig, phones, "200", "201", "202")
    calling = call_and_cancel(phones, "600", ring_ms=3000)
    results = yield DeferredList([r.done for r in ringing] + [calling.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    _call, decision = yield rig.wait_decision()
    assert sorted(decision.journal) == ["200", "201", "202"] and decision.mail == ()
    assert set(decision.reasons.values()) == {"recipients: none"}
    assert all(len(rig.appliance.missed.journal.entries(u)) == 1 for u in ("200", "201", "202"))
    assert rig.appliance.outbox.entries() == [] and inbox.messages == []


@pytest_twisted.inlineCallbacks
def test_caller_as_sender(rig: Rig, inbox: Inbox, phones: Any, line: Line) -> Any:
    """MC_CALLER_AS_SENDER: the mail is From the caller's contact address, Sender the
    appliance, so "reply" reaches the caller; the envelope stays the appliance's."""
    rig.appliance.settings.set("MC_CALLER_AS_SENDER", True)
    yield missed_call(rig, line, phones)
    yield arrived(rig, inbox, 1)
    [mail] = inbox.messages
    assert mail["From"].addresses[0].addr_spec == "erika@example.org"
    assert mail["From"].addresses[0].display_name == "Erika Mustermann"
    assert mail["Sender"].addresses[0].addr_spec == "appliance@localhost"
    assert inbox.envelopes == [("appliance@localhost", ["u200@example.org"])]


@pytest.mark.parametrize(
    ("prefix", "href"),
    [("callto:", f"callto:{EXTERNAL}"), ("dial9:", f"dial9:{EXTERNAL}"), ("", None)],
    ids=["callto", "custom", "off"],
)
@pytest_twisted.inlineCallbacks
def test_link_prefix(rig: Rig, inbox: Inbox, phones: Any, line: Line, prefix: str, href: str | None) -> Any:
    """MC_LINK_PREFIX: a preset or custom prefix makes the number a link with it;
    switched off (empty), the number is plain text."""
    rig.appliance.settings.set("MC_LINK_PREFIX", prefix)
    yield missed_call(rig, line, phones)
    yield arrived(rig, inbox, 1)
    page = parse_html(inbox.messages[0])
    links = [(a.get("href"), a.text_content()) for a in page.xpath("//a")]
    assert links == ([(href, EXTERNAL)] if href else [])
    assert EXTERNAL in page.text_content()


@pytest_twisted.inlineCallbacks
def test_no_mail_for_unresolved_callers(rig: Rig, inbox: Inbox, phones: Any, line: Line) -> Any:
    """MC_EXCLUDE_UNRESOLVED: a caller no contact names gets only a journal entry; a
    known contact's call is mailed."""
    rig.appliance.settings.set("MC_EXCLUDE_UNRESOLVED", True)
    unknown = yield missed_call(rig, line, phones, number=UNKNOWN)
    assert (unknown.journal, unknown.mail, unknown.reasons) == (("200",), (), {"200": "no contact"})
    known = yield missed_call(rig, line, phones)
    assert known.mail == ("200",)
    yield arrived(rig, inbox, 1)
    assert len(inbox.messages) == 1 and "Erika Mustermann" in str(inbox.messages[0]["Subject"])
    assert [e.caller_num for e in rig.appliance.missed.journal.entries("200")] == [EXTERNAL, UNKNOWN]


@pytest_twisted.inlineCallbacks
def test_no_mail_for_a_repeat_on_the_same_day(rig: Rig, inbox: Inbox, phones: Any, line: Line) -> Any:
    """MC_EXCLUDE_REPEAT_SAME_DAY: the second call of the day from one caller is not
    mailed; another caller's is."""
    rig.appliance.contacts.import_vcf(
        "BEGIN:VCARD\nVERSION:3.0\nUID:max\nFN:Max Muster\nTEL:+49 40 999888\nEND:VCARD\n"
    )
    rig.appliance.settings.set("MC_EXCLUDE_REPEAT_SAME_DAY", True)
    first = yield missed_call(rig, line, phones)
    second = yield missed_call(rig, line, phones)
    other = yield missed_call(rig, line, phones, number=UNKNOWN)
    assert (first.mail, second.mail, other.mail) == (("200",), (), ("200",))
    assert second.reasons == {"200": "repeated call on the same day"}
    yield arrived(rig, inbox, 2)
    assert [str(m["Subject"]) for m in inbox.messages] == [
        "Verpasster Anruf von Erika Mustermann",
        "Verpasster Anruf von Max Muster",
    ]


class WebUser:
    """A browser session against the running appliance's settings page (real HTTP)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    @inlineCallbacks
    def _send(self, method: str, path: str, data: dict[str, str] | None = None) -> Any:
        response = yield treq.request(
            method, self.base + path, data=data, cookies=self.cookies, allow_redirects=False
        )
        for cookie in response.cookies():
            self.cookies[cookie.name] = cookie.value
        body = yield treq.text_content(response, encoding="utf-8")
        return response.code, body

    @inlineCallbacks
    def token(self, path: str) -> Any:
        _, body = yield self._send("GET", path)
        return re.search(r'name="csrf" value="([^"]+)"', body).group(1)

    @inlineCallbacks
    def login(self, login: str, password: str) -> Any:
        token = yield self.token("/login")
        code, _ = yield self._send("POST", "/login", {"csrf": token, "login": login, "password": password})
        assert code == 303

    @inlineCallbacks
    def mark_journal_seen(self) -> Any:
        token = yield self.token("/me/journal")
        code, _ = yield self._send("POST", "/me/journal/seen", {"csrf": token, "all": "1"})
        assert code == 303


@pytest.fixture
def web_rig(tmp_path: Path, lab: Lab, reactor: Any, inbox: Inbox, web_port: int) -> Iterator[tuple[Rig, str]]:
    """A rig whose settings page listens on a known port."""
    port = web_port
    rig = Rig(tmp_path, lab, reactor, inbox.port)
    listen = "[web]\nbind = 127.0.0.1\nport = "
    rig.config.write_text(rig.config.read_text().replace(listen + "0", listen + str(port)))
    pytest_twisted.blockon(rig.start())
    rig.setup_directory()
    rig.appliance.web.credentials.set_password("200", "anna-e2e-secret")
    yield rig, f"http://127.0.0.1:{port}"
    pytest_twisted.blockon(rig.stop())


@pytest.mark.parametrize("back", ["phone registers again", "web login", "journal marked seen"])
@pytest_twisted.inlineCallbacks
def test_repeat_until_logged_in_again(web_rig: tuple[Rig, str], inbox: Inbox, phones: Any, back: str) -> Any:
    """MC_EXCLUDE_REPEAT_UNTIL_LOGIN with a desk phone that stays registered: the repeat
    is silent until the user is back — by the phone registering again, a web login, or
    marking the journal seen (in a session opened before the calls)."""
    rig, base = web_rig
    desk = Line(rig, phones("200"))
    yield desk.register()
    browser = WebUser(base)
    if back == "journal marked seen":
        yield browser.login("200", "anna-e2e-secret")
    rig.appliance.settings.set("MC_EXCLUDE_REPEAT_UNTIL_LOGIN", True)
    first = yield missed_call(rig, desk, phones)
    repeat = yield missed_call(rig, desk, phones)
    assert (first.mail, repeat.mail) == (("200",), ())
    assert repeat.reasons == {"200": "repeated call, not logged in since"}
    if back == "phone registers again":
        yield desk.unregister()
        yield desk.register()
    elif back == "web login":
        yield browser.login("200", "anna-e2e-secret")
    else:
        yield browser.mark_journal_seen()
        assert rig.appliance.missed.journal.unseen("200") == 0
    after = yield missed_call(rig, desk, phones)
    assert after.mail == ("200",)
    yield arrived(rig, inbox, 2)
    assert len(inbox.messages) == 2


@pytest_twisted.inlineCallbacks
def test_mail_language_by_precedence(rig: Rig, inbox: Inbox, phones: Any, line: Line) -> Any:
    """User without a language: the appliance's (de), then MC_LANGUAGE (en); the user's own
    choice (de) beats MC_LANGUAGE; a template uploaded for a new language (fr) becomes a
    choice of MC_LANGUAGE and writes the next mail."""
    directory = rig.appliance.directory
    anna = directory.user("200")
    directory.put_user(replace(anna, language=""))
    yield missed_call(rig, line, phones)
    rig.appliance.settings.set("MC_LANGUAGE", "en")
    yield missed_call(rig, line, phones)
    directory.put_user(replace(anna, language="de"))
    yield missed_call(rig, line, phones)
    french = (
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/missedCall"><html><head><title>Appel manqué</title></head><body>'
        '<p>Appel de <xsl:value-of select="caller/number"/></p></body></html></xsl:template>'
        "</xsl:stylesheet>"
    )
    rig.appliance.renderer.install("fr", french.encode())
    directory.put_user(replace(anna, language=""))
    rig.appliance.settings.set("MC_LANGUAGE", "fr")
    yield missed_call(rig, line, phones)
    yield arrived(rig, inbox, 4)
    assert [str(m["Subject"]) for m in inbox.messages] == [
        "Verpasster Anruf von Erika Mustermann",
        "Missed call from Erika Mustermann",
        "Verpasster Anruf von Erika Mustermann",
        "Appel manqué: Erika Mustermann",
    ]
    assert f"Appel de {EXTERNAL}" in parse_html(inbox.messages[3]).text_content()


class SecureRelay(Inbox):
    """The SMTP server as a real relay: STARTTLS required with a test certificate, and
    AUTH (only after TLS) with one account."""

    def __init__(self, reactor: Any, port: int, certificate: Path, key: Path) -> None:
        super().__init__(reactor, port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.logins: list[tuple[str, bool]] = []
        """(login, over TLS) of every AUTH attempt."""

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"appliance", b"relay-pw")
        login = data.login.decode() if isinstance(data, LoginPassword) else "?"
        self.reactor.callFromThread(self.logins.append, (login, session.ssl is not None))
        return AuthResult(success=ok)

    def start(self) -> None:
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",
            tls_context=self.context,
            require_starttls=True,
            authenticator=self.authenticate,
            auth_require_tls=True,
        )
        self.controller.start()


@pytest_twisted.inlineCallbacks
def test_starttls_and_auth_against_a_real_relay(
    tmp_path: Path, lab: Lab, reactor: Any, phones: Any, relay_port: int
) -> Any:
    """A relay that demands STARTTLS (its certificate from a CA made in this test, trusted
    through [smtp] cafile) and AUTH: the mail is delivered over TLS after AUTH."""
    pki = make_pki(tmp_path / "pki", "localhost")
    relay = SecureRelay(reactor, relay_port, pki.certificate, pki.key)
    relay.start()
    rig = Rig(tmp_path, lab, reactor, relay.port)
    text = rig.config.read_text()
    text = text.replace(
        "host = 127.0.0.1\nport = " + str(relay.port), f"host = localhost\nport = {relay.port}"
    )
    text = text.replace(
        "starttls = off\n",
        f"starttls = required\nusername = appliance\npassword = relay-pw\ncafile = {pki.ca}\n",
    )
    rig.config.write_text(text)
    try:
        yield rig.start()
        rig.setup_directory()
        desk = Line(rig, phones("200"))
        yield desk.register()
        decision = yield missed_call(rig, desk, phones)
        assert decision.mail == ("200",)
        yield arrived(rig, relay, 1)
        [(_key, record)] = rig.appliance.outbox.entries()
        assert record["state"] == "sent"
        assert relay.logins == [("appliance", True)]
        assert str(relay.messages[0]["Subject"]) == "Verpasster Anruf von Erika Mustermann"
    finally:
        yield rig.stop()
        relay.stop()
