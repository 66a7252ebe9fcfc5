"""The JSON API end to end: a forward set with a token over HTTP is followed by
a real call through the lab; another user's token is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from twisted.web.http_headers import Headers

from appliance import settings as keys
from appliance.directory import User
from tests.e2e.calls import answered_call, lines_rung
from tests.e2e.test_callback import busy_with, end_call_of, registered
from tests.e2e.waiting import wait_model


@pytest_twisted.inlineCallbacks
def call_api(base: str, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    response = yield treq.request(
        method, base + path, data=data, headers=Headers({"Authorization": [f"Bearer {token}"]})
    )
    text = yield response.text()
    return response.code, json.loads(text)


@pytest_twisted.inlineCallbacks
def test_forward_set_by_token_is_followed_by_a_lab_call(appliance, phones, reactor):
    """202's token sets 202's unconditional forward to 302 over HTTP; 102 calls 202
    and 302 rings and answers.  102's token cannot touch 202's forwards."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    for ext in ("102", "202", "302"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    own, _ = appliance.api_tokens.create("202", "desk tool")
    other, _ = appliance.api_tokens.create("102", "someone else")

    code, body = yield call_api(
        base, "PUT", "/api/v1/users/202/forwards", other, {"kind": "unconditional", "target": "102"}
    )
    assert code == 403, body
    code, body = yield call_api(
        base, "PUT", "/api/v1/users/me/forwards", own, {"kind": "unconditional", "target": "302"}
    )
    assert code == 200, body
    assert [(f.kind, f.target) for f in appliance.forwarding.forwards.of("202")] == [("unconditional", "302")]

    rang = lines_rung(appliance)
    yield answered_call(reactor, appliance, phones("102"), "202", phones("302"))
    assert "302" in rang and "202" not in rang

    code, body = yield call_api(base, "DELETE", "/api/v1/users/me/forwards", own)
    assert (code, body) == (200, {"forwards": []})


@pytest_twisted.inlineCallbacks
def test_dnd_by_token_reaches_asterisk_and_the_lamp(appliance, reactor):
    """PUT dnd over HTTP sets Asterisk's presence as *78 does: the PBX model and the
    BLF lamp follow, and GET reads it back; false clears it."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    appliance.directory.put_user(User("106", "User 106"))
    token, _ = appliance.api_tokens.create("106", "")
    pbx = appliance.pbx
    lamp = "Custom:APPLIANCE_DND_106"

    code, body = yield call_api(base, "PUT", "/api/v1/users/me/dnd", token, {"dnd": True})
    assert (code, body) == (200, {"dnd": True})
    yield wait_model(reactor, pbx, lambda: pbx.endpoint("106").dnd, "106 on DND in Asterisk")
    assert appliance.blf.lamps.published[lamp] == "INUSE"
    assert (yield call_api(base, "GET", "/api/v1/users/me/dnd", token)) == (200, {"dnd": True})

    code, body = yield call_api(base, "PUT", "/api/v1/users/me/dnd", token, {"dnd": False})
    assert (code, body) == (200, {"dnd": False})
    yield wait_model(reactor, pbx, lambda: not pbx.endpoint("106").dnd, "106 off DND")
    assert appliance.blf.lamps.published[lamp] == "NOT_INUSE"


@pytest_twisted.inlineCallbacks
def test_call_waiting_off_by_token_gives_busy_instead_of_waiting(appliance, phones, reactor, routed):
    """Call waiting is on for everyone; 205's token switches it off for 205 (105's
    token is refused).  While 205 talks to 305, 105's call gets 486 Busy at once and
    205's office phone sees no waiting call."""
    port = yield appliance.web_service._waitingForPort
    base = f"http://127.0.0.1:{port.getHost().port}"
    appliance.settings.set(keys.CW_DEFAULT, "on")
    appliance.settings.set(keys.CC_OFFER, "off")  # plain busy, no callback offer
    for ext in ("105", "205", "305"):
        appliance.directory.put_user(User(ext, f"User {ext}"))
    own, _ = appliance.api_tokens.create("205", "")
    other, _ = appliance.api_tokens.create("105", "")

    code, body = yield call_api(base, "PUT", "/api/v1/users/205/call_waiting", other, {"call_waiting": False})
    assert code == 403, body
    assert appliance.call_waiting.enabled("205") is True
    code, body = yield call_api(base, "PUT", "/api/v1/users/me/call_waiting", own, {"call_waiting": False})
    assert (code, body) == (200, {"call_waiting": False, "choice": False})
    assert appliance.store.get("call_waiting", "205") is False

    p105, p205, p305 = phones("105"), phones("205"), phones("305")
    yield registered(reactor, appliance, p105, p205, p305)
    held = yield busy_with(reactor, appliance, p205, p305)
    yield p105._run("cc_busy", {"target": "205", "code": 486, "extra": ""}, timeout=20).done
    assert ("205", "internal", "BUSY") in [(o.number, o.origin, o.status) for o in routed]
    yield end_call_of(reactor, appliance, "205", held)
    assert p205.invites(held[0], "INVITE-WAITING") == []
