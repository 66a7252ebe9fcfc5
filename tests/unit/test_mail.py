"""Mail composition, the SMTP relay client's settings, and the persistent outbox."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.mail.smtp import SMTPDeliveryError, TLSRequiredError
from twisted.python.failure import Failure

from appliance.config import ConfigError, SMTPConfig
from appliance.mail import OUTBOX, Outbox, SMTPRelay, address, compose, header_text
from appliance.store import SQLiteStore
from appliance.testing import MemoryStore
from tests.certs import make_pki


def message(subject: str = "Missed call", name: str = "Erika") -> EmailMessage:
    return compose(
        sender=address(name, "caller@example.org"),
        to=address("Max Müller", "max@example.org"),
        subject=subject,
        text="text part",
        html="<html><body>html part</body></html>",
        now=1_700_000_000.0,
        message_id="<id-1@example.org>",
        on_behalf_of=address("Phone system", "pbx@example.org"),
        attachments=[("contact.vcf", "vcard", "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Erika\r\nEND:VCARD\r\n")],
    )


def parsed(msg: EmailMessage) -> EmailMessage:
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def test_crlf_in_caller_name_cannot_add_headers() -> None:
    """A caller name with CR/LF ends up inside one header, not as a new header."""
    msg = parsed(
        message(subject="Anruf von X\r\nBcc: victim@example.org", name="Evil\r\nBcc: victim@example.org")
    )
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"]) and "\n" not in str(msg["From"])
    assert str(msg["Subject"]) == "Anruf von X Bcc: victim@example.org"


def test_non_ascii_headers_are_encoded() -> None:
    """Umlauts in names and subject travel RFC 2047-encoded and decode back."""
    raw = message(subject="Verpasster Anruf von Jürgen Öztürk", name="Jürgen").as_bytes()
    assert raw.isascii()
    msg = parsed(message(subject="Verpasster Anruf von Jürgen Öztürk", name="Jürgen"))
    assert str(msg["Subject"]) == "Verpasster Anruf von Jürgen Öztürk"
    assert msg["To"].addresses[0].display_name == "Max Müller"
    assert msg["From"].addresses[0].display_name == "Jürgen"


def test_parts_and_attachment() -> None:
    """Text and HTML alternatives plus the vCard attachment."""
    msg = parsed(message())
    assert msg.get_body(("plain",)).get_content().strip() == "text part"
    assert "html part" in msg.get_body(("html",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "text/vcard" and attachment.get_filename() == "contact.vcf"
    assert msg["Sender"].addresses[0].addr_spec == "pbx@example.org"


def test_header_text_strips_control_characters() -> None:
    """Control characters become spaces; length is bounded."""
    assert header_text("a\x00b\r\nc\u2028d\te") == "a b c d e"
    assert len(header_text("x" * 500)) == 200


def test_address_refuses_bad_addresses() -> None:
    """An address with CR/LF or without a domain is refused."""
    for bad in ("a@b\r\n.org", "nobody", "a b@example.org", "<a@b.org>", "a@b..org"):
        with pytest.raises(ValueError):
            address("x", bad)


# -- relay client -----------------------------------------------------------------


def relay_factory(**changes: Any) -> Any:
    config = SMTPConfig(
        host="relay.example.org", port=587, starttls="required", username="", password="", sender="a@b.org"
    )
    config = SMTPConfig(**{**config.__dict__, **changes})
    data = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n"
    return SMTPRelay(config, MemoryReactorClock()).factory("a@b.org", ["c@d.org"], data, Deferred())


def test_credentials_only_over_tls() -> None:
    """With a username the client requires STARTTLS and AUTH."""
    factory = relay_factory(username="user", password="secret")
    protocol = factory.buildProtocol(None)
    assert protocol.requireTransportSecurity is True
    assert protocol.requireAuthentication is True
    assert protocol.context is not None


def test_no_credentials_to_a_server_without_starttls() -> None:
    """A relay (or a man in the middle) that offers AUTH but no STARTTLS never sees the
    password: the client gives up before AUTH."""
    result: Deferred[Any] = Deferred()
    config = SMTPConfig("relay.example.org", 587, "required", "user", "s3cret", "a@b.org")
    factory = SMTPRelay(config, MemoryReactorClock()).factory("a@b.org", ["c@d.org"], b"x\r\n", result)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"220 relay ESMTP\r\n")
    assert transport.value().startswith(b"EHLO ")
    transport.clear()
    protocol.dataReceived(b"250-relay\r\n250 AUTH PLAIN LOGIN\r\n")
    assert transport.value() == b"QUIT\r\n"
    failure = result.result if result.called else None
    result.addErrback(lambda _f: None)
    assert isinstance(failure, Failure) and failure.check(TLSRequiredError)


def test_starttls_required_without_auth() -> None:
    """starttls=required: TLS is mandatory even without credentials."""
    protocol = relay_factory().buildProtocol(None)
    assert protocol.requireTransportSecurity is True and protocol.requireAuthentication is False


def test_starttls_off_sends_plain() -> None:
    """starttls=off (loopback relay): no TLS attempted, no AUTH."""
    protocol = relay_factory(starttls="off").buildProtocol(None)
    assert protocol.requireTransportSecurity is False and protocol.context is None


def test_line_endings_left_to_twisted_mail() -> None:
    """The stored CRLF message reaches twisted.mail with LF only (it sends CRLF itself)."""
    data = relay_factory().file.getvalue()
    assert data == b"Subject: x\n\nline 1\nline 2\n"


def test_send_connects_to_the_relay() -> None:
    """send() opens one TCP connection to host:port, no retries by the factory."""
    reactor = MemoryReactorClock()
    config = SMTPConfig(
        host="127.0.0.1", port=2525, starttls="off", username="", password="", sender="a@b.org"
    )
    SMTPRelay(config, reactor).send("a@b.org", ["c@d.org"], b"x")
    [(host, port, factory, _timeout, _bind)] = reactor.tcpClients
    assert (host, port, getattr(factory, "retries", None)) == ("127.0.0.1", 2525, 0)


# -- outbox -------------------------------------------------------------------------


class FakeRelay:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], bytes]] = []
        self.results: list[Deferred[Any]] = []
        self.down = False

    def send(self, sender: str, to: list[str], data: bytes) -> Deferred[Any]:
        self.calls.append((sender, to, data))
        if self.down:
            return fail(ConnectionRefusedError("relay down"))
        return succeed((1, []))


def outbox(store: Any, relay: FakeRelay, clock: Clock) -> Outbox:
    box = Outbox(store, relay.send, clock, backoff=lambda attempt: 10.0 * attempt)
    box.startService()
    return box


def test_enqueued_mail_is_sent_and_marked() -> None:
    """A queued mail goes out once and is marked sent."""
    clock, relay, store = Clock(), FakeRelay(), MemoryStore()
    box = outbox(store, relay, clock)
    box.enqueue("call1:200", "pbx@example.org", ["max@example.org"], message())
    clock.advance(0)
    assert [(s, t) for s, t, _ in relay.calls] == [("pbx@example.org", ["max@example.org"])]
    assert b"Message-ID: <id-1@example.org>" in relay.calls[0][2]
    assert box.entry("call1:200")["state"] == "sent"
    clock.advance(1000)
    assert len(relay.calls) == 1


def test_same_key_is_queued_once() -> None:
    """Enqueueing a key again (even after it was sent) sends nothing more."""
    clock, relay, store = Clock(), FakeRelay(), MemoryStore()
    box = outbox(store, relay, clock)
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(0)
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(100)
    assert len(relay.calls) == 1


def test_retry_with_backoff_until_relay_is_up() -> None:
    """A relay that is down: retried after the backoff delays, delivered once when up."""
    clock, relay, store = Clock(), FakeRelay(), MemoryStore()
    relay.down = True
    box = outbox(store, relay, clock)
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(0)
    assert len(relay.calls) == 1 and box.entry("k")["attempts"] == 1
    clock.advance(9.9)
    assert len(relay.calls) == 1
    clock.advance(0.1)
    assert len(relay.calls) == 2  # after 10 s
    clock.advance(19.9)
    assert len(relay.calls) == 2
    relay.down = False
    clock.advance(0.1)  # after 20 s more
    assert len(relay.calls) == 3 and box.entry("k")["state"] == "sent"
    clock.advance(10_000)
    assert len(relay.calls) == 3


def test_survives_restart(tmp_path: Path) -> None:
    """A mail not yet delivered when the appliance stops is sent after the restart, once."""
    clock, relay = Clock(), FakeRelay()
    relay.down = True
    store = SQLiteStore(tmp_path / "store.sqlite3")
    box = outbox(store, relay, clock)
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(0)
    box.stopService()
    store.close()
    assert not clock.getDelayedCalls()

    relay.down = False
    store = SQLiteStore(tmp_path / "store.sqlite3")
    box = outbox(store, relay, clock)
    clock.advance(10)
    assert len(relay.calls) == 2 and box.entry("k")["state"] == "sent"
    box.stopService()
    box = outbox(store, relay, clock)
    clock.advance(100)
    assert len(relay.calls) == 2


def test_stop_during_send_keeps_the_mail() -> None:
    """Stopping while the relay has not answered cancels the attempt; the mail stays pending."""
    clock, store = Clock(), MemoryStore()
    started: list[Deferred[Any]] = []

    def hanging(sender: str, to: list[str], data: bytes) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        started.append(d)
        return d

    box = Outbox(store, hanging, clock, backoff=lambda n: 10.0)
    box.startService()
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(0)
    assert len(started) == 1
    box.stopService()
    assert box.entry("k")["state"] == "pending" and box.entry("k")["attempts"] == 0
    assert not clock.getDelayedCalls()


def test_permanent_refusal_is_not_retried() -> None:
    """A 5xx refusal marks the mail failed instead of retrying forever."""
    clock, store = Clock(), MemoryStore()
    calls = []

    def refusing(sender: str, to: list[str], data: bytes) -> Deferred[Any]:
        calls.append(1)
        return fail(SMTPDeliveryError(550, b"no such user"))

    box = Outbox(store, refusing, clock, backoff=lambda n: 10.0)
    box.startService()
    box.enqueue("k", "a@b.org", ["c@d.org"], message())
    clock.advance(1000)
    assert len(calls) == 1 and box.entry("k")["state"] == "failed"


def test_sent_entries_are_purged_after_a_day() -> None:
    """Sent entries older than a day are removed at start; pending ones stay."""
    clock, store = Clock(), MemoryStore()
    clock.advance(200_000)
    store.put(OUTBOX, "old", {"state": "sent", "sent": 100.0, "next": 0})
    store.put(OUTBOX, "new", {"state": "sent", "sent": 199_000.0, "next": 0})
    Outbox(store, FakeRelay().send, clock).startService()
    assert [key for key, _ in store.items(OUTBOX)] == ["new"]


def test_cafile_is_the_trust_root_for_starttls(tmp_path: Path) -> None:
    """[smtp] cafile: the relay's certificate is checked against that CA (an internal relay)."""
    pki = make_pki(tmp_path)
    config = SMTPConfig("localhost", 587, "required", "user", "pw", "a@b.org", cafile=pki.ca)
    relay = SMTPRelay(config, MemoryReactorClock())
    protocol = relay.factory("a@b.org", ["c@d.org"], b"x\r\n", Deferred()).buildProtocol(None)
    assert relay.tls_options is not None and protocol.context is relay.tls_options


def test_cafile_without_certificate_is_a_config_error(tmp_path: Path) -> None:
    """A cafile that holds no certificate stops start-up with a clear line."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    config = SMTPConfig("localhost", 587, "required", "", "", "a@b.org", cafile=bad)
    with pytest.raises(ConfigError, match=r"\[smtp\] cafile: .*holds no PEM certificate"):
        SMTPRelay(config, MemoryReactorClock())
