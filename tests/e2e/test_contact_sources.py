"""Contacts from real address-book servers on loopback: Radicale (CardDAV, incremental
with sync tokens) and slapd (LDAP, paged search), through the appliance's sources."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThread

from appliance.carddav import STATE, CardDAVConfig, CardDAVError, CardDAVSource, http_client
from appliance.contacts import ContactDirectory
from appliance.contactsync import ContactJobs
from appliance.ldapcontacts import LDAPConfig, LDAPError, LDAPSource
from appliance.testing import MemoryStore
from tests.e2e.servers import Radicale, Slapd


def card(uid: str, name: str, *numbers: str) -> str:
    tels = "".join(f"TEL:{number}\r\n" for number in numbers)
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\n{tels}END:VCARD\r\n"


@pytest.fixture
def radicale() -> Iterator[Radicale]:
    server = Radicale()
    yield server
    server.stop()


@pytest.fixture
def slapd() -> Iterator[Slapd]:
    server = Slapd()
    yield server
    server.stop()


@pytest.fixture
def jobs(reactor: Any) -> ContactJobs:
    cooperator = Cooperator(scheduler=lambda run: reactor.callLater(0.001, run))
    return ContactJobs(ContactDirectory(MemoryStore()), cooperator, reactor)


@pytest_twisted.inlineCallbacks
def test_carddav_incremental_sync(radicale: Radicale, jobs: ContactJobs, reactor: Any) -> Any:
    """First sync takes the whole book; later ones only what changed (edit, add, delete);
    a token the server forgot means one full sync; callers are found in any spelling."""
    radicale.put("erika.vcf", card("erika", "Erika Radicale", "030 555111"))
    radicale.put("max.vcf", card("max", "Max Radicale", "+49 171 2223334"))
    config = CardDAVConfig(radicale.url, radicale.user, radicale.password)
    source = CardDAVSource(config, jobs, http_client(reactor))
    contacts = jobs.contacts

    yield source.sync()
    assert contacts.lookup("+4930555111").name == "Erika Radicale"
    assert contacts.lookup("0171 2223334").name == "Max Radicale"
    assert jobs.status["carddav"].result == "2 contacts updated, 0 removed"

    radicale.put("erika.vcf", card("erika", "Erika Neu", "030 555111"))
    radicale.put("ida.vcf", card("ida", "Ida Radicale", "030 555333"))
    radicale.delete("max.vcf")
    yield source.sync()
    assert contacts.lookup("030555111").name == "Erika Neu"
    assert contacts.lookup("+4930555333").name == "Ida Radicale"
    assert contacts.lookup("+491712223334") is None
    assert jobs.status["carddav"].result == "2 contacts updated, 1 removed"  # only what changed

    yield source.sync()
    assert jobs.status["carddav"].result == "0 contacts updated, 0 removed" and contacts.count() == 2

    contacts.store.put(*STATE, {"token": "http://radicale.org/ns/sync/forgotten"})
    radicale.delete("ida.vcf")
    yield source.sync()
    assert contacts.lookup("+4930555333") is None and contacts.count() == 1


@pytest_twisted.inlineCallbacks
def test_carddav_by_etags(radicale: Radicale, jobs: ContactJobs, reactor: Any) -> Any:
    """With ETags instead of sync tokens: only cards whose ETag changed are fetched, and a
    card the server no longer lists is deleted."""
    radicale.put("erika.vcf", card("erika", "Erika Radicale", "030 555111"))
    radicale.put("max.vcf", card("max", "Max Radicale", "+49 171 2223334"))
    config = CardDAVConfig(radicale.url, radicale.user, radicale.password, sync="etag")
    source = CardDAVSource(config, jobs, http_client(reactor))
    yield source.sync()
    assert jobs.status["carddav"].result == "2 contacts updated, 0 removed"
    assert jobs.contacts.lookup("+4930555111").name == "Erika Radicale"
    yield source.sync()
    assert jobs.status["carddav"].result == "0 contacts updated, 0 removed"

    radicale.put("erika.vcf", card("erika", "Erika Etag", "030 555111"))
    radicale.delete("max.vcf")
    yield source.sync()
    assert jobs.status["carddav"].result == "1 contacts updated, 1 removed"
    assert jobs.contacts.lookup("030555111").name == "Erika Etag"
    assert jobs.contacts.lookup("+491712223334") is None and jobs.contacts.count() == 1


@pytest_twisted.inlineCallbacks
def test_carddav_wrong_password_keeps_contacts(radicale: Radicale, jobs: ContactJobs, reactor: Any) -> Any:
    """A refused login is a clear failure in the status; stored contacts stay."""
    radicale.put("erika.vcf", card("erika", "Erika Radicale", "030 555111"))
    good = CardDAVSource(
        CardDAVConfig(radicale.url, radicale.user, radicale.password), jobs, http_client(reactor)
    )
    yield good.sync()
    bad = CardDAVSource(CardDAVConfig(radicale.url, radicale.user, "wrong"), jobs, http_client(reactor))
    with pytest.raises(CardDAVError, match="HTTP 401 to REPORT"):
        yield bad.sync()
    assert not jobs.status["carddav"].ok and "HTTP 401" in jobs.status["carddav"].result
    assert jobs.contacts.lookup("+4930555111").name == "Erika Radicale"


@pytest_twisted.inlineCallbacks
def test_ldap_sync(slapd: Slapd, jobs: ContactJobs) -> Any:
    """Entries under the base that match the filter become contacts with a vCard; an entry
    removed from the directory is removed at the next sync."""
    slapd.person("lara", "Lara Ldap", telephoneNumber="+49 40 123456", mail="lara@example.org", o="Hafen AG")
    slapd.person("otto", "Otto Ldap", mobile="0172 9998887")
    slapd.person("nonum", "No Number")
    config = LDAPConfig(slapd.uri, f"ou=people,{slapd.base}", slapd.admin, slapd.password)
    source = LDAPSource(config, jobs, deferToThread)
    yield source.sync()
    lara = jobs.contacts.lookup("040 123456")
    assert (lara.name, lara.email, lara.organization) == ("Lara Ldap", "lara@example.org", "Hafen AG")
    assert "FN:Lara Ldap" in lara.vcard
    assert jobs.contacts.lookup("+491729998887").name == "Otto Ldap"
    assert jobs.contacts.count() == 2

    import ldap3

    connection = ldap3.Connection(ldap3.Server(slapd.uri), slapd.admin, slapd.password, auto_bind=True)
    connection.delete(f"uid=otto,ou=people,{slapd.base}")
    connection.unbind()
    yield source.sync()
    assert jobs.contacts.lookup("+491729998887") is None and jobs.contacts.count() == 1
    assert jobs.status["ldap"].result == "1 contacts from LDAP"


@pytest_twisted.inlineCallbacks
def test_ldap_bad_password(slapd: Slapd, jobs: ContactJobs) -> Any:
    """A refused bind fails the job with the reason; nothing is deleted."""
    config = LDAPConfig(slapd.uri, slapd.base, slapd.admin, "wrong")
    with pytest.raises(LDAPError, match="cannot bind"):
        yield LDAPSource(config, jobs, deferToThread).sync()
    assert not jobs.status["ldap"].ok
