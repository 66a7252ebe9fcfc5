"""The contact directory: who is calling, resolved from the caller's number.

The admin fills it by importing ``.vcf`` files (one or many vCards per file).
Contacts live in store namespace ``contacts`` (key: the vCard UID, or one
derived from the card's content); each keeps its original vCard so a mail can
attach it unchanged.

Numbers are compared in one canonical form (E.164, ``+4930123456``) made by a
`NumberPlan`: ``+49 30 123456``, ``0049 30 123456``, ``030 123456`` and, with
area code 30 configured, ``123456`` all resolve to the same contact.  The plan
defaults to Germany without an area code and can be changed in the store
(namespace ``contacts_config``, key ``plan``: ``{"country": "49", "area": "30"}``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field

import vobject

from appliance.store import IKeyValueStore

CONTACTS = "contacts"
CONFIG = "contacts_config"

_DIGITS = re.compile(r"[0-9]+")
_NOISE = re.compile(r"[\s()./-]")


class ContactError(ValueError):
    """A vCard file that cannot be imported, and why."""


@dataclass(frozen=True)
class NumberPlan:
    """How dialled numbers map to E.164 (defaults: Germany)."""

    country: str = "49"
    area: str = ""
    international_prefix: str = "00"
    national_prefix: str = "0"
    internal_max_digits: int = 6
    """Shorter numbers without a prefix are internal extensions (or local
    numbers when an area code is configured) and are left as they are."""

    def normalize(self, raw: str) -> str:
        """The canonical form of ``raw``; anything that is not a number comes back
        stripped of formatting (so it still compares equal to itself)."""
        number = _NOISE.sub("", str(raw or ""))
        if number.startswith("+") and _DIGITS.fullmatch(number[1:]):
            return number
        if not _DIGITS.fullmatch(number):
            return number
        if number.startswith(self.international_prefix):
            return "+" + number[len(self.international_prefix) :]
        if self.national_prefix and number.startswith(self.national_prefix):
            return f"+{self.country}{number[len(self.national_prefix) :]}"
        if self.area and len(number) > 2:
            return f"+{self.country}{self.area}{number}"
        return number


@dataclass(frozen=True)
class Contact:
    uid: str
    name: str
    numbers: tuple[str, ...] = ()
    email: str = ""
    organization: str = ""
    vcard: str = field(default="", repr=False)
    """The card as imported, serialised as vCard text."""


def _text(card: vobject.base.Component, name: str) -> str:
    child = getattr(card, name, None)
    value = getattr(child, "value", "") if child is not None else ""
    if isinstance(value, list):  # ORG is a list of units
        value = " ".join(str(part) for part in value if part)
    return "".join(ch for ch in str(value) if ch.isprintable()).strip()


MAX_NESTING = 8
"""vCards inside vCards (AGENT) this deep at most; vobject parses nesting recursively."""


def _check_nesting(text: str) -> None:
    depth = 0
    for line in text.splitlines():
        head = line.strip().upper()
        if head.startswith("BEGIN:"):
            depth += 1
            if depth > MAX_NESTING:
                raise ContactError(f"not a valid vCard file: nested deeper than {MAX_NESTING}")
        elif head.startswith("END:"):
            depth = max(0, depth - 1)


def parse_vcards(text: str) -> list[Contact]:
    """Every card in ``text``; a malformed file raises `ContactError`."""
    contacts = []
    _check_nesting(text)
    try:
        for card in vobject.readComponents(text, ignoreUnreadable=False):
            if card.name != "VCARD":
                continue
            numbers = tuple(
                str(tel.value).strip() for tel in card.contents.get("tel", []) if str(tel.value).strip()
            )
            emails = [str(mail.value).strip() for mail in card.contents.get("email", [])]
            name = _text(card, "fn") or _text(card, "org") or (numbers[0] if numbers else "")
            serialised = card.serialize()
            uid = _text(card, "uid") or "sha1-" + hashlib.sha1(serialised.encode()).hexdigest()[:16]
            contacts.append(
                Contact(
                    uid=uid,
                    name=name,
                    numbers=numbers,
                    email=emails[0] if emails else "",
                    organization=_text(card, "org"),
                    vcard=serialised,
                )
            )
    except (vobject.base.ParseError, ValueError, AttributeError, RecursionError) as error:
        raise ContactError(f"not a valid vCard file: {error}") from None
    return contacts


def _contact(record: object) -> Contact | None:
    if not isinstance(record, dict):
        return None
    try:
        return Contact(
            uid=record["uid"],
            name=record["name"],
            numbers=tuple(record.get("numbers", ())),
            email=record.get("email", ""),
            organization=record.get("organization", ""),
            vcard=record.get("vcard", ""),
        )
    except (KeyError, TypeError):
        return None


class ContactDirectory:
    """Contacts over the store, looked up by normalised number."""

    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store

    @property
    def plan(self) -> NumberPlan:
        stored = self.store.get(CONFIG, "plan")
        if isinstance(stored, dict):
            country = str(stored.get("country", "49")).lstrip("+")
            area = str(stored.get("area", "")).lstrip("0")
            if _DIGITS.fullmatch(country) and (not area or _DIGITS.fullmatch(area)):
                return NumberPlan(country=country, area=area)
        return NumberPlan()

    def normalize(self, number: str) -> str:
        return self.plan.normalize(number)

    def import_vcf(self, text: str) -> list[Contact]:
        """Store every card of a ``.vcf`` file at once; a card with an existing UID
        replaces it."""
        contacts = parse_vcards(text)
        self.store.apply([(CONTACTS, c.uid, asdict(c)) for c in contacts])
        return contacts

    def contacts(self) -> list[Contact]:
        return [c for _, record in self.store.items(CONTACTS) if (c := _contact(record))]

    def delete(self, uid: str) -> None:
        self.store.delete(CONTACTS, uid)

    def lookup(self, number: str) -> Contact | None:
        """The contact one of whose numbers is ``number`` after normalisation."""
        plan = self.plan
        wanted = plan.normalize(number)
        if not wanted:
            return None
        for contact in self.contacts():
            if any(plan.normalize(n) == wanted for n in contact.numbers):
                return contact
        return None
