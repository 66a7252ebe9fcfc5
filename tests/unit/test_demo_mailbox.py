"""The demo mailbox: SMTP in, Maildir kept, page out — with the caller's text escaped."""

from __future__ import annotations

import configparser
from email.message import EmailMessage
from pathlib import Path

from twisted.internet.testing import StringTransport
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from appliance.demo.mailbox import MailboxPage, Maildir, SinkFactory
from appliance.demo.runner import DemoPorts, write_config
from appliance.lab import Lab, LabPorts


def missed_call_mail(caller: str) -> bytes:
    message = EmailMessage()
    message["From"] = "appliance@localhost"
    message["To"] = "203@demo.example"
    message["Subject"] = f"Missed call from {caller}"
    message.set_content(f"{caller} called.")
    message.add_alternative(f"<p>Caller: <b>{caller}</b></p>", subtype="html")
    message.add_attachment("BEGIN:VCARD\nFN:Erika\nEND:VCARD\n", subtype="vcard", filename="caller.vcf")
    return bytes(message)


def deliver(maildir: Maildir, data: bytes) -> StringTransport:
    """One SMTP session with the sink, as the appliance's relay client would have it."""
    protocol = SinkFactory(maildir).buildProtocol(("127.0.0.1", 2525))
    transport = StringTransport()
    protocol.makeConnection(transport)
    for line in [
        b"HELO appliance",
        b"MAIL FROM:<appliance@localhost>",
        b"RCPT TO:<203@demo.example>",
        b"DATA",
    ]:
        protocol.dataReceived(line + b"\r\n")
    protocol.dataReceived(data.replace(b"\n", b"\r\n") + b"\r\n.\r\n")
    protocol.dataReceived(b"QUIT\r\n")
    return transport


def render(page: MailboxPage, path: str) -> tuple[int, str]:
    request = Request(DummyChannel())
    request.path = path.encode()
    body = page.render_GET(request)
    return request.code, body.decode()


def test_sink_keeps_every_mail(tmp_path: Path) -> None:
    """A mail the SMTP sink accepted is in the Maildir, whole."""
    maildir = Maildir(tmp_path / "mail")
    transport = deliver(maildir, missed_call_mail("+49301234567"))
    replies = [line[:3] for line in transport.value().split(b"\r\n") if line]
    assert replies == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], transport.value()
    [key] = maildir.keys_newest_first()
    message = maildir.message(key)
    assert message is not None and message["Subject"] == "Missed call from +49301234567"


def test_page_lists_newest_first_and_escapes_the_caller(tmp_path: Path) -> None:
    """The list shows each mail once, newest first; a caller's markup is text, not HTML."""
    maildir = Maildir(tmp_path / "mail")
    maildir.add(missed_call_mail("first"))
    maildir.add(missed_call_mail("<script>alert(1)</script>"))
    code, body = render(MailboxPage(maildir), "/")
    assert code == 200
    assert body.count('class="mail"') == 2
    assert body.index("&lt;script&gt;") < body.index("Missed call from first")
    assert "<script>" not in body


def test_one_mail_shows_html_in_a_sandbox_and_the_vcard(tmp_path: Path) -> None:
    """The HTML body goes into a sandboxed frame (escaped into srcdoc); the vCard is shown as text."""
    maildir = Maildir(tmp_path / "mail")
    key = maildir.add(missed_call_mail('"><img src=x onerror=alert(1)>'))
    code, body = render(MailboxPage(maildir), f"/mail/{key}")
    assert code == 200
    assert '<iframe title="mail" sandbox srcdoc="&lt;p&gt;Caller:' in body
    assert "<img" not in body
    assert "BEGIN:VCARD" in body and "caller.vcf" in body


def test_arrival_order_is_numeric() -> None:
    """Keys whose microseconds have fewer digits still sort by time, not as strings."""
    from appliance.demo.mailbox import _arrival

    keys = ["100.M99999P1Q1.host", "100.M100000P1Q2.host", "99.M999999P1Q3.host"]
    assert sorted(keys, key=_arrival) == [
        "99.M999999P1Q3.host",
        "100.M99999P1Q1.host",
        "100.M100000P1Q2.host",
    ]


def test_unknown_mail_is_404(tmp_path: Path) -> None:
    page = MailboxPage(Maildir(tmp_path / "mail"))
    assert render(page, "/mail/nothing-here")[0] == 404
    assert render(page, "/mail/../../etc/passwd")[0] == 404
    assert render(page, "/elsewhere")[0] == 404


def test_demo_config_points_the_appliance_at_lab_and_mailbox(tmp_path: Path) -> None:
    """The generated config.ini: the instance's AMI and FastAGI, the mailbox as relay, the state's store."""
    lab = Lab(instance="test8", ports=LabPorts.for_instance("test8"))
    path = write_config(tmp_path, lab, DemoPorts(web=8808, smtp=2528, mailbox=8828))
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    assert (config["ami"]["port"], config["fastagi"]["port"]) == (str(lab.ports.ami), str(lab.ports.fastagi))
    assert (config["smtp"]["host"], config["smtp"]["port"], config["smtp"]["starttls"]) == (
        "127.0.0.1",
        "2528",
        "off",
    )
    assert config["web"]["port"] == "8808"
    assert config["store"]["path"] == str(tmp_path / "appliance.sqlite3")
