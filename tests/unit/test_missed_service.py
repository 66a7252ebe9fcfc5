"""The notifier: PBX events in, journal entries and mails out (in memory, with a Clock)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import lxml.html
import pytest
import vobject
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from appliance import tap
from appliance.contacts import ContactDirectory
from appliance.directory import Directory, User
from appliance.mail import Outbox
from appliance.missed.journal import Journal
from appliance.missed.service import JUDGE_DELAY, MissedCallService
from appliance.pbx import Endpoint
from appliance.pickup import directed_pickup
from appliance.settings import Settings
from appliance.testing import MemoryStore
from tests.unit.test_config import shipped, write
from tests.unit.test_missed_tracking import Script

VCF = (
    "BEGIN:VCARD\nVERSION:3.0\nUID:erika\nFN:Erika Mustermann\nTEL:+49 30 123456\n"
    "EMAIL:erika@example.org\nEND:VCARD\n"
)
EXTERNAL = "+4930123456"


class Rig:
    def __init__(self) -> None:
        self.script = Script()
        self.store = MemoryStore()
        self.settings = Settings(self.store)
        self.directory = Directory(self.store)
        self.contacts = ContactDirectory(self.store)
        self.sent: list[EmailMessage] = []
        self.outbox = Outbox(self.store, self.send, self.script.clock)
        self.service = MissedCallService(
            self.script.model,
            self.settings,
            self.directory,
            self.contacts,
            self.outbox,
            self.script.clock,
            sender="pbx@example.org",
        )
        self.journal = Journal(self.store)
        for ext, lang in (("200", "de"), ("201", "en"), ("202", "de")):
            self.directory.put_user(User(ext, f"User {ext}", f"u{ext}@example.org", language=lang))
        self.contacts.import_vcf(VCF)
        self.outbox.startService()
        self.service.startService()
        self.script.wait(1000)

    def send(self, sender: str, to: list[str], data: bytes) -> Deferred[Any]:
        self.sent.append(email.message_from_bytes(data, policy=email.policy.default))
        return succeed(None)

    def deliver(self) -> None:
        self.script.clock.advance(0)

    def recipients(self) -> list[str]:
        return [str(m["To"].addresses[0].addr_spec) for m in self.sent]


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_unanswered_external_call_mails_the_owner(rig: Rig) -> None:
    """One mail to 200's owner, German, with a tel: link and the contact's vCard."""
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8, name="Erika")
    rig.deliver()
    [mail] = rig.sent
    assert rig.recipients() == ["u200@example.org"]
    assert str(mail["Subject"]) == "Verpasster Anruf von Erika Mustermann"
    html = lxml.html.fromstring(mail.get_body(("html",)).get_content())
    assert [a.get("href") for a in html.xpath("//a")] == ["tel:+4930123456"]
    [card] = [vobject.readOne(part.get_content()) for part in mail.iter_attachments()]
    assert card.fn.value == "Erika Mustermann"
    [entry] = rig.journal.entries("200")
    assert (entry.caller_num, entry.ring_seconds, entry.mailed, entry.seen) == (EXTERNAL, 8.0, True, False)


def test_english_user_gets_english_mail(rig: Rig) -> None:
    """The recipient's language picks the template."""
    rig.script.unanswered("trunk", EXTERNAL, ["201"], ring=8)
    rig.deliver()
    assert str(rig.sent[0]["Subject"]) == "Missed call from Erika Mustermann"


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [("all", ["u200", "u201", "u202"]), ("first", ["u200"]), ("last", ["u202"]), ("none", [])],
)
def test_group_call_recipients(rig: Rig, recipients: str, expected: list[str]) -> None:
    """A group call nobody answers: one mail per picked user, never two."""
    rig.settings.set("MC_RECIPIENTS", recipients)
    caller = rig.script.caller("trunk", EXTERNAL)
    legs = []
    for ext in ("200", "201", "202"):
        legs.append(rig.script.dial(caller, ext))
        rig.script.wait(0.2)
    rig.script.wait(10)
    rig.script.hangup(*legs, caller)
    rig.deliver()
    rig.script.clock.advance(3600)
    assert sorted(r.split("@")[0] for r in rig.recipients()) == expected
    assert all(len(rig.journal.entries(ext)) == 1 for ext in ("200", "201", "202"))


def test_two_phones_of_one_user_make_one_mail(rig: Rig) -> None:
    """Parallel ringing to a user's second line (a further number) gives one mail."""
    rig.directory.put_user(User("200", "User 200", "u200@example.org", numbers=("2000",)))
    rig.script.unanswered("trunk", EXTERNAL, ["200", "2000"], ring=8)
    rig.deliver()
    assert rig.recipients() == ["u200@example.org"]


@pytest.mark.parametrize(("option", "mails"), [(False, 0), (True, 1)])
def test_pickup_mails_only_with_the_option(rig: Rig, option: bool, mails: int) -> None:
    """A call picked up at 201 mails 200 only with MC_MAIL_IF_PICKED_UP on."""
    rig.settings.set("MC_MAIL_IF_PICKED_UP", option)
    caller = rig.script.caller("trunk", EXTERNAL)
    leg = rig.script.dial(caller, "200")
    rig.script.wait(5)
    rig.script.pickup(leg, "201")
    rig.script.wait(20)
    rig.script.hangup(leg, caller)
    rig.deliver()
    assert len(rig.sent) == mails
    assert rig.journal.entries("200")[0].answered_by == "201"


def test_caller_as_sender(rig: Rig) -> None:
    """With MC_CALLER_AS_SENDER the contact's address is From, the appliance Sender."""
    rig.settings.set("MC_CALLER_AS_SENDER", True)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    [mail] = rig.sent
    assert mail["From"].addresses[0].addr_spec == "erika@example.org"
    assert mail["Sender"].addresses[0].addr_spec == "pbx@example.org"


def test_no_vcard_when_switched_off(rig: Rig) -> None:
    """MC_ATTACH_VCARD off: no attachment."""
    rig.settings.set("MC_ATTACH_VCARD", False)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    assert list(rig.sent[0].iter_attachments()) == []


def test_user_without_email_or_opted_out_has_journal_only(rig: Rig) -> None:
    """No e-mail address, or opted out: the journal still records the call."""
    rig.directory.put_user(User("200", "User 200"))
    rig.journal.set_opt_in("201", False)
    rig.script.unanswered("trunk", EXTERNAL, ["200", "201"], ring=8)
    rig.deliver()
    assert rig.sent == []
    assert len(rig.journal.entries("200")) == 1 and len(rig.journal.entries("201")) == 1


@pytest.mark.parametrize(
    ("setting", "value", "caller_endpoint", "number", "ring"),
    [
        ("MC_EXCLUDE_INTERNAL", True, "100", "100", 8.0),
        ("MC_EXCLUDE_SUPPRESSED", True, "trunk", "anonymous", 8.0),
        ("MC_EXCLUDE_UNRESOLVED", True, "trunk", "+4940999999", 8.0),
        ("MC_EXCLUDE_SHORT_RING", True, "trunk", EXTERNAL, 1.5),
        ("MC_EXCLUDE_NUMBERS", "030123456, 101", "trunk", EXTERNAL, 8.0),
    ],
)
def test_exceptions_suppress_the_mail(
    rig: Rig, setting: str, value: object, caller_endpoint: str, number: str, ring: float
) -> None:
    """Each exception switch: no mail when on, a mail when off; the journal either way."""
    rig.script.unanswered(caller_endpoint, number, ["200"], ring=ring)
    rig.deliver()
    assert len(rig.sent) == 1
    rig.settings.set(setting, value)
    rig.script.wait(86400 * 2)
    rig.script.unanswered(caller_endpoint, number, ["200"], ring=ring)
    rig.deliver()
    assert len(rig.sent) == 1
    assert len(rig.journal.entries("200")) == 2


def test_answered_call_is_not_missed(rig: Rig) -> None:
    """A call 200 answers itself leaves no journal entry and no mail."""
    caller = rig.script.caller("trunk", EXTERNAL)
    leg = rig.script.dial(caller, "200")
    rig.script.wait(3)
    rig.script.answer(leg)
    rig.script.wait(30)
    rig.script.hangup(leg, caller)
    rig.deliver()
    assert rig.sent == [] and rig.journal.entries("200") == []


def test_journal_newest_first_and_mark_seen(rig: Rig) -> None:
    """The journal lists newest first; marking seen changes only the named entries."""
    first = rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=3)
    rig.script.wait(60)
    second = rig.script.unanswered("trunk", "+4940111", ["200"], ring=3)
    assert [e.id for e in rig.journal.entries("200")] == [second, first]
    assert rig.journal.unseen("200") == 2
    assert rig.journal.mark_seen("200", [first]) == 1
    assert [e.seen for e in rig.journal.entries("200")] == [False, True]
    assert rig.journal.mark_seen("200") == 1 and rig.journal.unseen("200") == 0


def test_directed_pickup_runs_pickupchan() -> None:
    """*8200 runs PickupChan(PJSIP/200); anything else plays 'invalid'."""
    ran: list[tuple[str, str]] = []

    class Session:
        def exec_(self, app: str, options: str = "") -> Deferred[int]:
            ran.append((app, options))
            return succeed(0)

    directed_pickup(Session(), "*8", "200")
    directed_pickup(Session(), "*8", "2&PJSIP/3")
    assert ran == [("PickupChan", "PJSIP/200"), ("Playback", "invalid")]


def test_tap_wires_notifier_outbox_and_pickup(tmp_path: Path) -> None:
    """The appliance built from config.ini has the notifier on the PBX model, the
    outbox under its service tree, and *8 registered for directed pickup."""
    service = tap.build(str(write(tmp_path, shipped())), MemoryReactorClock())
    assert service.missed.pbx is service.pbx and service.missed.outbox is service.outbox
    assert service.outbox.parent is service and service.missed.parent is service
    assert service.feature_codes.lookup("*8200") == ("*8", directed_pickup)
    service.store.close()


def test_journal_names_the_caller_from_the_directory(rig: Rig) -> None:
    """The journal shows the contact's name, not the name the caller sent; an unknown
    number keeps the caller ID name."""
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8, name="Spoofed Name")
    rig.script.unanswered("trunk", "+4940999999", ["201"], ring=8, name="Someone")
    [known] = rig.journal.entries("200")
    [unknown] = rig.journal.entries("201")
    assert (known.caller_name, unknown.caller_name) == ("Erika Mustermann", "Someone")


def test_exclusion_list_in_another_spelling(rig: Rig) -> None:
    """MC_EXCLUDE_NUMBERS "030 123456" (as the admin typed it) stops the mail for +4930123456;
    the journal entry is written all the same."""
    rig.settings.set("MC_EXCLUDE_NUMBERS", "0171 555\n030 123456")
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    assert rig.sent == []
    assert len(rig.journal.entries("200")) == 1


# -- language, journal settings, "logged in again" -----------------------------


def subject(mail: EmailMessage) -> str:
    return str(mail["Subject"])


def test_language_precedence_user_then_setting_then_appliance(rig: Rig) -> None:
    """A user who chose no language gets MC_LANGUAGE, else the appliance's language;
    a user's own choice beats both."""
    rig.directory.put_user(User("202", "User 202", "u202@example.org", language=""))
    rig.service.language = "en"
    rig.script.unanswered("trunk", EXTERNAL, ["202"], ring=8)
    rig.settings.set("MC_LANGUAGE", "de")
    rig.script.unanswered("trunk", EXTERNAL, ["202"], ring=8)
    rig.script.unanswered("trunk", EXTERNAL, ["201"], ring=8)  # 201 chose English
    rig.deliver()
    assert [subject(m) for m in rig.sent] == [
        "Missed call from Erika Mustermann",
        "Verpasster Anruf von Erika Mustermann",
        "Missed call from Erika Mustermann",
    ]


def test_journal_off_keeps_the_mail(rig: Rig) -> None:
    """JOURNAL_ENABLED off: no journal entry, the mail still goes out, and the repeat
    exception still knows the earlier call."""
    rig.settings.set_many({"JOURNAL_ENABLED": False, "MC_EXCLUDE_REPEAT_SAME_DAY": True})
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    assert rig.recipients() == ["u200@example.org"]
    assert rig.journal.entries("200") == []


def test_journal_keeps_at_most_the_configured_entries(rig: Rig) -> None:
    """JOURNAL_MAX_ENTRIES bounds a user's journal; the newest stay."""
    rig.settings.set("JOURNAL_MAX_ENTRIES", 10)
    callers = [rig.script.unanswered("trunk", f"+49301000{i:02d}", ["200"], ring=3) for i in range(12)]
    entries = rig.journal.entries("200")
    assert len(entries) == 10
    assert [e.id for e in entries] == list(reversed(callers))[:10]


def test_journal_retention_prunes_old_entries_daily(rig: Rig) -> None:
    """Entries older than JOURNAL_RETENTION_DAYS go at the next daily pruning."""
    rig.settings.set("JOURNAL_RETENTION_DAYS", 2)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=3)
    rig.script.wait(86400)
    assert len(rig.journal.entries("200")) == 1
    rig.script.wait(86400 * 2)
    assert rig.journal.entries("200") == []


@pytest.mark.parametrize("how", ["web login", "journal seen", "phone registers"])
def test_repeat_until_login_ends_with_whichever_login_comes_first(rig: Rig, how: str) -> None:
    """A registered desk phone no longer silences a repeat caller for ever: a web login
    or marking the journal seen counts as logging in again, like a re-registration."""
    rig.settings.set("MC_EXCLUDE_REPEAT_UNTIL_LOGIN", True)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.script.wait(86400 * 3)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    assert len(rig.sent) == 1
    if how == "phone registers":
        rig.script.model._set_endpoint(Endpoint("200", contacts=frozenset({"sip:200@127.0.0.1"})))
    else:
        rig.service.user_logged_in("200")
    rig.script.wait(60)
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=8)
    rig.deliver()
    assert len(rig.sent) == 2


def test_caller_memory_is_pruned(rig: Rig) -> None:
    """Callers older than two days and before the last login are forgotten."""
    rig.script.unanswered("trunk", EXTERNAL, ["200"], ring=3)
    rig.script.wait(86400 * 3)
    rig.service.user_logged_in("200")
    rig.script.unanswered("trunk", "+4940111", ["200"], ring=3)
    assert [e.caller_key for e in rig.journal.history(["200"])["200"]] == ["+4940111"]


def _end_in_one_read(rig: Rig, *uids: str) -> None:
    """Hangup events as one AMI read delivers them, before the reactor's next turn."""
    for uid in uids:
        rig.script.model.handle({"Event": "Hangup", "Uniqueid": uid, "Cause": "16"})


def test_finished_call_is_judged_a_moment_later(rig: Rig) -> None:
    """The store reads of judging a call wait JUDGE_DELAY, so the events after the
    last Hangup in the same AMI read (the DeviceStateChange that frees a callback's
    target, issue 19), and the recall they start, are not held behind them."""
    judged: list[str] = []
    rig.service.subscribe(lambda call, _decision: judged.append(call.linkedid))
    caller = rig.script.caller("trunk", EXTERNAL)
    leg = rig.script.dial(caller, "200")
    rig.script.wait(5)
    rig.script.end_dial(leg)
    _end_in_one_read(rig, leg, caller)
    rig.script.clock.advance(0)
    assert judged == []
    assert rig.journal.entries("200") == []
    rig.script.clock.advance(JUDGE_DELAY)
    assert judged == [caller]
    assert [e.id for e in rig.journal.entries("200")] == [caller]


def test_stopping_judges_the_calls_that_just_ended(rig: Rig) -> None:
    """A call that ended just before the service stops is judged at the stop, once."""
    judged: list[str] = []
    rig.service.subscribe(lambda call, _decision: judged.append(call.linkedid))
    caller = rig.script.caller("trunk", EXTERNAL)
    leg = rig.script.dial(caller, "200")
    rig.script.wait(5)
    rig.script.end_dial(leg)
    _end_in_one_read(rig, leg, caller)
    rig.service.stopService()
    assert judged == [caller]
    rig.script.clock.advance(JUDGE_DELAY)
    assert judged == [caller]
    assert [e.id for e in rig.journal.entries("200")] == [caller]
