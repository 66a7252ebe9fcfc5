"""CardDAV over a stub server (treq's StubTreq, no network): a server without
sync-collection is synced by ETags from then on; hostile XML is refused."""

from __future__ import annotations

from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from appliance.carddav import STATE, CardDAVConfig, CardDAVError, CardDAVSource, parse_multistatus
from appliance.contacts import ContactDirectory
from appliance.contactsync import ContactJobs
from appliance.testing import MemoryStore, synchronous_cooperator

CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:Old School\r\nTEL:030 4444\r\nEND:VCARD\r\n"


class NoSyncServer(Resource):
    """An address book that knows PROPFIND and addressbook-multiget, not sync-collection."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read().decode()
        method = request.method.decode()
        kind = "sync" if "sync-collection" in body else "multiget" if "multiget" in body else ""
        self.asked.append(f"{method} {kind}".strip())
        if method == "REPORT" and "sync-collection" in body:
            request.setResponseCode(501)
            return b"not implemented"
        request.setResponseCode(207)
        if method == "PROPFIND":
            return (
                b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
                b"<d:response><d:href>/book/</d:href><d:propstat><d:prop><d:getetag/></d:prop>"
                b"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
                b'<d:response><d:href>/book/a.vcf</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag>'
                b"</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"
            )
        return (
            b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
            b'<d:response><d:href>/book/a.vcf</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag>'
            b"<c:address-data>" + CARD.encode() + b"</c:address-data></d:prop>"
            b"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"
        )


def run(stub: StubTreq, source: CardDAVSource) -> Any:
    done = source.sync()
    while not done.called:
        stub.flush()
    results: list[Any] = []
    done.addBoth(results.append)
    return results[0]


def test_server_without_sync_collection_is_synced_by_etags() -> None:
    """501 to sync-collection: the same sync goes on with ETags, and later syncs start
    there; an unchanged ETag fetches nothing."""
    server = NoSyncServer()
    stub = StubTreq(server)
    jobs = ContactJobs(ContactDirectory(MemoryStore()), synchronous_cooperator(), Clock())
    source = CardDAVSource(CardDAVConfig("http://dav.example/book/"), jobs, stub)
    assert run(stub, source) == (1, 0)
    assert jobs.contacts.lookup("+49304444").name == "Old School"
    assert jobs.contacts.store.get(*STATE) == {"mode": "etag"}
    assert run(stub, source) == (0, 0)
    assert server.asked == ["REPORT sync", "PROPFIND", "REPORT multiget", "PROPFIND"]


def test_token_mode_does_not_fall_back() -> None:
    """``sync = token``: a server without sync-collection is an error, not ETags."""
    stub = StubTreq(NoSyncServer())
    jobs = ContactJobs(ContactDirectory(MemoryStore()), synchronous_cooperator(), Clock())
    source = CardDAVSource(CardDAVConfig("http://dav.example/book/", sync="token"), jobs, stub)
    failure = run(stub, source)
    assert failure.check(CardDAVError) and "HTTP 501" in jobs.status["carddav"].result


def test_entities_are_not_expanded() -> None:
    """An external entity in the answer is not resolved: no file is read into the token."""
    body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<d:multistatus xmlns:d="DAV:"><d:sync-token>&e;</d:sync-token></d:multistatus>'
    )
    assert parse_multistatus(body).token == ""


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"<html>not dav</html>", "not a multistatus"), (b"\x00garbage", "is not XML")],
)
def test_foreign_answers_are_refused(body: bytes, reason: str) -> None:
    """What is no DAV multistatus is a clear error."""
    with pytest.raises(CardDAVError, match=reason):
        parse_multistatus(body)
