"""The contact directory: vCard import and lookup by normalised number."""

from __future__ import annotations

import pytest
import vobject

from appliance.contacts import ContactDirectory, ContactError, NumberPlan
from appliance.testing import MemoryStore

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


def test_plan_from_store() -> None:
    """The admin's area code in contacts_config/plan applies to lookups."""
    store = MemoryStore()
    contacts = ContactDirectory(store)
    contacts.import_vcf(VCF)
    store.put("contacts_config", "plan", {"country": "49", "area": "30"})
    found = contacts.lookup("123456")
    assert found is not None and found.uid == "erika-1"


def test_garbage_is_refused() -> None:
    """A file that is not vCard raises ContactError."""
    with pytest.raises(ContactError):
        ContactDirectory(MemoryStore()).import_vcf("BEGIN:VCARD\nthis is : not\n::\n")
