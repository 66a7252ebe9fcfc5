"""The contact directory: vCard import and lookup by normalised number."""

from __future__ import annotations

import pytest
import vobject
from twisted.internet.task import Clock, Cooperator

from appliance.contacts import INDEX, Contact, ContactDirectory, ContactError, NumberPlan
from appliance.contactsync import ContactJobs
from appliance.numbers import plan_from
from appliance.settings import Settings
from appliance.testing import MemoryStore, synchronous_cooperator

VCF = """\
BEGIN:VCARD
VERSION:3.0
UID:erika-1
FN:Erika Mustermann
ORG:Muster GmbH
TEL;TYPE=WORK:+49 30 123456
TEL;TYPE=CELL:0171 9876543
EMAIL:erika@example.org
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Tür Eingang
TEL:101
END:VCARD
"""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+49 30 123456", "+4930123456"),
        ("0049 30 123456", "+4930123456"),
        ("030/123456", "+4930123456"),
        ("(030) 12-34-56", "+4930123456"),
        ("+1 555 0100", "+15550100"),
        ("200", "200"),
        ("anonymous", "anonymous"),
    ],
)
def test_normalize_germany(raw: str, expected: str) -> None:
    """International, 00-prefixed and national numbers all become E.164; extensions stay."""
    assert NumberPlan().normalize(raw) == expected


def test_normalize_with_area_code() -> None:
    """With an area code configured, a local number gets country and area code."""
    assert NumberPlan(area="30").normalize("123456") == "+4930123456"
    assert NumberPlan(area="30").normalize("12") == "12"
    assert NumberPlan(area="030").normalize("030 123456") == "+4930123456"
    assert NumberPlan(region="AT", area="1").normalize("0664 1234567") == "+436641234567"
    assert NumberPlan(region="CH").normalize("0041 44 123 45 67") == "+41441234567"


def test_import_and_lookup_by_any_spelling() -> None:
    """An imported card is found by each of its numbers in any spelling."""
    contacts = ContactDirectory(MemoryStore())
    imported = contacts.import_vcf(VCF)
    assert [c.name for c in imported] == ["Erika Mustermann", "Tür Eingang"]
    for number in ("+4930123456", "004930123456", "030123456", "+491719876543"):
        found = contacts.lookup(number)
        assert found is not None and found.uid == "erika-1", number
    erika = contacts.lookup("+4930123456")
    assert erika is not None and erika.email == "erika@example.org" and erika.organization == "Muster GmbH"
    assert contacts.lookup("+4940111") is None
    assert contacts.lookup("") is None


def test_stored_vcard_parses_again() -> None:
    """The kept vCard text is a valid card with the contact's name."""
    contacts = ContactDirectory(MemoryStore())
    contacts.import_vcf(VCF)
    erika = contacts.lookup("030123456")
    assert erika is not None
    card = vobject.readOne(erika.vcard)
    assert card.fn.value == "Erika Mustermann"


def test_reimport_replaces_by_uid() -> None:
    """Importing a card with a known UID replaces the old one."""
    contacts = ContactDirectory(MemoryStore())
    contacts.import_vcf(VCF)
    contacts.import_vcf(
        VCF.split("BEGIN:VCARD\nVERSION:3.0\nFN:T")[0].replace("Erika Mustermann", "Erika M.")
    )
    assert [c.name for c in contacts.contacts() if c.uid == "erika-1"] == ["Erika M."]


def test_plan_from_settings() -> None:
    """The admin's country and area code (settings) apply to lookups after a re-index."""
    store = MemoryStore()
    settings = Settings(store)
    contacts = ContactDirectory(store, plan=lambda: plan_from(settings.get))
    contacts.import_vcf(VCF.replace("+49 30 123456", "123456"))
    assert contacts.lookup("123456") is not None
    assert contacts.lookup("+4930123456") is None
    settings.set_many({"PHONE_AREA": "30"})
    jobs = ContactJobs(contacts, synchronous_cooperator(), Clock())
    assert jobs.reindex().result == 2
    found = contacts.lookup("+4930123456")
    assert found is not None and found.uid == "erika-1"
    assert contacts.lookup("030 123456") == found


def test_index_follows_replace_and_delete() -> None:
    """A replaced card is no longer found by its old number; a deleted one by none."""
    contacts = ContactDirectory(MemoryStore())
    contacts.import_vcf(VCF)
    contacts.import_vcf(VCF.replace("0171 9876543", "0172 1111111"))
    assert contacts.lookup("01719876543") is None
    assert contacts.lookup("+491721111111").uid == "erika-1"
    contacts.delete("erika-1")
    assert contacts.lookup("+491721111111") is None and contacts.lookup("+4930123456") is None
    assert [key for key, _ in contacts.store.items(INDEX) if "erika-1" in key] == []


def test_pages_and_search() -> None:
    """The page lists contacts by name in pages and finds them by word or number."""
    contacts = ContactDirectory(MemoryStore())
    contacts.put(Contact(f"u{i:02}", f"Person {i:02}", (f"030 5555{i:02}",)) for i in range(25))
    contacts.put([Contact("m", "Max Muster", ("0171 1",), organization="Acme Tools")])
    first, cursor = contacts.page(limit=10)
    assert [c.name for c in first] == ["Max Muster"] + [f"Person {i:02}" for i in range(9)]
    second, cursor = contacts.page(after=cursor, limit=10)
    third, cursor = contacts.page(after=cursor, limit=10)
    assert [c.uid for c in second + third] == [f"u{i:02}" for i in range(9, 25)] and cursor == ""
    assert [c.uid for c in contacts.page(search="acme")[0]] == ["m"]
    assert [c.uid for c in contacts.page(search="MUS")[0]] == ["m"]
    assert [c.uid for c in contacts.page(search="+49 30 555507")[0]] == ["u07"]
    assert contacts.page(search="nobody") == ([], "")


def test_large_import_runs_in_slices() -> None:
    """The sliced import parses every card before writing and reports progress."""
    contacts = ContactDirectory(MemoryStore())
    cards = "".join(
        f"BEGIN:VCARD\nVERSION:3.0\nUID:c{i}\nFN:Card {i}\nTEL:030 {100000 + i}\nEND:VCARD\n"
        for i in range(450)
    )
    clock = Clock()
    one_step_per_slice = Cooperator(
        scheduler=lambda run: clock.callLater(0.01, run), terminationPredicateFactory=lambda: lambda: True
    )
    jobs = ContactJobs(contacts, one_step_per_slice, clock)
    done = jobs.import_vcf(cards)
    slices = 0
    while not done.called:
        clock.advance(0.01)
        slices += 1
    assert done.result == 450
    assert slices == 450 + 9 + 1  # a turn after each card, each batch of 50, and the end
    assert jobs.status["vcf"].result == "450 contacts imported" and not jobs.status["vcf"].running
    assert contacts.lookup("+4930100449").name == "Card 449"


def test_malformed_large_import_stores_nothing() -> None:
    """A bad card at the end of a large file: nothing stored, the reason in the status."""
    contacts = ContactDirectory(MemoryStore())
    cards = "BEGIN:VCARD\nVERSION:3.0\nUID:a\nFN:A\nTEL:1\nEND:VCARD\nBEGIN:VCARD\nbroken : :\n"
    jobs = ContactJobs(contacts, synchronous_cooperator(), Clock())
    jobs.import_vcf(cards).addErrback(lambda failure: failure.trap(ContactError))
    assert contacts.contacts() == []
    assert not jobs.status["vcf"].ok and "not a valid vCard file" in jobs.status["vcf"].result


def test_garbage_is_refused() -> None:
    """A file that is not vCard raises ContactError."""
    with pytest.raises(ContactError):
        ContactDirectory(MemoryStore()).import_vcf("BEGIN:VCARD\nthis is : not\n::\n")


def test_same_uid_twice_in_one_file() -> None:
    """The later card of a UID wins and the earlier one's numbers leave the index."""
    contacts = ContactDirectory(MemoryStore())
    contacts.put([Contact("a", "First", ("030 1111",)), Contact("a", "Second", ("030 2222",))])
    assert contacts.lookup("+49301111") is None
    assert contacts.lookup("+49302222").name == "Second"
    assert contacts.count() == 1


def test_contacts_from_before_the_index_are_indexed() -> None:
    """Records an older version stored (no index, no count) are found after a re-index."""
    store = MemoryStore()
    store.put("contacts", "old-1", {"uid": "old-1", "name": "Alt Kontakt", "numbers": ["030 777"]})
    contacts = ContactDirectory(store)
    assert contacts.needs_index() and contacts.lookup("+4930777") is None
    ContactJobs(contacts, synchronous_cooperator(), Clock()).reindex()
    assert contacts.lookup("030777").name == "Alt Kontakt"
    assert contacts.count() == 1 and not contacts.needs_index()


def test_sources_sync_at_start_periodically_and_never_twice_at_once() -> None:
    """Each address book syncs when the service starts and every interval; "sync now"
    while one runs starts no second one."""
    from twisted.internet.defer import Deferred

    from appliance.contactsync import ContactSources

    started: list[Deferred[None]] = []

    class Book:
        def sync(self) -> Deferred[None]:
            started.append(Deferred())
            return started[-1]

    clock = Clock()
    sources = ContactSources({"carddav": Book()}, clock, minutes=60)
    sources.startService()
    assert len(started) == 1
    sources.sync_all()
    assert len(started) == 1  # still running
    started[0].callback(None)
    sources.sync_all()
    assert len(started) == 2
    started[1].callback(None)
    clock.advance(3600)
    assert len(started) == 3
    sources.stopService()
    clock.advance(3600)
    assert len(started) == 3


def test_old_hidden_plan_becomes_the_visible_settings() -> None:
    """A plan in contacts_config/plan (earlier versions) moves into PHONE_COUNTRY and
    PHONE_AREA; the old key is gone; settings the admin set are kept."""
    from appliance.numbers import migrate_old_plan

    store = MemoryStore()
    settings = Settings(store)
    store.put("contacts_config", "plan", {"country": "43", "area": "01"})
    migrate_old_plan(store, settings)
    assert (settings.get("PHONE_COUNTRY"), settings.get("PHONE_AREA")) == ("AT", "1")
    assert store.get("contacts_config", "plan") is None
    store.put("contacts_config", "plan", {"country": "49", "area": "30"})
    migrate_old_plan(store, settings)
    assert (settings.get("PHONE_COUNTRY"), settings.get("PHONE_AREA")) == ("AT", "1")
