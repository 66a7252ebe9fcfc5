"""Contacts from a CardDAV address book (RFC 6352), kept current with sync tokens
or, where the server has none, with ETags.

Each sync asks the server only what changed since the last one: a
``sync-collection`` REPORT (RFC 6578) with the stored token answers changed
cards with their vCard and removed ones as 404.  Without a token (the first
sync) or when the server no longer knows the token, the answer is the whole
book, and contacts of this source it did not list are deleted.  A server
without ``sync-collection`` (or ``[carddav] sync = etag``) is asked for every
card's ETag (PROPFIND); only cards whose ETag changed are fetched
(``addressbook-multiget``), and cards it no longer lists are deleted.
Contacts get the UID ``carddav:<href>`` so a removal by href finds them.

The HTTP goes through treq (an injected client in tests); the XML is parsed
without entities or network access; the cards are parsed and written in
slices by `ContactJobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import treq
import vobject
from lxml import etree
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from appliance.contacts import CONTACTS, WRITE_BATCH, Contact, ContactError, contact_from_card
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


SYNC_MODES = ("auto", "token", "etag")
MULTIGET_BATCH = 50


@dataclass(frozen=True)
class CardDAVConfig:
    url: str
    username: str = ""
    password: str = ""
    sync: str = "auto"
    """``token`` (sync-collection), ``etag`` (PROPFIND + multiget), or ``auto``: token,
    and ETags from the first time the server refuses a sync-collection."""


class SyncUnsupported(CardDAVError):
    """The server has no sync-collection REPORT."""


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
    etags: dict[str, str] = field(default_factory=dict)
    """href → ETag of each card listed."""


def propfind_request() -> bytes:
    root = etree.Element(f"{{{DAV}}}propfind", nsmap={"d": DAV})
    etree.SubElement(etree.SubElement(root, f"{{{DAV}}}prop"), f"{{{DAV}}}getetag")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def multiget_request(hrefs: list[str]) -> bytes:
    root = etree.Element(f"{{{CARD}}}addressbook-multiget", nsmap={"d": DAV, "c": CARD})
    prop = etree.SubElement(root, f"{{{DAV}}}prop")
    etree.SubElement(prop, f"{{{DAV}}}getetag")
    etree.SubElement(prop, f"{{{CARD}}}address-data")
    for href in hrefs:
        etree.SubElement(root, f"{{{DAV}}}href").text = href
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def parse_multistatus(body: bytes) -> Changes:
    """The changed and removed hrefs of a sync-collection answer, and the new token."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise CardDAVError(f"the server's answer is not XML: {error}") from None
    if root.tag != f"{{{DAV}}}multistatus":
        raise CardDAVError(f"the server's answer is {root.tag}, not a multistatus")
    cards: dict[str, str] = {}
    etags: dict[str, str] = {}
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
            etag = propstat.findtext(f"{{{DAV}}}prop/{{{DAV}}}getetag")
            if etag:
                etags[href] = etag.strip()
    token = (root.findtext(f"{{{DAV}}}sync-token") or "").strip()
    return Changes(cards, tuple(removed), token, etags)


def _contact(href: str, text: str, etag: str = "") -> Contact | None:
    """One card; a broken card is skipped (one bad entry must not stop the sync)."""
    try:
        card = vobject.readOne(text)
    except (vobject.base.ParseError, ValueError, AttributeError, TypeError):
        return None
    return replace(contact_from_card(card, source=SOURCE, uid=f"{SOURCE}:{href}"), etag=etag)


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
        """The sync-collection answer for ``token`` ("" = the whole book)."""

        def refused(code: int) -> CardDAVError | None:
            if code in (403, 409) and token:
                return TokenExpired("sync token expired")
            if code in (400, 403, 405, 415, 501) and not token:
                return SyncUnsupported(f"HTTP {code} to sync-collection")
            return None

        return self._xml("REPORT", sync_request(token), "0", refused)

    def _xml(
        self,
        method: str,
        body: bytes,
        depth: str,
        refused: Callable[[int], CardDAVError | None] = lambda code: None,
    ) -> Deferred[Changes]:
        headers = {"Content-Type": "application/xml; charset=utf-8", "Depth": depth}
        d = self.http.request(method, self.config.url, data=body, headers=headers, auth=self._auth())

        def answered(response: Any) -> Any:
            if response.code != 207:
                error = refused(response.code) or CardDAVError(
                    f"{self.config.url}: HTTP {response.code} to {method}"
                )
                return treq.content(response).addCallback(lambda _: _raise(error))
            return treq.content(response).addCallback(parse_multistatus)

        return d.addCallback(answered)

    def sync(self) -> Deferred[Any]:
        """One incremental sync as a sliced job named ``carddav``."""
        return self.jobs.run(SOURCE, self._steps(), _describe)

    def _steps(self) -> Generator[object, None, tuple[int, int]]:
        state = self.store.get(*STATE) or {}
        state = state if isinstance(state, dict) else {}
        mode = self.config.sync if self.config.sync != "auto" else str(state.get("mode", "token"))
        if mode == "etag":
            result = yield from self._etag_steps()
            return result
        token = str(state.get("token", ""))
        answer: list[Changes] = []
        full = not token

        def expired(failure: Any) -> Deferred[None]:
            nonlocal full
            failure.trap(TokenExpired)
            full = True
            return self.fetch("").addCallback(answer.append)

        def unsupported(failure: Any) -> None:
            failure.trap(SyncUnsupported)
            if self.config.sync == "token":
                failure.raiseException()

        yield self.fetch(token).addCallback(answer.append).addErrback(expired).addErrback(unsupported)
        if not answer:  # no sync-collection here: ETags from now on
            self.store.put(*STATE, {"mode": "etag"})
            result = yield from self._etag_steps()
            return result
        changes = answer[0]
        contacts = yield from self._contacts(changes)
        if full:
            yield from self.jobs.replace_source(SOURCE, SOURCE, contacts)
        else:
            yield from self.jobs.write_steps(SOURCE, contacts)
            gone = [f"{SOURCE}:{urljoin(self.config.url, href)}" for href in changes.removed]
            if gone:
                self.store.apply(self.jobs.contacts.deletions(gone))
        self.store.put(*STATE, {"token": changes.token, "mode": "token"})
        return len(contacts), len(changes.removed)

    def _contacts(self, changes: Changes) -> Generator[object, None, list[Contact]]:
        contacts: list[Contact] = []
        for index, (href, text) in enumerate(changes.cards.items(), start=1):
            absolute = urljoin(self.config.url, href)
            if (contact := _contact(absolute, text, changes.etags.get(href, ""))) is not None:
                contacts.append(contact)
            if index % 100 == 0:
                self.jobs.progress(SOURCE, index, len(changes.cards))
                yield None
        return contacts

    def _etag_steps(self) -> Generator[object, None, tuple[int, int]]:
        """Every card's ETag from the server, compared with the stored ones; fetch what
        changed, delete what is gone."""
        listing: list[Changes] = []
        yield self._xml("PROPFIND", propfind_request(), "1").addCallback(listing.append)
        here = urljoin(self.config.url, ".")
        current = {
            urljoin(self.config.url, href): etag
            for href, etag in listing[0].etags.items()
            if urljoin(self.config.url, href).rstrip("/")
            not in (self.config.url.rstrip("/"), here.rstrip("/"))
        }
        known: dict[str, str] = {}
        after = ""
        while rows := self.store.page(CONTACTS, after=after, limit=WRITE_BATCH * 4):
            after = rows[-1][0]
            for uid, record in rows:
                if uid.startswith(f"{SOURCE}:") and isinstance(record, dict):
                    known[uid[len(SOURCE) + 1 :]] = str(record.get("etag", ""))
            yield None
        changed = [href for href, etag in current.items() if known.get(href) != etag]
        contacts: list[Contact] = []
        for start in range(0, len(changed), MULTIGET_BATCH):
            fetched: list[Changes] = []
            hrefs = [urlsplit(href).path for href in changed[start : start + MULTIGET_BATCH]]
            yield self._xml("REPORT", multiget_request(hrefs), "1").addCallback(fetched.append)
            contacts += yield from self._contacts(fetched[0])
        yield from self.jobs.write_steps(SOURCE, contacts)
        gone = [f"{SOURCE}:{href}" for href in known if href not in current]
        for start in range(0, len(gone), WRITE_BATCH):
            self.store.apply(self.jobs.contacts.deletions(gone[start : start + WRITE_BATCH]))
            yield None
        return len(contacts), len(gone)


def _describe(result: tuple[int, int]) -> str:
    changed, removed = result
    return f"{changed} contacts updated, {removed} removed"


def _raise(error: Exception) -> Any:
    raise error
