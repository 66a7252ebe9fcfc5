"""Callback by mail end to end: sipp phones, the real Asterisk, the appliance
in-process, and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from appliance import settings as keys
from appliance import tap
from appliance.directory import Directory, User
from appliance.lab import Lab
from tests.e2e.conftest import appliance_config
from tests.e2e.test_callback import (
    busy_with,
    channels_created,
    end_call_of,
    offer,
    pending_ids,
    registered,
    wait_pending,
)
from tests.e2e.test_missed import Inbox, inbox, relay_port  # noqa: F401 (fixtures)
from tests.e2e.waiting import wait_synced, wait_until


@pytest.fixture
def mailing(tmp_path: Path, lab: Lab, reactor: Any, inbox: Inbox) -> Iterator[Any]:  # noqa: F811
    """The appliance relaying to the test's SMTP server; users 100 and 200 have addresses."""
    config = appliance_config(tmp_path, lab)
    config.write_text(config.read_text().replace("port = 2525", f"port = {inbox.port}"))
    appliance = tap.build(str(config), reactor)
    appliance.outbox.backoff = lambda attempt: 1.0
    appliance.startService()
    pytest_twisted.blockon(wait_synced(reactor, appliance))
    directory = Directory(appliance.store)
    directory.put_user(User("100", "Anna Berger", "anna@example.org", language="de"))
    directory.put_user(User("200", "Ben Cole", "ben@example.org", language="en"))
    yield appliance
    pytest_twisted.blockon(appliance.stopService())


def mail_to(reactor: Any, inbox: Inbox, address: str, timeout: float = 30.0) -> Any:  # noqa: F811
    return wait_until(reactor, inbox.subscribe, lambda: inbox.to(address), f"a mail to {address}", timeout)


@pytest_twisted.inlineCallbacks
def test_mail_me_instead_of_the_recall(mailing, phones, reactor, inbox):  # noqa: F811
    """100 chose "mail me" and takes the offer for busy 200; when 200's call ends,
    100 gets a mail saying 200 is free, and 100's phone is not rung."""
    mailing.callbacks.set_notify_mode("100", "mail")
    p100, p200, p300 = phones("100"), phones("200"), phones("300")
    yield registered(reactor, mailing, p100, p200, p300)
    held = yield busy_with(reactor, mailing, p200, p300)
    yield offer(p100, "200").done
    assert pending_ids(mailing) == ["100:200"]

    at_100 = channels_created(mailing, "100")
    yield end_call_of(reactor, mailing, "200", held)
    [message] = yield mail_to(reactor, inbox, "anna@example.org")
    assert message["Subject"] == "Rückruf: 200 (Ben Cole) ist jetzt frei"
    yield wait_pending(reactor, mailing, lambda ids: not ids, "request done by the mail")
    assert at_100 == []
    yield DeferredList([held[1].done], consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_expired_request_mails_the_requester(mailing, phones, reactor, inbox):  # noqa: F811
    """With CC_TIMEOUT 1 minute the request 100 made for busy 200 is deleted about a
    minute after it was made, 100 gets the mail saying so, and 200's hangup afterwards
    starts no recall.  (The exact moment is covered by the engine tests with a Clock;
    one test waits the minute for both the expiry and its mail.)"""
    mailing.settings.set(keys.CC_TIMEOUT, "1")
    recalls: list[object] = []
    undo = mailing.callbacks.on_recall(recalls.append)
    p100, p200, p300 = phones("100"), phones("200"), phones("300")
    yield registered(reactor, mailing, p100, p200, p300)
    held = yield busy_with(reactor, mailing, p200, p300)
    yield offer(p100, "200").done
    assert pending_ids(mailing) == ["100:200"]
    made = mailing.callbacks.pending()[0].created
    yield wait_pending(reactor, mailing, lambda ids: not ids, "request expired", timeout=75)
    assert 60.0 <= reactor.seconds() - made < 62.0
    [message] = yield mail_to(reactor, inbox, "anna@example.org", timeout=30)
    assert message["Subject"] == "Rückruf zu 200 (Ben Cole) abgelaufen"
    assert "abgelaufen" in message.get_body(("plain",)).get_content()
    yield end_call_of(reactor, mailing, "200", held)
    assert recalls == []
    assert not mailing.pbx.channels_of("100")
    undo()
