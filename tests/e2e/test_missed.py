"""Missed-call mail end to end: sipp phones and a sipp trunk, the real Asterisk,
the appliance in-process, and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import lxml.html
import pytest
import pytest_twisted
import vobject
from aiosmtpd.controller import Controller
from twisted.internet.defer import DeferredList, inlineCallbacks

from appliance import tap
from appliance.directory import Directory, Group, User
from appliance.lab import Lab
from appliance.pbx import Presence
from tests.e2e.conftest import appliance_config
from tests.e2e.phones import Phone, SippRun
from tests.e2e.portblocks import PortBlocks
from tests.e2e.waiting import wait_model, wait_synced, wait_until

EXTERNAL = "+4930123456"
VCF = """\
BEGIN:VCARD
VERSION:3.0
UID:erika-e2e
FN:Erika Mustermann
ORG:Muster GmbH
TEL;TYPE=WORK:030 123456
EMAIL:erika@example.org
END:VCARD
"""
USERS = {"200": "Anna Berger", "201": "Bernd Croft", "202": "Clara Dietz"}


class Inbox:
    """A real SMTP server on loopback; arrivals are announced in the reactor thread."""

    def __init__(self, reactor: Any, port: int) -> None:
        self.reactor = reactor
        self.port = port
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._observers: list[Callable[[object], None]] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.content)
        self.reactor.callFromThread(self._arrived, envelope.mail_from, list(envelope.rcpt_tos), data)
        return "250 OK"

    def _arrived(self, sender: str, rcpt: list[str], data: bytes) -> None:
        self.envelopes.append((sender, rcpt))
        self.messages.append(email.message_from_bytes(data, policy=email.policy.default))
        for observer in list(self._observers):
            observer(data)

    def subscribe(self, observer: Callable[[object], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"].addresses[0].addr_spec == address]


class Rig:
    """One appliance with its own store and relay port, plus helpers for calls."""

    def __init__(self, tmp_path: Path, lab: Lab, reactor: Any, smtp_port: int) -> None:
        self.lab = lab
        self.reactor = reactor
        self.config = appliance_config(tmp_path, lab)
        text = self.config.read_text().replace("port = 2525", f"port = {smtp_port}")
        self.config.write_text(text)
        self.appliance: Any = None
        self.decisions: list[Any] = []

    @inlineCallbacks
    def start(self) -> Any:
        self.appliance = tap.build(str(self.config), self.reactor)
        self.appliance.outbox.backoff = lambda attempt: 1.0
        self.appliance.missed.subscribe(lambda call, decision: self.decisions.append((call, decision)))
        self.appliance.startService()
        yield wait_synced(self.reactor, self.appliance)

    def stop(self) -> Any:
        appliance, self.appliance = self.appliance, None
        return appliance.stopService() if appliance is not None else None

    def setup_directory(self) -> None:
        directory = Directory(self.appliance.store)
        for ext, name in USERS.items():
            directory.put_user(
                User(ext, name, f"u{ext}@example.org", language="de" if ext != "201" else "en")
            )
        directory.put_group(Group("sales", "600", ("200", "201", "202")))
        self.appliance.contacts.import_vcf(VCF)

    def wait_decision(self, extension: str = "200") -> Any:
        """Until the call that rang ``extension`` was decided; fires with (call, decision)."""
        missed = self.appliance.missed

        def found() -> Any:
            for call, decision in self.decisions:
                if extension in {leg.endpoint for leg in call.legs.values()}:
                    return call, decision
            return None

        def subscribe(callback: Callable[[object], None]) -> Callable[[], None]:
            return missed.subscribe(lambda call, decision: callback(call))

        return wait_until(self.reactor, subscribe, found, f"the call to {extension} decided", timeout=30)

    def wait_outbox_settled(self) -> Any:
        """Until every queued mail is sent (or failed for good)."""
        outbox = self.appliance.outbox

        def settled() -> bool:
            return all(r.get("state") != "pending" for _, r in outbox.entries())

        def subscribe(callback: Callable[[object], None]) -> Callable[[], None]:
            return outbox.subscribe(lambda key, state: callback(key))

        return wait_until(self.reactor, subscribe, settled, "outbox delivered", timeout=30)


@pytest.fixture
def relay_port(lab: Lab) -> Iterator[int]:
    """A port of the lab instance's own range for the SMTP relay: nobody else binds it."""
    blocks = PortBlocks.for_lab(lab.ports)
    block = blocks.take()
    yield block.tcp[0]
    blocks.release(block)


@pytest.fixture
def inbox(reactor: Any, relay_port: int) -> Iterator[Inbox]:
    box = Inbox(reactor, relay_port)
    box.start()
    yield box
    box.stop()


@pytest.fixture
def rig(tmp_path: Path, lab: Lab, reactor: Any, inbox: Inbox) -> Iterator[Rig]:
    rig = Rig(tmp_path, lab, reactor, inbox.port)
    pytest_twisted.blockon(rig.start())
    rig.setup_directory()
    yield rig
    result = rig.stop()
    if result is not None:
        pytest_twisted.blockon(result)


def run(phone: Phone, scenario: str, values: dict[str, object], listen: bool = False) -> SippRun:
    return phone._run(scenario, values, local_port=phone.port if listen else None)


def identity(number: str) -> str:
    if number == "anonymous":
        return "P-Asserted-Identity: <sip:anonymous@anonymous.invalid>\nPrivacy: id"
    return f"P-Asserted-Identity: <sip:{number}@127.0.0.1>"


def call_and_cancel(
    phones: Callable[[str], Phone], target: str, ring_ms: int, caller: str = "trunk", number: str = EXTERNAL
) -> SippRun:
    phone = phones(caller)
    values = {"target": target, "ring_ms": ring_ms, "name": "Erika", "identity_header": identity(number)}
    if caller != "trunk":
        values["identity_header"] = "X-Test: internal"
    return run(phone, "mc_call_cancel", values)


@inlineCallbacks
def ringing_phones(rig: Rig, phones: Callable[[str], Phone], *extensions: str) -> Any:
    """Register the extensions and let each ring until CANCEL."""
    pbx = rig.appliance.pbx
    made = {ext: phones(ext) for ext in extensions}
    yield DeferredList([p.register().done for p in made.values()], fireOnOneErrback=True)
    for ext in extensions:
        idle = partial(lambda e: pbx.presence(e) is Presence.IDLE, ext)
        yield wait_model(rig.reactor, pbx, idle, f"{ext} logged in")
    return [run(made[ext], "mc_ring", {}, listen=True) for ext in extensions]


def parse_html(mail: EmailMessage) -> Any:
    return lxml.html.fromstring(mail.get_body(("html",)).get_content())


@pytest_twisted.inlineCallbacks
def test_unanswered_external_call_one_mail(rig: Rig, inbox: Inbox, phones: Any) -> Any:
    """An external call to 200 nobody answers: exactly one mail to 200's owner with a
    tel: link to the caller's number and a vCard that parses."""
    [ringing] = yield ringing_phones(rig, phones, "200")
    calling = call_and_cancel(phones, "200", ring_ms=3000)
    results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield rig.wait_decision()
    yield wait_until(rig.reactor, inbox.subscribe, lambda: inbox.messages, "a mail arrives")
    yield rig.wait_outbox_settled()

    assert len(inbox.messages) == 1
    [mail] = inbox.to("u200@example.org")
    assert inbox.envelopes == [("appliance@localhost", ["u200@example.org"])]
    assert str(mail["Subject"]) == "Verpasster Anruf von Erika Mustermann"
    links = parse_html(mail).xpath("//a")
    assert [(a.get("href"), a.text_content()) for a in links] == [(f"tel:{EXTERNAL}", EXTERNAL)]
    [attachment] = list(mail.iter_attachments())
    card = vobject.readOne(attachment.get_content())
    assert card.fn.value == "Erika Mustermann"
    [entry] = rig.appliance.missed.journal.entries("200")
    assert entry.caller_num == EXTERNAL and entry.ring_seconds >= 2


@pytest.mark.parametrize(
    ("recipients", "expected"), [("first", 1), ("last", 1), ("all", 3)], ids=["first", "last", "all"]
)
@pytest_twisted.inlineCallbacks
def test_group_call_mails_per_policy(
    rig: Rig, inbox: Inbox, phones: Any, recipients: str, expected: int
) -> Any:
    """A group call ringing 200, 201, 202: mails per MC_RECIPIENTS, never two to one user."""
    rig.appliance.settings.set("MC_RECIPIENTS", recipients)
    ringing = yield ringing_phones(rig, phones, "200", "201", "202")
    calling = call_and_cancel(phones, "600", ring_ms=3000)
    results = yield DeferredList([r.done for r in ringing] + [calling.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    call, decision = yield rig.wait_decision()
    assert sorted(leg.endpoint for leg in call.rung_legs()) == ["200", "201", "202"]
    yield rig.wait_outbox_settled()
    yield wait_until(rig.reactor, inbox.subscribe, lambda: len(inbox.messages) >= expected, "mails arrive")

    to = [m["To"].addresses[0].addr_spec for m in inbox.messages]
    assert len(to) == expected == len(set(to))
    assert sorted(to) == sorted(f"u{u}@example.org" for u in decision.mail)
    if recipients == "first":
        assert decision.mail == decision.journal[:1]
    if recipients == "last":
        assert decision.mail == decision.journal[-1:]


@pytest.mark.parametrize("option", [False, True], ids=["option-off", "option-on"])
@pytest_twisted.inlineCallbacks
def test_pickup_mails_only_with_option(rig: Rig, inbox: Inbox, phones: Any, option: bool) -> Any:
    """201 picks up the call ringing at 200 (*8200, PickupChan): a mail to 200 only
    with MC_MAIL_IF_PICKED_UP on."""
    rig.appliance.settings.set("MC_MAIL_IF_PICKED_UP", option)
    [ringing] = yield ringing_phones(rig, phones, "200")
    pbx = rig.appliance.pbx
    caller = run(
        phones("trunk"),
        "mc_call_answered",
        {"target": "200", "hold_ms": 1500, "name": "Erika", "identity_header": identity(EXTERNAL)},
    )
    yield wait_model(rig.reactor, pbx, lambda: pbx.presence("200") is Presence.RINGING, "200 ringing")
    picker = run(phones("201"), "mc_pickup", {"target": "*8200"})
    results = yield DeferredList([ringing.done, caller.done, picker.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    call, decision = yield rig.wait_decision()
    assert call.answered_by() == "201"
    assert decision.journal == ("200",)
    yield rig.wait_outbox_settled()
    if option:
        yield wait_until(rig.reactor, inbox.subscribe, lambda: inbox.messages, "a mail arrives")
        assert [m["To"].addresses[0].addr_spec for m in inbox.messages] == ["u200@example.org"]
    else:
        assert decision.mail == () and rig.appliance.outbox.entries() == [] and inbox.messages == []


REASONS = {
    "MC_EXCLUDE_SHORT_RING": "rang less than 2 seconds",
    "MC_EXCLUDE_INTERNAL": "internal caller",
    "MC_EXCLUDE_SUPPRESSED": "suppressed number",
    "MC_EXCLUDE_NUMBERS": "number on the exclusion list",
}
EXCEPTIONS = [
    # (switch, caller endpoint, caller number, ring ms)
    ("MC_EXCLUDE_SHORT_RING", "trunk", EXTERNAL, 800),
    ("MC_EXCLUDE_INTERNAL", "100", "100", 3000),
    ("MC_EXCLUDE_SUPPRESSED", "trunk", "anonymous", 3000),
    ("MC_EXCLUDE_NUMBERS", "101", "101", 3000),  # a door phone
]


@pytest.mark.parametrize(
    ("switch", "endpoint", "number", "ring_ms"), EXCEPTIONS, ids=[e[0] for e in EXCEPTIONS]
)
@pytest_twisted.inlineCallbacks
def test_exception_switch_means_no_mail(
    rig: Rig, inbox: Inbox, phones: Any, switch: str, endpoint: str, number: str, ring_ms: int
) -> Any:
    """With the switch on, this call leaves a journal entry and no mail."""
    value: object = ["101"] if switch == "MC_EXCLUDE_NUMBERS" else True
    rig.appliance.settings.set(switch, value)
    [ringing] = yield ringing_phones(rig, phones, "200")
    calling = call_and_cancel(phones, "200", ring_ms=ring_ms, caller=endpoint, number=number)
    results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    call, decision = yield rig.wait_decision()
    assert decision.journal == ("200",) and decision.mail == ()
    assert rig.appliance.outbox.entries() == [] and inbox.messages == []
    assert decision.reasons == {"200": REASONS[switch]}  # this switch, nothing else, stopped it
    if switch == "MC_EXCLUDE_SUPPRESSED":
        assert call.suppressed
    if switch == "MC_EXCLUDE_SHORT_RING":
        assert call.rung_legs()[0].ring_seconds < 2


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restarted"])
@pytest_twisted.inlineCallbacks
def test_relay_down_then_up_exactly_once(
    tmp_path: Path, lab: Lab, reactor: Any, phones: Any, restart: bool, relay_port: int
) -> Any:
    """The relay is down when the mail is due; it arrives exactly once when the relay is
    back, also when the appliance was restarted in between."""
    inbox = Inbox(reactor, relay_port)
    rig = Rig(tmp_path, lab, reactor, inbox.port)
    yield rig.start()
    try:
        rig.setup_directory()
        outbox = rig.appliance.outbox
        failures: list[str] = []
        outbox.subscribe(lambda key, state: failures.append(key) if state == "pending" else None)
        [ringing] = yield ringing_phones(rig, phones, "200")
        calling = call_and_cancel(phones, "200", ring_ms=2500)
        yield DeferredList([ringing.done, calling.done], fireOnOneErrback=True)
        yield rig.wait_decision()
        subscribe = outbox.subscribe
        yield wait_until(
            reactor, lambda cb: subscribe(lambda k, s: cb(k)), lambda: failures, "a failed attempt"
        )
        [(key, record)] = outbox.entries()
        assert record["state"] == "pending" and record["attempts"] >= 1
        if restart:
            yield rig.stop()
            inbox.start()
            yield rig.start()
        else:
            inbox.start()
        yield rig.wait_outbox_settled()
        yield wait_until(reactor, inbox.subscribe, lambda: inbox.messages, "the mail arrives")
        assert rig.appliance.outbox.entry(key)["state"] == "sent"
        rig.appliance.outbox.retry_now()  # nothing pending: nothing is sent again
        yield rig.wait_outbox_settled()
        assert len(inbox.messages) == 1
        assert inbox.messages[0]["Message-ID"] == record["message_id"]
    finally:
        yield rig.stop()
        inbox.stop()
