"""The demo's mail sink: an SMTP server on loopback that keeps every mail in a
Maildir, and a local page that lists them, newest first, rendered.

Only for ``./dev demo``: it accepts any sender and recipient, so that someone
trying the appliance sees the missed-call mails it sends without a real relay.
Mails are written as they arrive; the page reads the Maildir on each request.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape
from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.web import resource
from twisted.web.server import Request
from zope.interface import implementer

log = Logger()


class Maildir:
    """The mails the sink received, as the page and the tour read them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._box = mailbox.Maildir(str(path), create=True)
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(exist_ok=True)

    def add(self, data: bytes) -> str:
        return self._box.add(data)

    def keys_newest_first(self) -> list[str]:
        return sorted(self._box.keys(), key=_arrival, reverse=True)

    def message(self, key: str) -> EmailMessage | None:
        try:
            raw = self._box.get_bytes(key)
        except KeyError:
            return None
        parsed: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
        return parsed


_DELIVERED = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)")


def _arrival(key: str) -> tuple[int, int, int]:
    """Python's Maildir keys are ``<seconds>.M<microseconds>P<pid>Q<count>``; the
    microseconds are not zero-padded, so the keys do not sort as strings."""
    found = _DELIVERED.match(key)
    return (int(found[1]), int(found[2]), int(found[3])) if found else (0, 0, 0)


@implementer(smtp.IMessage)
class _Arriving:
    def __init__(self, maildir: Maildir, recipient: str) -> None:
        self.maildir = maildir
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        key = self.maildir.add(b"\n".join(self.lines) + b"\n")
        log.info("demo mailbox: mail for {recipient} kept as {key}", recipient=self.recipient, key=key)
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class _KeepEverything:
    """Accepts every sender and recipient: a sink, never a relay."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the appliance demo mailbox"

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        recipient = str(user.dest)
        return lambda: _Arriving(self.maildir, recipient)


class SinkFactory(smtp.SMTPFactory):
    """SMTP on the demo's relay port; every mail lands in ``maildir``."""

    def __init__(self, maildir: Maildir) -> None:
        super().__init__()
        self.delivery = _KeepEverything(maildir)

    def buildProtocol(self, addr: Any) -> smtp.SMTP:
        protocol: smtp.SMTP = super().buildProtocol(addr)
        protocol.delivery = self.delivery
        return protocol


@dataclass(frozen=True)
class Shown:
    """One mail as the page shows it."""

    key: str
    sender: str
    recipient: str
    subject: str
    date: str
    html: str
    text: str
    attachments: list[tuple[str, str]]


def shown(key: str, message: EmailMessage) -> Shown:
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    attachments = [
        (part.get_filename() or part.get_content_type(), part.get_content())
        for part in message.iter_attachments()
        if part.get_content_maintype() == "text"
    ]
    return Shown(
        key=key,
        sender=str(message.get("From", "")),
        recipient=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        date=str(message.get("Date", "")),
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
        attachments=[(name, str(content)) for name, content in attachments],
    )


_TEMPLATES = {
    "list.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo-Postfach · demo mailbox</title>
<style>body{font-family:sans-serif;margin:2rem}td,th{padding:.3rem .8rem;text-align:left}</style></head>
<body><h1>Demo-Postfach · demo mailbox</h1>
<p>Mails the appliance sent in this demo, newest first · Mails der Appliance, neueste zuerst.</p>
{% if mails %}<table><thead><tr><th>Date</th><th>To</th><th>From</th><th>Subject</th></tr></thead><tbody>
{% for mail in mails %}<tr class="mail"><td>{{ mail.date }}</td><td>{{ mail.recipient }}</td>
<td>{{ mail.sender }}</td><td><a href="/mail/{{ mail.key }}">{{ mail.subject }}</a></td></tr>
{% endfor %}</tbody></table>{% else %}<p class="empty">No mail yet · noch keine Mail.</p>{% endif %}
</body></html>""",
    "mail.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ mail.subject }} · demo mailbox</title>
<style>body{font-family:sans-serif;margin:2rem}iframe{width:100%;height:28rem;border:1px solid #aaa}
pre{background:#f4f4f4;padding:1rem}</style></head>
<body><p><a href="/">&larr; all mails · alle Mails</a></p>
<h1>{{ mail.subject }}</h1>
<p>From: {{ mail.sender }}<br>To: {{ mail.recipient }}<br>Date: {{ mail.date }}</p>
{% if mail.html %}<iframe title="mail" sandbox srcdoc="{{ mail.html }}"></iframe>{% endif %}
{% if mail.text %}<pre>{{ mail.text }}</pre>{% endif %}
{% for name, content in mail.attachments %}<h2>{{ name }}</h2><pre class="attachment">{{ content }}</pre>
{% endfor %}</body></html>""",
}
_PAGES = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True))
_SECURITY = {
    b"Content-Security-Policy": b"default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
}


class MailboxPage(resource.Resource):
    """``/`` lists the mails, ``/mail/<key>`` shows one; the mail's HTML runs in a
    sandboxed frame with no scripts, since a caller's name is in it."""

    isLeaf = True

    def __init__(self, maildir: Maildir) -> None:
        super().__init__()
        self.maildir = maildir

    def render_GET(self, request: Request) -> bytes:
        for name, value in _SECURITY.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        path = request.path.decode("ascii", "replace")
        if path == "/":
            mails = []
            for key in self.maildir.keys_newest_first():
                message = self.maildir.message(key)
                if message is not None:
                    mails.append(shown(key, message))
            return _PAGES.get_template("list.html").render(mails=mails).encode()
        if path.startswith("/mail/"):
            key = path.removeprefix("/mail/")
            message = self.maildir.message(key) if "/" not in key else None
            if message is not None:
                return _PAGES.get_template("mail.html").render(mail=shown(key, message)).encode()
        request.setResponseCode(404)
        return b"<!doctype html><title>not found</title><p>No such mail.</p>"
