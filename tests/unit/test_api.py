"""The JSON API and its tokens through StubTreq: scope, validation, rate limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from appliance import settings as keys
from appliance.callback.engine import Request
from appliance.callwaiting import CallWaiting
from appliance.forwarding.records import Forwards
from appliance.forwarding.scheduled import Schedules
from appliance.missed.journal import Journal
from appliance.pbx import PBXModel
from appliance.web.api import ApiPages
from appliance.web.auth import FAILURES_BEFORE_LOCKOUT
from appliance.web.pages.tokens import TokenPages
from appliance.web.tokens import ApiTokens, RateLimit, token_id
from tests.unit.test_web import BASE, Browser, Lab, _wait, hidden, make_lab, stub_request


class FakeCallbacks:
    def __init__(self) -> None:
        self.requests = [Request("100", "200", 5.0), Request("200", "100", 6.0)]

    def pending(self, requester: str | None = None) -> list[Request]:
        return [r for r in self.requests if requester in (None, r.requester)]

    def cancel(self, request_id: str) -> bool:
        before = len(self.requests)
        self.requests = [r for r in self.requests if r.id != request_id]
        return len(self.requests) < before


class RecordingAMI:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]:
        self.sent.append({"Action": action, **headers})
        return succeed(None)


class Api:
    def __init__(self) -> None:
        self.lab: Lab = make_lab()
        self.tokens = ApiTokens(self.lab.store, self.lab.clock)
        self.forwards = Forwards(self.lab.store)
        self.callbacks = FakeCallbacks()
        self.ami = RecordingAMI()
        self.limits = RateLimit(self.lab.clock, per_minute=60, burst=20)
        self.pbx = PBXModel(clock=self.lab.clock)
        self.call_waiting = CallWaiting(
            self.lab.store, self.lab.settings, self.pbx, self.lab.clock, lambda channel, cause: succeed(None)
        )
        self.lab.web.add(TokenPages(self.tokens))
        self.lab.web.add(
            ApiPages(
                self.tokens,
                self.limits,
                self.lab.web.throttle,
                self.lab.directory,
                self.forwards,
                self.callbacks,
                Journal(self.lab.store),
                self.pbx,
                self.ami,
                Schedules(self.lab.store),
                self.call_waiting,
            )
        )

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        stub = StubTreq(self.lab.web.app.resource())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        response = _wait(stub, stub_request(stub, method, BASE + path, data=data, headers=headers))
        text = _wait(stub, response.text())
        return response.code, json.loads(text)


@pytest.fixture
def api() -> Api:
    return Api()


def test_tokens_are_stored_hashed_and_scoped(api: Api) -> None:
    """The store keeps the SHA-256, never the secret; each token knows its account."""
    secret, token = api.tokens.create("100", "script")
    assert token.id == token_id(secret)
    assert secret not in json.dumps(api.lab.store.items("api_tokens"))
    assert api.tokens.find(secret) == token
    assert api.tokens.find(secret + "x") is None
    assert not api.tokens.revoke("200", token.id)  # not Ben's to revoke
    assert api.tokens.revoke("100", token.id)
    assert api.tokens.find(secret) is None


def test_user_sets_own_forward_and_is_refused_for_another(api: Api) -> None:
    """Anna's token sets her forward (same validation as the page); Ben's lines are not hers."""
    secret, _ = api.tokens.create("100", "")
    code, body = api.call(
        "PUT", "/api/v1/users/me/forwards", secret, {"kind": "unconditional", "target": "300"}
    )
    assert code == 200 and body["forwards"][0]["target"] == "300"
    assert [f.target for f in api.forwards.of("100")] == ["300"]
    assert api.call("PUT", "/api/v1/users/200/forwards", secret, {"kind": "busy", "target": "300"})[0] == 403
    assert api.forwards.of("200") == []
    code, body = api.call(
        "PUT", "/api/v1/users/100/forwards", secret, {"kind": "unconditional", "target": "100"}
    )
    assert code == 400 and "itself" in body["error"]
    assert api.call("PUT", "/api/v1/users/me/forwards", secret, {"kind": "x", "target": "300"})[0] == 400
    assert api.call("PUT", "/api/v1/users/me/forwards", secret, {"kind": "busy", "bogus": 1})[0] == 400
    assert [f.target for f in api.forwards.of("100")] == ["300"]
    code, body = api.call("DELETE", "/api/v1/users/me/forwards?kind=unconditional", secret)
    assert (code, body) == (200, {"forwards": []})


def test_admin_token_reaches_every_user(api: Api) -> None:
    secret, _ = api.tokens.create("admin", "")
    assert api.call("PUT", "/api/v1/users/200/forwards", secret, {"kind": "busy", "target": "100"})[0] == 200
    assert api.call("GET", "/api/v1/users/999/forwards", secret)[0] == 404
    assert api.call("GET", "/api/v1/users/me/forwards", secret)[0] == 404


def test_missing_or_wrong_tokens_are_refused_and_lock_out(api: Api) -> None:
    """401 without a valid token; after repeated failures the address waits (429)."""
    assert api.call("GET", "/api/v1/users/me/forwards", None)[0] == 401
    for _ in range(FAILURES_BEFORE_LOCKOUT):
        api.call("GET", "/api/v1/users/me/forwards", "apl_" + "x" * 43)
    secret, _ = api.tokens.create("100", "")
    assert api.call("GET", "/api/v1/users/me/forwards", secret)[0] == 429


def test_rate_limit_per_token(api: Api) -> None:
    """A burst is served, then 429 until the clock refills the bucket."""
    secret, _ = api.tokens.create("100", "")
    codes = [api.call("GET", "/api/v1/users/me/forwards", secret)[0] for _ in range(21)]
    assert codes == [200] * 20 + [429]
    api.lab.clock.advance(1)
    assert api.call("GET", "/api/v1/users/me/forwards", secret)[0] == 200


def test_dnd_callbacks_and_journal(api: Api) -> None:
    """DND goes to Asterisk presence like *78; only own callbacks are listed and cancelled."""
    secret, _ = api.tokens.create("100", "")
    assert api.call("PUT", "/api/v1/users/me/dnd", secret, {"dnd": True}) == (200, {"dnd": True})
    assert api.ami.sent == [
        {"Action": "Setvar", "Variable": "PRESENCE_STATE(CustomPresence:100)", "Value": "dnd,,"}
    ]
    assert api.call("PUT", "/api/v1/users/me/dnd", secret, {"dnd": "yes"})[0] == 400
    code, body = api.call("GET", "/api/v1/users/me/callbacks", secret)
    assert code == 200 and [c["id"] for c in body["callbacks"]] == ["100:200"]
    assert api.call("DELETE", "/api/v1/users/me/callbacks/200:100", secret)[0] == 404
    assert api.call("DELETE", "/api/v1/users/me/callbacks/100:200", secret)[0] == 200
    assert [r.id for r in api.callbacks.requests] == ["200:100"]
    assert api.call("GET", "/api/v1/users/me/journal", secret) == (200, {"missed": []})


def test_call_waiting_read_and_set_by_own_token_only(api: Api) -> None:
    """Anna's token switches her call waiting (as *43/#43 do) and back to the default;
    a bad value is named and changes nothing; Ben's token cannot touch hers, the admin's can."""
    api.lab.settings.set(keys.CW_DEFAULT, "on")
    anna, _ = api.tokens.create("100", "")
    ben, _ = api.tokens.create("200", "")
    admin, _ = api.tokens.create("admin", "")
    path = "/api/v1/users/me/call_waiting"
    assert api.call("GET", path, anna) == (200, {"call_waiting": True, "choice": None})
    assert api.call("PUT", path, anna, {"call_waiting": False}) == (
        200,
        {"call_waiting": False, "choice": False},
    )
    assert api.call_waiting.choice("100") is False
    assert api.lab.store.get("call_waiting", "100") is False
    for bad in ({"call_waiting": "off"}, {"call_waiting": 0}, {}, {"call_waiting": True, "x": 1}):
        code, body = api.call("PUT", path, anna, bad)
        assert code == 400, (bad, body)
        assert "call_waiting" in body["error"] or "unknown fields: x" in body["error"], (bad, body)
    assert api.call_waiting.choice("100") is False
    code, body = api.call("PUT", "/api/v1/users/100/call_waiting", ben, {"call_waiting": True})
    assert code == 403, body
    assert api.call("GET", "/api/v1/users/100/call_waiting", ben)[0] == 403
    assert api.call_waiting.choice("100") is False
    assert api.call("PUT", "/api/v1/users/100/call_waiting", admin, {"call_waiting": None}) == (
        200,
        {"call_waiting": True, "choice": None},
    )
    assert api.lab.store.get("call_waiting", "100") is None


def test_call_waiting_shares_the_rate_limit(api: Api) -> None:
    """Call-waiting requests spend the same per-token bucket as the other actions."""
    secret, _ = api.tokens.create("100", "")
    for _ in range(20):
        assert api.call("GET", "/api/v1/users/me/forwards", secret)[0] == 200
    code, _ = api.call("PUT", "/api/v1/users/me/call_waiting", secret, {"call_waiting": True})
    assert code == 429
    assert api.call_waiting.choice("100") is None


def test_token_page_creates_shows_once_and_revokes(api: Api) -> None:
    """The profile's token page: the secret appears once, the list shows only a prefix."""
    anna = Browser(api.lab.web, {})
    assert anna.login("100", "anna-secret").code == 303
    csrf = anna.csrf("/me/tokens")
    created = anna.post("/me/tokens", {"csrf": csrf, "label": "<b>cron</b>"})
    assert created.code == 200
    secret = created.text.split('<code id="new-token">')[1].split("<")[0]
    [token] = api.tokens.of("100")
    assert api.tokens.find(secret) == token
    assert "&lt;b&gt;cron&lt;/b&gt;" in created.text
    listing = anna.get("/me/tokens").text
    assert secret not in listing and token.short in listing
    assert anna.post("/me/tokens/revoke", {"csrf": csrf, "id": token.id}).code == 303
    assert api.tokens.of("100") == []
    assert anna.post("/me/tokens", {"label": "no csrf"}).code == 403
    assert hidden(listing, "csrf") == csrf
