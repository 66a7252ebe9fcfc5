"""Contacts from a CardDAV address book (RFC 6352), kept current with sync tokens.

Each sync asks the server only what changed since the last one: a
``sync-collection`` REPORT (RFC 6578) with the stored token answers changed
cards with their vCard and removed ones as 404.  Without a token (the first
sync) or when the server no longer knows the token, the answer is the whole
book, and contacts of this source it did not list are deleted.  Contacts get
the UID ``carddav:<href>`` so a removal by href finds them.

The HTTP goes through treq (an injected client in tests); the XML is parsed
without entities or network access; the cards are parsed and written in
slices by `ContactJobs`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import treq
import vobject
from lxml import etree
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from appliance.contacts import Contact, ContactError, contact_from_card
from appliance.contactsync import ContactJobs

SOURCE = "carddav"
STATE = ("contact_sources", SOURCE)
"""Store namespace and key of the sync token."""
DAV = "DAV:"
CARD = "urn:ietf:params:xml:ns:carddav"
MAX_RESPONSE = 64 * 1024 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class CardDAVError(ContactError):
    """The server refused or answered something that is no address book."""


class TokenExpired(CardDAVError):
    """The server no longer knows our sync token: start again from nothing."""


@dataclass(frozen=True)
class CardDAVConfig:
    url: str
    username: str = ""
    password: str = ""


def sync_request(token: str) -> bytes:
    root = etree.Element(f"{{{DAV}}}sync-collection", nsmap={"d": DAV, "c": CARD})
    etree.SubElement(root, f"{{{DAV}}}sync-token").text = token
    etree.SubElement(root, f"{{{DAV}}}sync-level").text = "1"
    prop = etree.SubElement(root, f"{{{DAV}}}prop")
    etree.SubElement(prop, f"{{{DAV}}}getetag")
    etree.SubElement(prop, f"{{{CARD}}}address-data")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


@dataclass(frozen=True)
class Changes:
    cards: dict[str, str]
    """href → vCard text of every card changed (or, without a token, of every card)."""
    removed: tuple[str, ...]
    token: str


def parse_multistatus(body: bytes) -> Changes:
    """The changed and removed hrefs of a sync-collection answer, and the new token."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise CardDAVError(f"the server's answer is not XML: {error}") from None
    if root.tag != f"{{{DAV}}}multistatus":
        raise CardDAVError(f"the server's answer is {root.tag}, not a multistatus")
    cards: dict[str, str] = {}
    removed: list[str] = []
    for response in root.iterfind(f"{{{DAV}}}response"):
        href = (response.findtext(f"{{{DAV}}}href") or "").strip()
        if not href:
            continue
        status = response.findtext(f"{{{DAV}}}status") or ""
        if " 404" in status:
            removed.append(href)
            continue
        for propstat in response.iterfind(f"{{{DAV}}}propstat"):
            if " 200" not in (propstat.findtext(f"{{{DAV}}}status") or ""):
                continue
            data = propstat.findtext(f"{{{DAV}}}prop/{{{CARD}}}address-data")
            if data and data.strip():
                cards[href] = data
    token = (root.findtext(f"{{{DAV}}}sync-token") or "").strip()
    return Changes(cards, tuple(removed), token)


def _contact(href: str, text: str) -> Contact | None:
    """One card; a broken card is skipped (one bad entry must not stop the sync)."""
    try:
        card = vobject.readOne(text)
    except (vobject.base.ParseError, ValueError, AttributeError, TypeError):
        return None
    return contact_from_card(card, source=SOURCE, uid=f"{SOURCE}:{href}")


def http_client(reactor: Any) -> Any:
    """treq without kept-alive connections: a sync every hour gains nothing from them, and
    a server that closed an idle one would fail the next REPORT (not retried: not idempotent)."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


class CardDAVSource:
    """One configured address book."""

    def __init__(self, config: CardDAVConfig, jobs: ContactJobs, http: Any) -> None:
        self.config = config
        self.jobs = jobs
        self.http = http
        """A `treq.HTTPClient` (see `http_client`)."""

    @property
    def store(self) -> Any:
        return self.jobs.contacts.store

    def _auth(self) -> Any:
        return (self.config.username, self.config.password) if self.config.username else None

    def fetch(self, token: str) -> Deferred[Changes]:
        headers = {"Content-Type": "application/xml; charset=utf-8", "Depth": "0"}
        d = self.http.request(
            "REPORT", self.config.url, data=sync_request(token), headers=headers, auth=self._auth()
        )

        def answered(response: Any) -> Any:
            if response.code in (403, 409) and token:
                return treq.content(response).addCallback(
                    lambda _: _raise(TokenExpired("sync token expired"))
                )
            if response.code != 207:
                return treq.content(response).addCallback(
                    lambda _: _raise(
                        CardDAVError(f"{self.config.url}: HTTP {response.code} to the sync REPORT")
                    )
                )
            return treq.content(response).addCallback(parse_multistatus)

        return d.addCallback(answered)

    def sync(self) -> Deferred[Any]:
        """One incremental sync as a sliced job named ``carddav``."""
        return self.jobs.run(SOURCE, self._steps(), _describe)

    def _steps(self) -> Generator[object, None, tuple[int, int]]:
        state = self.store.get(*STATE) or {}
        token = str(state.get("token", "")) if isinstance(state, dict) else ""
        answer: list[Changes] = []
        full = not token

        def expired(failure: Any) -> Deferred[None]:
            nonlocal full
            failure.trap(TokenExpired)
            full = True
            return self.fetch("").addCallback(answer.append)

        yield self.fetch(token).addCallback(answer.append).addErrback(expired)
        changes = answer[0]
        contacts: list[Contact] = []
        for href, text in changes.cards.items():
            if (contact := _contact(urljoin(self.config.url, href), text)) is not None:
                contacts.append(contact)
            if len(contacts) % 100 == 0:
                self.jobs.progress(SOURCE, len(contacts), len(changes.cards))
                yield None
        if full:
            yield from self.jobs.replace_source(SOURCE, SOURCE, contacts)
        else:
            yield from self.jobs.write_steps(SOURCE, contacts)
            gone = [f"{SOURCE}:{urljoin(self.config.url, href)}" for href in changes.removed]
            if gone:
                self.store.apply(self.jobs.contacts.deletions(gone))
        self.store.put(*STATE, {"token": changes.token})
        return len(contacts), len(changes.removed)


def _describe(result: tuple[int, int]) -> str:
    changed, removed = result
    return f"{changed} contacts updated, {removed} removed"


def _raise(error: Exception) -> Any:
    raise error
