"""The web page through Klein and treq's StubTreq: no network, time from a Clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import pytest
import treq
from argon2 import PasswordHasher
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from appliance.directory import Directory, User
from appliance.settings import Settings
from appliance.testing import MemoryStore
from appliance.web import WebApp
from appliance.web.auth import (
    ADDRESS_FAILURES_BEFORE_LOCKOUT,
    FAILURES_BEFORE_LOCKOUT,
    FIRST_LOCKOUT,
    IDLE_TIMEOUT,
    synchronously,
)

BASE = "http://127.0.0.1:8080"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
"""Cheap hashes keep the tests fast; production uses argon2's defaults."""


@dataclass
class Reply:
    code: int
    headers: Any
    text: str

    def header(self, name: str) -> str:
        values = self.headers.getRawHeaders(name) or []
        return values[0] if values else ""

    def cookies(self) -> list[str]:
        return list(self.headers.getRawHeaders("set-cookie") or [])


class Browser:
    """One browser: its own cookies, synchronous requests, redirects not followed."""

    def __init__(self, web: WebApp, headers: Mapping[str, str] | None = None) -> None:
        self.web = web
        self.headers = {"Accept-Language": "en", **(headers or {})}
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: Mapping[str, str] | None = None) -> Reply:
        stub = StubTreq(self.web.app.resource())
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = _wait(
            stub, stub_request(stub, method, BASE + path, data=data, headers=headers, allow_redirects=False)
        )
        body = _wait(stub, treq.text_content(response, encoding="utf-8"))
        reply = Reply(response.code, response.headers, body)
        for line in reply.cookies():
            for name, morsel in SimpleCookie(line).items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, data: Mapping[str, str]) -> Reply:
        return self.request("POST", path, data)

    def login(self, login: str, password: str) -> Reply:
        form = self.get("/login")
        return self.post("/login", {"csrf": hidden(form.text, "csrf"), "login": login, "password": password})

    def csrf(self, path: str) -> str:
        return hidden(self.get(path).text, "csrf")


def stub_request(stub: StubTreq, method: str, url: str, **options: Any) -> Any:
    """``treq.request`` through ``stub``: StubTreq sets treq's functions on itself
    at run time, so mypy sees no ``request`` attribute."""
    request: Callable[..., Any] = vars(stub)["request"]
    return request(method, url, **options)


def _wait(stub: StubTreq, deferred: Any) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    stub.flush()
    assert results, "request did not finish"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r}"
    return found.group(1)


@dataclass
class Lab:
    store: MemoryStore
    settings: Settings
    directory: Directory
    clock: Clock
    web: WebApp

    def new_web(self) -> WebApp:
        return WebApp(self.store, self.settings, self.directory, self.clock, hasher=FAST, run=synchronously)

    def browser(self, **headers: str) -> Browser:
        return Browser(self.web, headers)


def make_lab() -> Lab:
    """The web app over an in-memory store: admin, Anna (100, German), Ben (200, English)."""
    store = MemoryStore()
    settings = Settings(store)
    directory = Directory(store)
    clock = Clock()
    clock.advance(1_800_000_000)
    web = WebApp(store, settings, directory, clock, hasher=FAST, run=synchronously)
    directory.put_user(User("100", "Anna Berg", "anna@example.com", "de"))
    directory.put_user(User("200", "Ben Cole", "ben@example.com", "en"))
    web.credentials.set_password("admin", "admin-secret")
    web.credentials.set_password("100", "anna-secret")
    web.credentials.set_password("200", "ben-secret")
    return Lab(store, settings, directory, clock, web)


@pytest.fixture
def lab() -> Lab:
    return make_lab()


@pytest.fixture
def admin(lab: Lab) -> Browser:
    browser = lab.browser()
    assert browser.login("admin", "admin-secret").code == 303
    return browser


@pytest.fixture
def anna(lab: Lab) -> Browser:
    browser = lab.browser()
    assert browser.login("100", "anna-secret").code == 303
    return browser


# --- login, logout, sessions ---------------------------------------------------


def test_login_opens_the_admin_home(lab: Lab) -> None:
    """The admin's right password leads to the settings table."""
    browser = lab.browser()
    reply = browser.login("admin", "admin-secret")
    assert (reply.code, reply.header("location")) == (303, "/admin/settings")
    assert "CC_TIMEOUT" in browser.get("/admin/settings").text


def test_pages_need_a_login(lab: Lab) -> None:
    """Without a session a page redirects to the login form, keeping the target."""
    reply = lab.browser().get("/admin/settings?q=CC_")
    assert reply.code == 303
    assert reply.header("location") == "/login?next=%2Fadmin%2Fsettings%3Fq%3DCC_"


def test_login_returns_to_the_page_asked_for(lab: Lab) -> None:
    """After login the browser goes back to the local page it wanted."""
    browser = lab.browser()
    form = browser.get("/login?next=/admin/users")
    reply = browser.post(
        "/login",
        {
            "csrf": hidden(form.text, "csrf"),
            "next": hidden(form.text, "next"),
            "login": "admin",
            "password": "admin-secret",
        },
    )
    assert reply.header("location") == "/admin/users"


def test_login_never_redirects_off_site(lab: Lab) -> None:
    """A ``next`` pointing to another site is ignored (no open redirect)."""
    browser = lab.browser()
    form = browser.get("/login")
    reply = browser.post(
        "/login",
        {
            "csrf": hidden(form.text, "csrf"),
            "next": "//evil.example/",
            "login": "admin",
            "password": "admin-secret",
        },
    )
    assert reply.header("location") == "/admin/settings"


def test_wrong_password_and_unknown_login_get_the_same_message(lab: Lab) -> None:
    """A wrong password and an unknown login are refused alike, naming neither."""
    wrong = lab.browser().login("admin", "nope")
    unknown = lab.browser().login("999", "nope")
    assert wrong.code == unknown.code == 403
    assert "Login failed." in wrong.text and "Login failed." in unknown.text
    assert not any("appliance_session=" in cookie for cookie in wrong.cookies())


def test_login_without_the_form_token_is_refused(lab: Lab) -> None:
    """A login POST that did not come from our form (login CSRF) gets 403 and no session."""
    browser = lab.browser()
    reply = browser.post("/login", {"login": "admin", "password": "admin-secret"})
    assert reply.code == 403
    assert browser.get("/admin/settings").code == 303


def test_session_cookie_flags(lab: Lab) -> None:
    """The session cookie is HttpOnly and SameSite=Strict, and not Secure over plain HTTP."""
    cookie = next(
        c for c in lab.browser().login("admin", "admin-secret").cookies() if "appliance_session=" in c
    )
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie
    session_id = SimpleCookie(cookie)["appliance_session"].value
    assert len(session_id) >= 43  # 256 bits, base64


def test_session_cookie_is_secure_behind_a_local_tls_proxy(lab: Lab) -> None:
    """Behind a TLS proxy on this machine (X-Forwarded-Proto: https) the cookie is Secure."""
    browser = lab.browser(**{"X-Forwarded-Proto": "https"})
    cookie = next(c for c in browser.login("admin", "admin-secret").cookies() if "appliance_session=" in c)
    assert "Secure" in cookie


def test_logout_ends_the_session(admin: Browser) -> None:
    """After logout the same cookie opens nothing."""
    reply = admin.post("/logout", {"csrf": admin.csrf("/admin/settings")})
    assert (reply.code, reply.header("location")) == (303, "/login")
    assert admin.get("/admin/settings").code == 303
    assert admin.web.store.items("sessions") == []


def test_session_survives_a_restart(lab: Lab, admin: Browser) -> None:
    """A new WebApp on the same store (an appliance restart) still knows the session."""
    admin.web = lab.new_web()
    assert admin.get("/admin/settings").code == 200


def test_session_expires_when_idle(lab: Lab, admin: Browser) -> None:
    """A session unused for longer than the idle timeout is gone, and removed from the store."""
    lab.clock.advance(IDLE_TIMEOUT + 1)
    assert admin.get("/admin/settings").code == 303
    assert lab.store.items("sessions") == []


def test_activity_keeps_a_session_alive(lab: Lab, admin: Browser) -> None:
    """Using the page within the idle timeout moves the expiry on."""
    for _ in range(3):
        lab.clock.advance(IDLE_TIMEOUT * 0.75)
        assert admin.get("/admin/settings").code == 200


def test_a_new_login_gets_a_new_session_id(lab: Lab) -> None:
    """Login never adopts a session id the browser brought along (no fixation)."""
    browser = lab.browser()
    browser.cookies["appliance_session"] = "planted-by-an-attacker"
    browser.login("admin", "admin-secret")
    assert browser.cookies["appliance_session"] != "planted-by-an-attacker"
    assert browser.get("/admin/settings").code == 200


def test_store_holds_no_usable_session_id(lab: Lab, admin: Browser) -> None:
    """The sessions namespace is keyed by a hash, not by the cookie value."""
    keys = [key for key, _ in lab.store.items("sessions")]
    assert len(keys) == 1 and admin.cookies["appliance_session"] not in keys


# --- rate limiting -------------------------------------------------------------


def test_wrong_passwords_lock_the_login(lab: Lab) -> None:
    """After repeated failures even the right password is refused until the lockout ends."""
    browser = lab.browser()
    for _ in range(FAILURES_BEFORE_LOCKOUT):
        assert browser.login("admin", "wrong").code == 403
    locked = browser.login("admin", "admin-secret")
    assert locked.code == 429 and "Too many failed attempts" in locked.text
    lab.clock.advance(FIRST_LOCKOUT + 1)
    assert browser.login("admin", "admin-secret").code == 303


def test_lockout_doubles_with_further_failures(lab: Lab) -> None:
    """Each failure after the lockout starts doubles the wait."""
    browser = lab.browser()
    for _ in range(FAILURES_BEFORE_LOCKOUT):
        browser.login("100", "wrong")
    lab.clock.advance(FIRST_LOCKOUT + 1)
    assert browser.login("100", "wrong").code == 403
    lab.clock.advance(FIRST_LOCKOUT + 1)
    assert browser.login("100", "anna-secret").code == 429
    lab.clock.advance(FIRST_LOCKOUT)
    assert browser.login("100", "anna-secret").code == 303


def test_guessing_many_logins_from_one_address_is_limited(lab: Lab) -> None:
    """Failures across different login names still lock the client address."""
    browser = lab.browser()
    for number in range(ADDRESS_FAILURES_BEFORE_LOCKOUT):
        browser.login(f"3{number:02}", "guess")
    assert browser.login("200", "ben-secret").code == 429


# --- CSRF ------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused(lab: Lab, admin: Browser) -> None:
    """A settings POST without the token is 403 and stores nothing."""
    reply = admin.post("/admin/settings", {"value.CC_TIMEOUT": "90"})
    assert reply.code == 403
    assert lab.settings.get("CC_TIMEOUT") == 60
    assert lab.store.items("settings") == []


def test_post_with_a_wrong_csrf_token_is_refused(lab: Lab, admin: Browser, anna: Browser) -> None:
    """Another session's token does not work either."""
    reply = admin.post("/admin/users/200/delete", {"csrf": anna.csrf("/me")})
    assert reply.code == 403
    assert lab.directory.user("200") is not None


def test_logout_needs_the_csrf_token(lab: Lab, admin: Browser) -> None:
    """A forged logout is refused and the session stays."""
    assert admin.post("/logout", {}).code == 403
    assert admin.get("/admin/settings").code == 200


# --- authorisation ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/settings", "/admin/users", "/admin/users/new", "/admin/users/200"])
def test_admin_pages_refuse_a_user(anna: Browser, path: str) -> None:
    """A logged-in user gets 403 on every admin page."""
    reply = anna.get(path)
    assert reply.code == 403
    assert "Zugriff verweigert" in reply.text  # Anna's language is German


def test_admin_posts_refuse_a_user(lab: Lab, anna: Browser) -> None:
    """A user with a valid token of their own still cannot change settings or users."""
    token = anna.csrf("/me")
    assert anna.post("/admin/settings", {"csrf": token, "value.CC_TIMEOUT": "90"}).code == 403
    assert anna.post("/admin/users/200", {"csrf": token, "name": "Mallory", "language": "en"}).code == 403
    assert anna.post("/admin/users/200/delete", {"csrf": token}).code == 403
    assert lab.settings.get("CC_TIMEOUT") == 60
    assert lab.directory.user("200") == User("200", "Ben Cole", "ben@example.com", "en")


def test_a_user_sees_only_their_own_profile(anna: Browser) -> None:
    """Anna's profile page shows Anna and nothing of Ben."""
    text = anna.get("/me").text
    assert "Anna Berg" in text and "anna@example.com" in text
    assert "Ben Cole" not in text and "ben@example.com" not in text


def test_a_user_cannot_change_another_users_profile(lab: Lab, anna: Browser) -> None:
    """Naming another extension in the form changes only the user who is logged in."""
    reply = anna.post("/me", {"csrf": anna.csrf("/me"), "language": "en", "extension": "200", "login": "200"})
    assert reply.code == 303
    assert lab.directory.user("100").language == "en"
    assert lab.directory.user("200") == User("200", "Ben Cole", "ben@example.com", "en")
    assert anna.get("/me?extension=200").text.count("Ben Cole") == 0


def test_the_admin_has_no_user_profile(admin: Browser) -> None:
    """User pages refuse the admin account, which has no directory entry."""
    assert admin.get("/me").code == 403


def test_a_deleted_user_is_logged_out(lab: Lab, admin: Browser, anna: Browser) -> None:
    """Deleting a user ends their sessions and removes their password."""
    assert admin.post("/admin/users/100/delete", {"csrf": admin.csrf("/admin/users")}).code == 303
    assert anna.get("/me").code == 303
    assert not lab.web.credentials.has_password("100")
    assert lab.browser().login("100", "anna-secret").code == 403


# --- settings table --------------------------------------------------------------------


def test_filter_shows_matching_keys_only(admin: Browser) -> None:
    """``?q=CC_`` lists the CC_ keys and no others."""
    text = admin.get("/admin/settings?q=CC_").text
    keys = set(re.findall(r'id="row-([A-Z_]+)"', text))
    assert keys and all(key.startswith("CC_") for key in keys)
    assert "CC_TIMEOUT" in keys and "MC_RECIPIENTS" not in keys


def test_table_shows_description_in_the_ui_language(lab: Lab) -> None:
    """Descriptions follow Accept-Language when the visitor has no directory language."""
    german = lab.browser(**{"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    german.login("admin", "admin-secret")
    assert (
        "Minuten, bis ein offener Rückrufwunsch gelöscht wird"
        in german.get("/admin/settings?q=CC_TIMEOUT").text
    )


def test_valid_value_is_stored_and_announced(lab: Lab, admin: Browser) -> None:
    """Saving a valid value stores it at once and notifies subscribers."""
    heard: list[tuple[str, Any]] = []
    lab.settings.subscribe(lambda name, value: heard.append((name, value)), ["CC_TIMEOUT"])
    token = admin.csrf("/admin/settings")
    reply = admin.post("/admin/settings", {"csrf": token, "q": "CC_", "value.CC_TIMEOUT": "90"})
    assert (reply.code, reply.header("location")) == (303, "/admin/settings?q=CC_&saved=1")
    assert lab.settings.get("CC_TIMEOUT") == 90
    assert heard == [("CC_TIMEOUT", 90)]
    assert "Saved." in admin.get(reply.header("location")).text


def test_unchanged_values_are_not_stored(lab: Lab, admin: Browser) -> None:
    """Submitting the whole table stores only what differs, so defaults stay defaults."""
    token = admin.csrf("/admin/settings")
    form = {"csrf": token, "value.CC_TIMEOUT": "60", "value.CC_OFFER": "on", "value.CC_WAIT_TIME": "25"}
    assert admin.post("/admin/settings", form).code == 303
    assert lab.store.items("settings") == [("CC_WAIT_TIME", 25)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("-5", "'-5' is out of range"), ("abc", "'abc' is not a whole number")],
)
def test_invalid_value_is_refused_with_the_reason(lab: Lab, admin: Browser, raw: str, reason: str) -> None:
    """An invalid value shows its reason next to the field and nothing is stored, not even valid fields."""
    token = admin.csrf("/admin/settings")
    reply = admin.post(
        "/admin/settings", {"csrf": token, "value.CC_TIMEOUT": raw, "value.CC_WAIT_TIME": "25"}
    )
    assert reply.code == 400
    error = re.search(r'id="error-CC_TIMEOUT"[^>]*>([^<]*)<', reply.text)
    assert error and error.group(1) == f"CC_TIMEOUT: {reason} (allowed: 1 to 10080 minutes)".replace(
        "'", "&#39;"
    )
    assert f'value="{raw}"' in reply.text
    assert lab.settings.get("CC_TIMEOUT") == 60 and lab.settings.get("CC_WAIT_TIME") == 20


# --- user directory ------------------------------------------------------------------------


def test_admin_adds_a_user_who_can_then_log_in(lab: Lab, admin: Browser) -> None:
    """A user added with a password is in the directory and can log in."""
    form = {
        "csrf": admin.csrf("/admin/users/new"),
        "extension": "300",
        "name": "Cara Diaz",
        "email": "cara@example.com",
        "language": "en",
        "groups": "sales, support",
        "numbers": "+49301234300",
        "password": "cara-secret",
    }
    reply = admin.post("/admin/users/new", form)
    assert (reply.code, reply.header("location")) == (303, "/admin/users/300?saved=1")
    assert lab.directory.user("300") == User(
        "300", "Cara Diaz", "cara@example.com", "en", ("sales", "support"), ("+49301234300",)
    )
    assert lab.browser().login("300", "cara-secret").code == 303


def test_invalid_user_is_refused_with_the_directory_message(lab: Lab, admin: Browser) -> None:
    """A bad e-mail address is reported and nothing is stored."""
    form = {
        "csrf": admin.csrf("/admin/users/new"),
        "extension": "300",
        "name": "Cara",
        "email": "not-an-address",
    }
    reply = admin.post("/admin/users/new", form)
    assert reply.code == 400
    assert "300: email: &#39;not-an-address&#39; is not an e-mail address" in reply.text
    assert lab.directory.user("300") is None


def test_existing_extension_is_not_overwritten_by_add(lab: Lab, admin: Browser) -> None:
    """Adding a user under a taken extension is refused."""
    form = {"csrf": admin.csrf("/admin/users/new"), "extension": "200", "name": "Impostor", "language": "en"}
    assert admin.post("/admin/users/new", form).code == 400
    assert lab.directory.user("200").name == "Ben Cole"


def test_admin_edits_a_user(lab: Lab, admin: Browser) -> None:
    """Editing keeps the extension and stores the new fields."""
    token = admin.csrf("/admin/users/200")
    form = {
        "csrf": token,
        "extension": "999",
        "name": "Ben Cole-Smith",
        "email": "",
        "language": "de",
        "groups": "",
        "numbers": "",
    }
    assert admin.post("/admin/users/200", form).code == 303
    assert lab.directory.user("200") == User("200", "Ben Cole-Smith", "", "de")
    assert lab.directory.user("999") is None


def test_short_password_is_refused(lab: Lab, admin: Browser) -> None:
    """A new password below the minimum length is refused and the old one stays."""
    token = admin.csrf("/admin/users/200")
    form = {"csrf": token, "name": "Ben Cole", "language": "en", "password": "short"}
    assert admin.post("/admin/users/200", form).code == 400
    assert lab.web.credentials.check("200", "ben-secret")


def test_names_are_escaped(lab: Lab, admin: Browser) -> None:
    """A name with markup is shown as text, never as markup."""
    lab.directory.put_user(User("300", "<script>alert(1)</script>", "", "en"))
    text = admin.get("/admin/users").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# --- language, headers, errors ---------------------------------------------------------------


def test_user_language_comes_from_the_directory(lab: Lab) -> None:
    """Anna's pages are German even when her browser prefers English."""
    browser = lab.browser(**{"Accept-Language": "en"})
    browser.login("100", "anna-secret")
    assert "Mein Profil" in browser.get("/me").text


def test_user_changes_own_language(lab: Lab, anna: Browser) -> None:
    """Saving the profile switches the user's language, and the page follows."""
    assert anna.post("/me", {"csrf": anna.csrf("/me"), "language": "en"}).code == 303
    assert lab.directory.user("100").language == "en"
    assert "My profile" in anna.get("/me").text


def test_user_changes_own_password(lab: Lab, anna: Browser) -> None:
    """With the current password a user sets a new one."""
    token = anna.csrf("/me")
    assert (
        anna.post("/me/password", {"csrf": token, "current": "wrong", "password": "new-secret"}).code == 400
    )
    assert (
        anna.post("/me/password", {"csrf": token, "current": "anna-secret", "password": "new-secret"}).code
        == 200
    )
    assert lab.web.credentials.check("100", "new-secret")


def test_pages_carry_security_headers(admin: Browser) -> None:
    """Pages forbid framing, inline script and caching."""
    reply = admin.get("/admin/settings")
    assert "script-src 'self'" in reply.header("content-security-policy")
    assert "frame-ancestors 'none'" in reply.header("content-security-policy")
    assert reply.header("x-frame-options") == "DENY"
    assert reply.header("cache-control") == "no-store"


def test_unknown_page_is_404(admin: Browser) -> None:
    """An unknown path gives a 404 page, not a traceback."""
    reply = admin.get("/no/such/page")
    assert reply.code == 404 and "Not found" in reply.text


def test_stylesheet_is_served(lab: Lab) -> None:
    """The stylesheet is public, so the login page is styled."""
    browser = lab.browser()
    reply = browser.get("/static/style.css")
    assert reply.code == 200 and "font-family" in reply.text
    assert reply.header("content-type") == "text/css; charset=utf-8"
    assert browser.get("/static/..%2Fconfig.ini").code == 404
