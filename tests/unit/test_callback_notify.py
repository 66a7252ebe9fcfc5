"""Callback by mail: the per-user "ring me" / "mail me" choice, and the mail on
expiry or when the retries ran out, queued in the shared outbox."""

from __future__ import annotations

from email.message import EmailMessage

from twisted.trial.unittest import SynchronousTestCase

from appliance import settings as keys
from appliance.callback import notify
from appliance.callback.engine import Request
from appliance.directory import User
from tests.unit.test_callback_offer import Harness


class FakeOutbox:
    def __init__(self) -> None:
        self.queued: list[tuple[str, str, list[str], EmailMessage]] = []

    def enqueue(self, key: str, sender: str, recipients: list[str], message: EmailMessage) -> None:
        self.queued.append((key, sender, recipients, message))


def harness(**presence: str) -> tuple[Harness, FakeOutbox]:
    h = Harness(**presence)
    outbox = FakeOutbox()
    h.service.outbox = outbox
    h.service.sender = "pbx@example.org"
    h.directory.put_user(User("100", "Anna Berger", "anna@example.org", language="de"))
    h.directory.put_user(User("200", 'Ben "<b>" Cole', "ben@example.org", language="en"))
    return h, outbox


class MailTextTests(SynchronousTestCase):
    def test_expired_mail(self) -> None:
        """The expiry mail names the target in the requester's language; names are
        escaped in HTML and never break a header."""
        request = Request("100", "200", 1_800_000_000.0)
        message = notify.mail_for(
            "expired",
            request,
            to_name="Anna\r\nBcc: x@evil.example",
            to_address="anna@example.org",
            target_name="<b>Ben</b>",
            language="de",
            sender="pbx@example.org",
            now=1_800_000_100.0,
        )
        assert message is not None
        self.assertEqual(message["Subject"], "Rückruf zu 200 (<b>Ben</b>) abgelaufen")
        self.assertNotIn("\n", str(message["To"]))
        self.assertIsNone(message["Bcc"])
        html = message.get_body(("html",)).get_content()
        self.assertIn("&lt;b&gt;Ben&lt;/b&gt;", html)
        self.assertNotIn("<b>Ben", html)

    def test_no_address_no_mail(self) -> None:
        """Without a valid address there is no mail (and no error)."""
        request = Request("100", "200", 0.0)
        for address in ("", "not an address"):
            message = notify.mail_for(
                "free", request, to_name="A", to_address=address, target_name="", language="en",
                sender="pbx@example.org", now=0.0,
            )  # fmt: skip
            self.assertIsNone(message)


class ServiceMailTests(SynchronousTestCase):
    def test_expiry_mails_the_requester_once(self) -> None:
        """A request deleted at CC_TIMEOUT mails its requester, once."""
        h, outbox = harness(**{"100": "idle", "200": "busy"})
        h.service.engine.request("100", "200")
        h.clock.advance(keys.CC_TIMEOUT.default * 60)
        self.assertEqual(h.service.pending(), [])
        [(key, sender, to, message)] = outbox.queued
        self.assertEqual((sender, to), ("pbx@example.org", ["anna@example.org"]))
        self.assertTrue(key.startswith("callback:100:200:") and key.endswith(":expired"))
        self.assertIn("abgelaufen", message["Subject"])

    def test_retries_exhausted_mails_the_requester(self) -> None:
        """A requester who never takes the recall gets the "given up" mail."""
        h, outbox = harness(**{"100": "idle", "200": "idle"})
        h.service.startService()
        self.addCleanup(h.service.stopService)
        h.service.engine.request("100", "200")
        for _ in range(10):
            for action_id in list(h.service._actions):
                h.ami.event("OriginateResponse", ActionID=action_id, Response="Failure", Reason="3")
            h.clock.advance(301)
        self.assertEqual(h.service.pending(), [])
        self.assertEqual([q[0].rsplit(":", 1)[1] for q in outbox.queued], ["attempts"])

    def test_mail_me_instead_of_ring(self) -> None:
        """With "mail me" a due callback sends the "is free now" mail, rings nobody,
        and the request is done."""
        h, outbox = harness(**{"100": "idle", "200": "idle"})
        h.service.set_notify_mode("100", "mail")
        self.assertEqual(h.service.notify_mode("100"), "mail")
        h.service.engine.request("100", "200")
        h.clock.advance(0)
        self.assertEqual([a for a, _ in h.ami.actions], [])
        self.assertEqual(h.service.pending(), [])
        [(key, _sender, to, message)] = outbox.queued
        self.assertEqual(to, ["anna@example.org"])
        self.assertIn("jetzt frei", message["Subject"])
        self.assertTrue(key.endswith(":free"))

    def test_mail_me_without_address_rings(self) -> None:
        """A user who chose mail but has no address is rung as usual."""
        h, outbox = harness(**{"100": "idle", "200": "idle"})
        h.directory.put_user(User("100", "Anna Berger", "", language="de"))
        h.service.set_notify_mode("100", "mail")
        h.service.engine.request("100", "200")
        self.assertEqual([a for a, _ in h.ami.actions], ["Originate"])
        self.assertEqual(outbox.queued, [])

    def test_unknown_mode_refused(self) -> None:
        """Only ring and mail are modes."""
        h, _ = harness()
        with self.assertRaises(ValueError):
            h.service.set_notify_mode("100", "fax")
