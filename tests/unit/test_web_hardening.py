"""Web hardening through StubTreq: CSRF only from the body, same-site ``next``, 400 for
malformed logins, sessions ended by a password change, trusted proxies, deep vCards."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from appliance.config import WebLimits
from appliance.contacts import ContactError, parse_vcards
from tests.unit.test_web import Browser, Lab, hidden, make_lab


@pytest.fixture
def lab() -> Lab:
    return make_lab()


def test_csrf_token_in_the_url_is_not_taken(lab: Lab) -> None:
    """A POST whose token is only in the query string is refused and changes nothing."""
    browser = lab.browser()
    assert browser.login("admin", "admin-secret").code == 303
    token = browser.csrf("/admin/settings")
    reply = browser.post(f"/admin/settings?csrf={token}", {"value.CC_TIMEOUT": "90"})
    assert reply.code == 403
    assert lab.settings.get("CC_TIMEOUT") == 60


def test_login_token_and_password_only_from_the_body(lab: Lab) -> None:
    """The login form's token and password in the URL do not log anyone in."""
    browser = lab.browser()
    token = hidden(browser.get("/login").text, "csrf")
    reply = browser.post(f"/login?csrf={token}&password=admin-secret", {"login": "admin"})
    assert reply.code == 403 and "appliance_session" not in browser.cookies


@pytest.mark.parametrize(
    "target", ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "/ok\n/x"]
)
def test_next_leads_only_to_same_site_paths(lab: Lab, target: str) -> None:
    """After login, ``next`` pointing anywhere but a path of this site goes home instead."""
    browser = lab.browser()
    form = browser.get("/login")
    reply = browser.post(
        "/login",
        {"csrf": hidden(form.text, "csrf"), "login": "admin", "password": "admin-secret", "next": target},
    )
    assert (reply.code, reply.header("location")) == (303, "/admin/settings")


def test_next_keeps_a_local_path(lab: Lab) -> None:
    """A same-site path with a query survives the login."""
    browser = lab.browser()
    form = browser.get("/login")
    data = {"csrf": hidden(form.text, "csrf"), "login": "admin", "password": "admin-secret"}
    reply = browser.post("/login", {**data, "next": "/admin/settings?q=CC_"})
    assert reply.header("location") == "/admin/settings?q=CC_"


@pytest.mark.parametrize("login", ["", "   ", "adm\x00in", "x" * 200, "<script>"])
def test_malformed_login_is_400_not_500(lab: Lab, login: str) -> None:
    """Empty, NUL-bearing, overlong or odd login names get the login form with 400."""
    browser = lab.browser()
    form = browser.get("/login")
    reply = browser.post("/login", {"csrf": hidden(form.text, "csrf"), "login": login, "password": "x"})
    assert reply.code == 400
    assert "Traceback" not in reply.text and 'name="login"' in reply.text


def test_password_change_ends_the_users_other_sessions(lab: Lab) -> None:
    """Anna changes her password in one browser: her other browser is logged out, this
    one stays in, and Ben's session is untouched."""
    here, elsewhere, ben = lab.browser(), lab.browser(), lab.browser()
    for browser, login, password in ((here, "100", "anna-secret"), (elsewhere, "100", "anna-secret")):
        assert browser.login(login, password).code == 303
    assert ben.login("200", "ben-secret").code == 303
    token = here.csrf("/me")
    changed = here.post("/me/password", {"csrf": token, "current": "anna-secret", "password": "new-secret-1"})
    assert changed.code == 200
    assert here.get("/me").code == 200
    assert elsewhere.get("/me").code == 303  # back to the login form
    assert ben.get("/me").code == 200


def _request(peer: str, forwarded: list[str] | None) -> Request:
    request = Request(DummyChannel())
    request.client = IPv4Address("TCP", peer, 40000)
    if forwarded is not None:
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [h.encode() for h in forwarded])
    return request


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),  # from the trusted proxy
        ("127.0.0.1", ["10.9.9.9, 198.51.100.7"], "198.51.100.7"),  # rightmost hop added by our proxy
        ("127.0.0.1", ["198.51.100.7, 127.0.0.1"], "198.51.100.7"),  # proxies skipped
        ("127.0.0.1", ["not-an-ip"], "127.0.0.1"),  # broken chain: the proxy itself
        ("127.0.0.1", None, "127.0.0.1"),
        ("203.0.113.5", ["198.51.100.7"], "203.0.113.5"),  # not a trusted proxy: header ignored
    ],
)
def test_forwarded_for_only_from_trusted_proxies(
    lab: Lab, peer: str, forwarded: list[str] | None, client: str
) -> None:
    """The client address comes from X-Forwarded-For only when the peer is a configured proxy."""
    lab.web.limits = replace(WebLimits(), trusted_proxies=frozenset({"127.0.0.1"}))
    assert lab.web._client(_request(peer, forwarded)) == client


def test_forwarded_for_ignored_without_configured_proxies(lab: Lab) -> None:
    """By default nobody is a trusted proxy, not even loopback."""
    assert lab.web._client(_request("127.0.0.1", ["198.51.100.7"])) == "127.0.0.1"


def test_lockout_behind_a_proxy_is_per_client(lab: Lab) -> None:
    """Behind a trusted proxy one client's guesses do not lock admin out for another client."""
    lab.web.limits = replace(WebLimits(), trusted_proxies=frozenset({"127.0.0.1"}))
    attacker = Browser(lab.web, {"X-Forwarded-For": "203.0.113.66"})
    for _ in range(6):
        attacker.login("admin", "guess")
    assert attacker.login("admin", "admin-secret").code == 429
    assert Browser(lab.web, {"X-Forwarded-For": "198.51.100.7"}).login("admin", "admin-secret").code == 303


def test_404_and_405_carry_the_security_headers(lab: Lab) -> None:
    """Error pages get the same CSP and framing headers as pages."""
    browser = lab.browser()
    for reply in (browser.get("/no/such/page"), browser.request("PUT", "/login")):
        assert reply.code in (404, 405)
        assert "default-src 'none'" in reply.header("content-security-policy")
        assert reply.header("x-frame-options") == "DENY"


def test_deeply_nested_vcards_are_refused_cleanly() -> None:
    """3,000 nested vCards give a ContactError, not a RecursionError."""
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\n" * 3000 + "END:VCARD\r\n" * 3000
    with pytest.raises(ContactError, match="nested deeper"):
        parse_vcards(text)


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/admin/users/%00", None),
        ("POST", "/admin/users/%00/delete", {}),
        ("POST", "/admin/users/new", {"extension": "\x00", "name": "Nul"}),
    ],
)
def test_nul_in_names_is_400_not_500(lab: Lab, method: str, path: str, data: dict[str, str] | None) -> None:
    """A NUL in a URL part or a form field that names a store key is refused with 400."""
    browser = lab.browser()
    assert browser.login("admin", "admin-secret").code == 303
    if data is not None:
        data = {**data, "csrf": browser.csrf("/admin/settings")}
    reply = browser.request(method, path, data)
    assert reply.code == 400, reply.text[:300]
    # The user form checks the extension itself (the directory answers from memory).
    refused = "Invalid request" in reply.text or "is not 2 to 8 digits" in reply.text
    assert refused and "Traceback" not in reply.text
    assert "default-src 'none'" in reply.header("content-security-policy")


def test_alerts_shown_to_the_admin_only(lab: Lab) -> None:
    """A store problem is a banner on every admin page, escaped, and not shown to users."""
    lab.web.alerts.append(lambda: ["store not writable (<disk full>): 3 changes kept in memory"])
    admin, anna = lab.browser(), lab.browser()
    assert admin.login("admin", "admin-secret").code == 303
    assert anna.login("100", "anna-secret").code == 303
    page = admin.get("/admin/settings").text
    assert 'role="alert">store not writable (&lt;disk full&gt;): 3 changes kept in memory<' in page
    assert 'role="alert"' not in anna.get("/me").text


def test_busy_hashing_is_503_and_not_counted(lab: Lab) -> None:
    """When the bounded hashing queue is full the login is answered 503 at once and the
    attempt does not count towards a lockout."""
    from twisted.internet.defer import Deferred, fail

    from appliance.web.auth import HashingBusy

    def busy(function: object, *args: object) -> Deferred[object]:
        return fail(HashingBusy("full"))

    working = lab.web.credentials._run
    lab.web.credentials._run = busy
    browser = lab.browser()
    for _ in range(10):
        reply = browser.login("admin", "wrong")
        assert reply.code == 503 and "Too many logins at once" in reply.text
    lab.web.credentials._run = working
    assert browser.login("admin", "admin-secret").code == 303  # ten would have locked it
