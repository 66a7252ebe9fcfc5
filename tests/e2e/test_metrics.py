"""Metrics end to end: a real call through the lab moves the counters, scraped
over HTTP from ``/metrics`` and read with Prometheus' own text parser."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.web.http_headers import Headers

from appliance.directory import User
from appliance.forwarding.records import UNCONDITIONAL, Forward
from tests.e2e.calls import answered_call, call_finished
from tests.e2e.test_callback import offer, pending_ids, registered
from tests.e2e.waiting import wait_model


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def changes(before: Samples, after: Samples) -> Any:
    """moved(name, **labels): how far one sample moved between two scrapes."""

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    return moved


@pytest_twisted.inlineCallbacks
def scrape(base: str, **headers: str) -> Any:
    response = yield treq.get(base + "/metrics", headers=Headers({k: [v] for k, v in headers.items()}))
    body = yield response.text()
    return response.code, body


@pytest_twisted.inlineCallbacks
def test_counters_move_with_a_forwarded_lab_call(appliance, phones, reactor):
    """101 calls 201, who forwards to 301: afterwards the scrape shows one more
    routed internal call, forward applied and FastAGI call session, the four store
    writes timed, and the AMI login; a user's token and a relayed request are refused."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    code, before_text = yield scrape(base)
    assert code == 200
    before = samples(before_text)
    for ext in ("101", "201", "301"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    appliance.forwarding.forwards.set("201", Forward(UNCONDITIONAL, "301"))

    yield answered_call(reactor, appliance, phones("101"), "201", phones("301"))
    yield call_finished(reactor, appliance, "101")

    code, after_text = yield scrape(base)
    assert code == 200
    after = samples(after_text)

    moved = changes(before, after)

    assert moved("appliance_calls_routed_total", origin="internal") == 1
    assert moved("appliance_forwards_applied_total") == 1
    assert moved("appliance_fastagi_sessions_total", script="call") == 1
    assert moved("appliance_store_write_seconds_count") >= 4  # three users and the forward
    assert after[("appliance_ami_connections_total", ())] >= 1

    user_secret, _ = appliance.api_tokens.create("101", "tool")
    admin_secret, _ = appliance.api_tokens.create("admin", "prometheus")
    code, _ = yield scrape(base, Authorization=f"Bearer {user_secret}")
    assert code == 403
    code, _ = yield scrape(base, **{"X-Forwarded-For": "192.0.2.7"})
    assert code == 403
    code, text = yield scrape(base, Authorization=f"Bearer {admin_secret}")
    assert code == 200
    assert samples(text)[("appliance_login_failures_total", ())] >= 1


@pytest_twisted.inlineCallbacks
def test_callback_counters_move_with_a_lab_offer(appliance, phones, reactor):
    """108 calls 209, on do-not-disturb, and takes the callback offer; the callback
    feature's own reports show in the scrape: one offer (for what 209's line showed),
    one request, one FastAGI call session without error; cancelling the request
    counts it as removed."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    pbx = appliance.pbx
    yield registered(reactor, appliance, phones("108"))
    _, before_text = yield scrape(base)
    before = samples(before_text)

    yield set_dnd(appliance, "209", True)
    try:
        yield wait_model(reactor, pbx, lambda: pbx.endpoint("209").dnd, "209 on DND")
        met = pbx.presence("209").value  # dnd, or logged_out if no earlier test left 209 registered
        assert met in ("dnd", "logged_out"), met
        yield offer(phones("108"), "209").done
        assert pending_ids(appliance) == ["108:209"]
        assert appliance.callbacks.cancel("108:209")
    finally:
        yield set_dnd(appliance, "209", False)  # the lab's presence outlives the test
    yield wait_model(reactor, pbx, lambda: not pbx.endpoint("209").dnd, "209 off DND")

    code, after_text = yield scrape(base)
    assert code == 200
    moved = changes(before, samples(after_text))
    assert moved("appliance_callback_offers_total", reason=met) == 1
    assert moved("appliance_callback_requests_total") == 1
    assert moved("appliance_callback_removed_total", why="cancelled") == 1
    assert moved("appliance_fastagi_sessions_total", script="call") == 1
    assert moved("appliance_fastagi_errors_total", script="call") == 0


def set_dnd(appliance: Any, extension: str, on: bool) -> Any:
    """Asterisk's presence, as *78 / #78 set it."""
    value = "dnd,," if on else "available,,"
    return appliance.ami.sendAction(
        "Setvar", Variable=f"PRESENCE_STATE(CustomPresence:{extension})", Value=value
    )
