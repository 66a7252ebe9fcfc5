"""The contact directory: who is calling, resolved from the caller's number.

Contacts come from ``.vcf`` uploads, a CardDAV address book or an LDAP
directory.  They live in store namespace ``contacts`` (key: the vCard UID, or
one derived from the card's content); each keeps its original vCard so a mail
can attach it unchanged.

A company address book has 100,000 entries, and a call must not wait for a
walk through them.  So every contact write also writes, in the same store
transaction, its entries in namespace ``contact_index``: ``t:<E.164>␟<uid>``
for each number (made by `appliance.numbers.NumberPlan` from the country and
area code settings) and ``n:<name>␟<uid>`` / ``w:<word>␟<uid>`` for the
contacts page's sorted list and search.  A lookup reads one index range and
one record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import vobject

from appliance.numbers import NumberPlan
from appliance.store import DELETE, IKeyValueStore

__all__ = ["CONTACTS", "INDEX", "Contact", "ContactDirectory", "ContactError", "NumberPlan", "parse_vcards"]

CONTACTS = "contacts"
INDEX = "contact_index"
SEP = "\x1f"
"""Ends the indexed value inside an index key; sorts before every printable character."""
COUNT = "#count"
"""The number of contacts, in the index namespace (sorts before every index key)."""
WRITE_BATCH = 50
"""Contacts per store transaction in large imports: 5 to 10 ms each (200 took 45 ms)."""


class ContactError(ValueError):
    """A vCard file that cannot be imported, and why."""


@dataclass(frozen=True)
class Contact:
    uid: str
    name: str
    numbers: tuple[str, ...] = ()
    email: str = ""
    organization: str = ""
    vcard: str = field(default="", repr=False)
    """The card as imported, serialised as vCard text."""
    source: str = "vcf"
    """Where it came from: ``vcf``, ``carddav`` or ``ldap``."""
    keys: tuple[str, ...] = field(default=(), repr=False)
    """The numbers in canonical form when it was stored (what the index holds)."""
    etag: str = ""
    """The version the address book gave the card (CardDAV ETag), to fetch only changes."""


def clean(text: object) -> str:
    """Contact data comes from outside; control characters never belong in it."""
    return "".join(ch for ch in str(text) if ch.isprintable()).strip()


def _text(card: vobject.base.Component, name: str) -> str:
    child = getattr(card, name, None)
    value = getattr(child, "value", "") if child is not None else ""
    if isinstance(value, list):  # ORG is a list of units
        value = " ".join(str(part) for part in value if part)
    return clean(value)


def contact_from_card(card: vobject.base.Component, source: str = "vcf", uid: str = "") -> Contact:
    numbers = tuple(clean(tel.value) for tel in card.contents.get("tel", []) if clean(tel.value))
    emails = [clean(mail.value) for mail in card.contents.get("email", [])]
    name = _text(card, "fn") or _text(card, "org") or (numbers[0] if numbers else "")
    serialised = card.serialize()
    uid = uid or _text(card, "uid") or "sha1-" + hashlib.sha1(serialised.encode()).hexdigest()[:16]
    return Contact(
        uid=uid,
        name=name,
        numbers=numbers,
        email=emails[0] if emails else "",
        organization=_text(card, "org"),
        vcard=serialised,
        source=source,
    )


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


def iter_vcards(text: str, source: str = "vcf") -> Iterator[Contact]:
    """Each card of ``text`` in turn (a caller can pause between them);
    a malformed file raises `ContactError` when it is reached."""
    _check_nesting(text)
    try:
        for card in vobject.readComponents(text, ignoreUnreadable=False):
            if card.name == "VCARD":
                yield contact_from_card(card, source)
    except (vobject.base.ParseError, ValueError, AttributeError, TypeError, RecursionError) as error:
        raise ContactError(f"not a valid vCard file: {error}") from None


def parse_vcards(text: str) -> list[Contact]:
    """Every card in ``text``; a malformed file raises `ContactError`."""
    return list(iter_vcards(text))


def stored_contact(record: object) -> Contact | None:
    """The contact a store record holds, or None if the record is not one."""
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
            source=record.get("source", "vcf"),
            keys=tuple(record.get("keys", ())),
            etag=record.get("etag", ""),
        )
    except (KeyError, TypeError):
        return None


def _index_keys(contact: Contact) -> set[str]:
    keys = {f"t:{key}{SEP}{contact.uid}" for key in contact.keys if key}
    name = contact.name.casefold()
    keys.add(f"n:{name}{SEP}{contact.uid}")
    for word in {*name.split(), *contact.organization.casefold().split()}:
        keys.add(f"w:{word}{SEP}{contact.uid}")
    return keys


class ContactDirectory:
    """Contacts over the store, looked up by normalised number through the index."""

    def __init__(self, store: IKeyValueStore, plan: Callable[[], NumberPlan] = NumberPlan) -> None:
        self.store = store
        self._plan = plan

    @property
    def plan(self) -> NumberPlan:
        return self._plan()

    def normalize(self, number: str) -> str:
        return self.plan.normalize(number)

    # -- writing ----------------------------------------------------------------

    def changes(
        self, contacts: Iterable[Contact], plan: NumberPlan | None = None
    ) -> list[tuple[str, str, Any]]:
        """The store changes that put ``contacts`` (replacing same UIDs) with their index."""
        plan = plan or self.plan
        writes: dict[tuple[str, str], Any] = {}
        batch: dict[str, Contact] = {}
        added = 0
        for contact in contacts:
            contact = replace(contact, keys=tuple(dict.fromkeys(plan.normalize(n) for n in contact.numbers)))
            old = batch.get(contact.uid) or self.get(contact.uid)
            if old is None:
                added += 1
            for key in _index_keys(old) if old else ():
                writes[INDEX, key] = DELETE
            for key in _index_keys(contact):
                writes[INDEX, key] = contact.uid
            writes[CONTACTS, contact.uid] = asdict(contact)
            batch[contact.uid] = contact
        if added:
            writes[INDEX, COUNT] = self.count() + added
        return [(namespace, key, value) for (namespace, key), value in writes.items()]

    def put(self, contacts: Iterable[Contact]) -> list[Contact]:
        """Store ``contacts`` in one transaction."""
        contacts = list(contacts)
        self.store.apply(self.changes(contacts))
        return contacts

    def deletions(self, uids: Iterable[str]) -> list[tuple[str, str, Any]]:
        """The store changes that delete the contacts ``uids`` with their index."""
        changes: list[tuple[str, str, Any]] = []
        gone = 0
        for uid in dict.fromkeys(uids):
            old = self.get(uid)
            if old is not None:
                changes += [(INDEX, key, DELETE) for key in _index_keys(old)] + [(CONTACTS, uid, DELETE)]
                gone += 1
        if gone:
            changes.append((INDEX, COUNT, max(0, self.count() - gone)))
        return changes

    def delete(self, uid: str) -> None:
        self.store.apply(self.deletions([uid]))

    def import_vcf(self, text: str) -> list[Contact]:
        """Store every card of a ``.vcf`` file at once; a card with an existing UID
        replaces it.  For large files see `appliance.contactsync.import_vcf`."""
        return self.put(parse_vcards(text))

    # -- reading ----------------------------------------------------------------

    def count(self) -> int:
        """How many contacts are stored (kept with every write, never counted)."""
        stored = self.store.get(INDEX, COUNT, 0)
        return stored if isinstance(stored, int) else 0

    def needs_index(self) -> bool:
        """Contacts stored by a version without the index (its count is missing)."""
        return self.store.get(INDEX, COUNT) is None and bool(self.store.page(CONTACTS, limit=1))

    def get(self, uid: str) -> Contact | None:
        return stored_contact(self.store.get(CONTACTS, uid))

    def lookup(self, number: str) -> Contact | None:
        """The contact one of whose numbers is ``number`` after normalisation."""
        wanted = self.normalize(number)
        if not wanted:
            return None
        prefix = f"t:{wanted}{SEP}"
        for key, uid in self.store.page(INDEX, after=prefix, limit=4):
            if not key.startswith(prefix):
                break
            if (contact := self.get(uid)) is not None:
                return contact
        return None

    def contacts(self) -> list[Contact]:
        """Every contact (tests and small tools; pages use `page`)."""
        return [c for _, record in self.store.items(CONTACTS) if (c := stored_contact(record))]

    def page(self, after: str = "", limit: int = 50, search: str = "") -> tuple[list[Contact], str]:
        """Up to ``limit`` contacts sorted by name after the cursor ``after``, optionally
        those whose name or organisation has a word starting with ``search`` or who
        have the number ``search``; returns them and the cursor of the next page ("")."""
        search = clean(search).casefold()
        if search and any(ch.isdigit() for ch in search) and not any(ch.isalpha() for ch in search):
            prefix = f"t:{self.normalize(search)}{SEP}"
        elif search:
            prefix = f"w:{search}"
        else:
            prefix = "n:"
        found: list[Contact] = []
        seen: set[str] = set()
        cursor = max(after, prefix)
        while len(found) < limit:
            rows = self.store.page(INDEX, after=cursor, limit=limit * 2)
            if not rows:
                return found, ""
            for key, uid in rows:
                if not key.startswith(prefix):
                    return found, ""
                cursor = key
                if uid in seen or (contact := self.get(uid)) is None:
                    continue
                seen.add(uid)
                found.append(contact)
                if len(found) == limit:
                    break
        return found, cursor
