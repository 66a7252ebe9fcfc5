"""Contacts from an LDAP directory (Active Directory, OpenLDAP): search base,
filter and a map from contact fields to attributes.

ldap3 blocks, so the paged search runs in a thread; what it found is turned
into contacts and written in slices on the reactor by `ContactJobs`.  Every
sync is a full one (LDAP has no cheap change list): contacts of this source
that the search no longer finds are deleted.  Each contact gets a vCard made
from its attributes, so the missed-call mail can attach it like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import vobject
from twisted.internet.defer import Deferred

from appliance.contacts import Contact, clean
from appliance.contactsync import ContactJobs

SOURCE = "ldap"
PAGE_SIZE = 500


@dataclass(frozen=True)
class LDAPConfig:
    uri: str
    base: str
    bind_dn: str = ""
    password: str = ""
    filter: str = "(objectClass=inetOrgPerson)"
    name: str = "cn"
    numbers: tuple[str, ...] = ("telephoneNumber", "mobile", "homePhone")
    email: str = "mail"
    organization: str = "o"
    timeout: int = 30

    @property
    def attributes(self) -> list[str]:
        return [self.name, *self.numbers, self.email, self.organization]


Entry = tuple[str, dict[str, list[str]]]
"""A found entry: its DN and the wanted attributes' values."""


def search(config: LDAPConfig) -> list[Entry]:
    """The paged search (blocking: run it in a thread)."""
    import ldap3
    from ldap3.core.exceptions import LDAPException

    try:
        server = ldap3.Server(config.uri, connect_timeout=config.timeout)
        connection = ldap3.Connection(
            server,
            user=config.bind_dn or None,
            password=config.password or None,
            auto_bind=True,
            read_only=True,
            receive_timeout=config.timeout,
        )
    except LDAPException as error:
        raise LDAPError(f"{config.uri}: cannot bind: {error}") from None
    try:
        found = connection.extend.standard.paged_search(
            config.base, config.filter, attributes=config.attributes, paged_size=PAGE_SIZE, generator=False
        )
        entries: list[Entry] = []
        for entry in found or []:
            if entry.get("type") != "searchResEntry":
                continue
            values = {
                key: [str(v) for v in (value if isinstance(value, list) else [value])]
                for key, value in entry.get("attributes", {}).items()
            }
            entries.append((str(entry["dn"]), values))
        return entries
    except LDAPException as error:
        raise LDAPError(f"{config.uri}: search in {config.base} failed: {error}") from None
    finally:
        connection.unbind()


class LDAPError(ValueError):
    """The directory could not be searched, and why."""


def contact_from_entry(config: LDAPConfig, dn: str, values: dict[str, list[str]]) -> Contact | None:
    def first(attribute: str) -> str:
        found = values.get(attribute) or []
        return clean(found[0]) if found else ""

    numbers = tuple(clean(n) for attribute in config.numbers for n in values.get(attribute, []) if clean(n))
    name = first(config.name) or first(config.organization)
    if not name or not numbers:
        return None
    email, organization = first(config.email), first(config.organization)
    card = vobject.vCard()
    card.add("uid").value = f"{SOURCE}:{dn}"
    card.add("fn").value = name
    card.add("n").value = vobject.vcard.Name(family=name)
    for number in numbers:
        card.add("tel").value = number
    if email:
        card.add("email").value = email
    if organization:
        card.add("org").value = [organization]
    return Contact(f"{SOURCE}:{dn}", name, numbers, email, organization, card.serialize(), SOURCE)


class LDAPSource:
    """One configured directory."""

    def __init__(
        self,
        config: LDAPConfig,
        jobs: ContactJobs,
        threads: Callable[..., Deferred[Any]],
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.threads = threads

    def sync(self) -> Deferred[Any]:
        return self.jobs.run(SOURCE, self._steps(), lambda count: f"{count} contacts from LDAP")

    def _steps(self) -> Generator[object, None, int]:
        found: list[list[Entry]] = []
        yield self.threads(search, self.config).addCallback(found.append)
        contacts: list[Contact] = []
        for index, (dn, values) in enumerate(found[0], start=1):
            if (contact := contact_from_entry(self.config, dn, values)) is not None:
                contacts.append(contact)
            if index % 100 == 0:
                self.jobs.progress(SOURCE, index, len(found[0]))
                yield None
        count = yield from self.jobs.replace_source(SOURCE, SOURCE, contacts)
        return count
