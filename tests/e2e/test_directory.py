"""The directory end to end: users from the lab's PJSIP endpoints, and an external
caller ID in another spelling than the breakthrough list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance.directory import User
from appliance.lab import Lab
from tests.e2e.calls import route_finished
from tests.e2e.test_forwarding import (
    forward,
    no_calls_left,
    registered,
    run,
    trunk_call_rings_200_undiverted,
)
from tests.e2e.waiting import wait_until

__all__ = ["no_calls_left"]  # the autouse fixture ends calls left up by killed phones

NEW = "251"
NEW_ENDPOINT = f'\n[{NEW}](phone)\naors = {NEW}\ncallerid = "Neue Kollegin" <{NEW}>\n\n[{NEW}](phone-aor)\n'


def pjsip_conf(lab: Lab) -> Path:
    return lab.root / lab.confdir.lstrip("/") / "pjsip.conf"


@pytest.fixture
def pjsip_restored(lab: Lab) -> Iterator[None]:
    """The lab's PJSIP configuration as it was, after the test changed it."""
    original = pjsip_conf(lab).read_text()
    yield
    pjsip_conf(lab).write_text(original)
    lab.cli("module reload res_pjsip.so")


def wait_directory(appliance: Any, reactor: Any, check: Any, what: str) -> Any:
    return wait_until(reactor, appliance.store.subscribe, check, what, timeout=20)


@pytest_twisted.inlineCallbacks
def test_endpoint_added_to_asterisk_becomes_a_user(appliance, phones, reactor, lab, pjsip_restored, routed):
    """The lab's endpoints are users after the first sync; an endpoint added to Asterisk
    (pjsip.conf + reload) becomes a user named by its caller ID who takes a real call;
    removed again, it is flagged, not deleted, and the admin's e-mail stays."""
    directory = appliance.directory
    yield wait_directory(appliance, reactor, lambda: directory.user("309"), "lab endpoints are users")
    assert directory.user("100") == User("100", "Lab 100", from_pbx=True)
    assert directory.user("trunk") is None
    assert directory.user(NEW) is None

    pjsip_conf(lab).write_text(pjsip_conf(lab).read_text() + NEW_ENDPOINT)
    lab.cli("module reload res_pjsip.so")
    user = yield wait_directory(appliance, reactor, lambda: directory.user(NEW), f"{NEW} becomes a user")
    assert user == User(NEW, "Neue Kollegin", from_pbx=True)

    directory.put_user(User(NEW, "Neue Kollegin", "neu@example.org", "en", from_pbx=True))
    new_phone = phones(NEW)
    yield registered(appliance, reactor, new_phone)
    answering = run(new_phone, "fwd_answer")
    calling = phones("100").call(NEW, hold_ms=300)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield route_finished(reactor, appliance, routed)
    assert [(c.number, c.origin, c.status) for c in routed] == [(NEW, "internal", "ANSWER")]

    pjsip_conf(lab).write_text(pjsip_conf(lab).read_text().replace(NEW_ENDPOINT, ""))
    lab.cli("module reload res_pjsip.so")
    gone = yield wait_directory(
        appliance, reactor, lambda: (u := directory.user(NEW)) and u.vanished and u, f"{NEW} flagged"
    )
    assert gone == User(NEW, "Neue Kollegin", "neu@example.org", "en", from_pbx=True, vanished=True)


@pytest_twisted.inlineCallbacks
def test_external_caller_id_in_another_spelling_breaks_through(appliance, phones, reactor):
    """FWD_BREAKTHROUGH_CALLERIDS says "030 123456"; the trunk presents +4930123456: the
    call rings 200 despite its unconditional forward to 300."""
    appliance.settings.set("FWD_BREAKTHROUGH_CALLERIDS", "0171 555\n030 123456")
    forward(appliance, "200", "unconditional", "300")
    yield trunk_call_rings_200_undiverted(appliance, phones, reactor)
