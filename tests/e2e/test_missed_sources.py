"""Callers from the company address books named in the journal and the missed-call
mail: Radicale (CardDAV) and slapd (LDAP) on loopback, the real Asterisk lab, sipp
trunk calls whose caller IDs are spelled differently from the address books."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.lab import Lab
from tests.e2e.servers import Radicale, Slapd
from tests.e2e.test_missed import Inbox, Rig, call_and_cancel, inbox, relay_port, ringing_phones
from tests.e2e.waiting import wait_until

__all__ = ["inbox", "relay_port"]  # the fixtures, imported for pytest

RADICALE_CALLER = "+4930555111"
LDAP_CALLER = "+4940123456"


@pytest.fixture
def books() -> Iterator[tuple[Radicale, Slapd]]:
    radicale = Radicale()
    try:
        slapd = Slapd()
    except Exception:
        radicale.stop()
        raise
    radicale.put(
        "erika.vcf",
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:erika\r\nFN:Erika Radicale\r\nORG:Dav GmbH\r\n"
        "TEL:030 555111\r\nEND:VCARD\r\n",
    )
    slapd.person("lara", "Lara Ldap", telephoneNumber="040 123456", mail="lara@example.org", o="Hafen AG")
    yield radicale, slapd
    radicale.stop()
    slapd.stop()


@pytest.fixture
def rig(tmp_path: Path, lab: Lab, reactor: Any, inbox: Inbox, books: tuple[Radicale, Slapd]) -> Iterator[Rig]:
    radicale, slapd = books
    rig = Rig(tmp_path, lab, reactor, inbox.port)
    rig.config.write_text(
        rig.config.read_text()
        + f"[carddav]\nurl = {radicale.url}\nusername = {radicale.user}\npassword = {radicale.password}\n"
        + f"[ldap]\nuri = {slapd.uri}\nbase = ou=people,{slapd.base}\n"
        + f"bind_dn = {slapd.admin}\npassword = {slapd.password}\n"
    )
    pytest_twisted.blockon(rig.start())
    rig.setup_directory()
    yield rig
    result = rig.stop()
    if result is not None:
        pytest_twisted.blockon(result)


@pytest_twisted.inlineCallbacks
def test_callers_from_carddav_and_ldap_are_named(rig: Rig, inbox: Inbox, phones: Any) -> Any:
    """Both address books sync at start; an unanswered trunk call from each caller gives a
    journal entry and a mail that name the caller as the address book does."""
    appliance = rig.appliance
    jobs = appliance.contact_jobs

    def synced() -> bool:
        done = [jobs.status.get(name) for name in ("carddav", "ldap")]
        return all(job is not None and not job.running for job in done)

    yield wait_until(rig.reactor, appliance.store.subscribe, synced, "both address books synced", timeout=30)
    assert all(jobs.status[name].ok for name in ("carddav", "ldap")), jobs.status

    for number in (RADICALE_CALLER, LDAP_CALLER):
        [ringing] = yield ringing_phones(rig, phones, "200")
        calling = call_and_cancel(phones, "200", ring_ms=2500, number=number)
        results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
        assert [ok for ok, _ in results] == [True, True], results

    journal = appliance.missed.journal
    yield wait_until(
        rig.reactor,
        appliance.store.subscribe,
        lambda: len(journal.entries("200")) == 2,
        "two journal entries",
    )
    names = {entry.caller_num: entry.caller_name for entry in journal.entries("200")}
    assert names == {RADICALE_CALLER: "Erika Radicale", LDAP_CALLER: "Lara Ldap"}
    yield wait_until(rig.reactor, inbox.subscribe, lambda: len(inbox.messages) == 2, "two mails arrive")
    subjects = sorted(str(mail["Subject"]) for mail in inbox.to("u200@example.org"))
    assert subjects == ["Verpasster Anruf von Erika Radicale", "Verpasster Anruf von Lara Ldap"]
