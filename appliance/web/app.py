"""The web page's core: the Klein router, login, sessions, CSRF, language and templates.

`WebApp` receives its dependencies and holds the router in ``self.app``; the
appliance serves it as ``Site(web.app.resource())``.  Pages come in groups,
one module per group under `appliance.web.pages`: a group is an object with an
``install(router)`` method that adds its routes and navigation entries through
`appliance.web.routing.Router`, which sends every request through `WebApp._dispatch`,
where access control and CSRF checking happen, so no page can forget them.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from argon2 import PasswordHasher
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from appliance.announcements import Announcements, name_of
from appliance.config import DEFAULT_WEB_LIMITS, WebLimits
from appliance.directory import Directory
from appliance.metering import NO_METRICS, IMetrics
from appliance.observers import Observers
from appliance.settings import Language, Settings
from appliance.shipped import web_root
from appliance.store import IKeyValueStore, InvalidName
from appliance.web import i18n
from appliance.web.auth import (
    Credentials,
    HashingBusy,
    LoginThrottle,
    Role,
    Runner,
    Session,
    Sessions,
    bounded,
    in_threads,
    same_token,
    synchronously,
)
from appliance.web.guard import GuardedSite, set_security_headers
from appliance.web.pages import core_pages
from appliance.web.routing import Access, Body, Handler, Page, PageGroup, Router

log = Logger()

WEB_ROOT = web_root()
"""Templates in ``templates/``, the stylesheet in ``static/`` (package data)."""

SESSION_COOKIE = b"appliance_session"
LOGIN_COOKIE = b"appliance_login"
"""Carries the login form's CSRF token before there is a session."""


LOGIN_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
"""``admin`` or an extension; anything else cannot be an account and is refused with 400."""

SAME_SITE_PATH = re.compile(r"/(?![/\\])[!#-\[\]-~]*")
"""Where ``next`` may lead after login: a path on this site, printable ASCII only
(browsers drop tabs and newlines, so ``/\t/evil`` would become ``//evil``), and
neither ``//`` nor ``/\\`` (both mean another host) nor any backslash."""


class WebApp:
    """The settings page: a Klein router over the appliance's store, settings and directory."""

    app: Klein

    def __init__(
        self,
        store: IKeyValueStore,
        settings: Settings,
        directory: Directory,
        clock: IReactorTime,
        *,
        language: str = "de",
        secure_cookies: bool = False,
        hasher: PasswordHasher | None = None,
        run: Runner | None = None,
        web_root: Path = WEB_ROOT,
        limits: WebLimits = DEFAULT_WEB_LIMITS,
        metrics: IMetrics = NO_METRICS,
        announcements: Announcements | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.directory = directory
        self.clock = clock
        self.language: Language = i18n.as_language(language) or "de"
        """The fallback when neither the directory nor the browser names a language."""
        self.secure_cookies = secure_cookies
        self.limits = limits
        self.alerts: list[Callable[[], list[str]]] = []
        self.registered: Callable[[str], bool | None] = lambda endpoint: None
        """Is this PJSIP endpoint logged in (the users page); None: not known (no PBX link)."""
        """Problems the admin must see on every page (store not writable, bad values)."""
        """Always mark cookies Secure (for TLS added by a proxy on another host)."""
        if run is None:
            run = bounded(in_threads(clock)) if IReactorThreads.providedBy(clock) else synchronously
        self.credentials = Credentials(store, hasher, run)
        """Hashing runs in the reactor's thread pool when the clock is a real reactor."""
        self.sessions = Sessions(store, clock)
        self.throttle = LoginThrottle(clock, metrics)
        self._login_observers: Observers[[str]] = Observers("web login")
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(web_root / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = when
        # A forward's target may name an announcement instead of a number.
        self.announcements = announcements or Announcements(language)
        self.templates.filters["announcement"] = lambda target: name_of(target) or ""
        self.templates.globals["announcement_names"] = lambda: self.announcements.names()
        self.templates.globals["announcement_label"] = lambda name: self.announcements.label(name)
        self.app = Klein()
        self.router = Router(self)
        self.static = _read_static(web_root / "static")
        self.app.handle_errors(NotFound)(self._not_found)
        self.app.handle_errors(MethodNotAllowed)(self._not_allowed)
        self.router.route("/", self._home, access="public")
        self.router.route("/login", self._login_form, access="public")
        self.router.route("/login", self._login, access="public", methods=["POST"])
        self.router.route("/logout", self._logout, access="any", methods=["POST"])
        self.router.route("/static/<name>", self._static, access="public")
        for group in core_pages(self):
            self.add(group)

    def current_alerts(self) -> list[str]:
        found: list[str] = []
        for source in self.alerts:
            try:
                found += source()
            except Exception:
                log.failure("alert source failed")
        return found

    def on_login(self, observer: Callable[[str], object]) -> None:
        """``observer(login)`` after every successful login (the missed-call exceptions
        count a web login as the user being back)."""
        self._login_observers.subscribe(observer)

    def add(self, group: PageGroup) -> None:
        """Serve a feature's pages (see `appliance.web.pages`)."""
        group.install(self.router)

    def site(self) -> Site:
        return GuardedSite(self.app.resource(), self.body_limit, self.limits, reactor=self.clock)

    def body_limit(self, method: bytes, path: bytes) -> int:
        """The largest body the route behind ``path`` accepts, decided before reading it."""
        if self.router.is_upload(method, path):
            return self.limits.upload_body
        return self.limits.form_body

    # --- request handling -------------------------------------------------

    def _dispatch(
        self, request: IRequest, handler: Handler, access: Access, kwargs: Mapping[str, Any]
    ) -> Body:
        set_security_headers(request)
        session = self._session(request)
        page = Page(self, request, session, self._language(request, session))
        if access != "public":
            if session is None:
                if request.method in (b"GET", b"HEAD"):
                    return page.redirect("/login", {"next": request.uri.decode("utf-8", "replace")})
                return page.error(403, "forbidden", "csrf_failed")
            if access != "any" and session.role != access:
                return page.error(403, "forbidden", "forbidden_text")
            unsafe = request.method not in (b"GET", b"HEAD")
            if unsafe and not same_token(session.csrf, page.form_arg("csrf")):
                log.warn(
                    "refused {method} {path} without a valid CSRF token",
                    method=request.method.decode("ascii", "replace"),
                    path=request.path.decode("utf-8", "replace"),
                )
                return page.error(403, "forbidden", "csrf_failed")
        if any(isinstance(value, str) and not value.isprintable() for value in kwargs.values()):
            return page.error(400, "invalid_input", "invalid_input_text")
        try:
            body = handler(page, **kwargs)
        except InvalidName:
            return self._bad_request(page)
        if isinstance(body, Deferred):
            return body.addErrback(lambda failure: failure.trap(InvalidName) and self._bad_request(page))
        return body

    @staticmethod
    def _bad_request(page: Page) -> bytes:
        """Malformed input that reached the store's name check: the client's fault, 400."""
        log.info("refused a request with an invalid name: {path}", path=page.request.path[:200])
        return page.error(400, "invalid_input", "invalid_input_text")

    def _session(self, request: IRequest) -> Session | None:
        cookie = request.getCookie(SESSION_COOKIE)
        if not cookie:
            return None
        session = self.sessions.find(cookie.decode("ascii", "replace"))
        if session is not None and session.role == "user" and self.directory.user(session.login) is None:
            return None  # the user was deleted
        return session

    def _language(self, request: IRequest, session: Session | None) -> Language:
        if session is not None and session.role == "user":
            user = self.directory.user(session.login)
            language = i18n.as_language(user.language if user else None)
            if language is not None:
                return language
        header = request.getHeader(b"accept-language")
        return i18n.from_accept_language(header.decode("latin-1") if header else None, self.language)

    def _is_https(self, request: IRequest) -> bool:
        if self.secure_cookies or request.isSecure():
            return True
        # A TLS proxy on this machine (the supported set-up) says so.
        proto = request.getHeader(b"x-forwarded-proto")
        peer = getattr(request.getClientAddress(), "host", None)
        return proto == b"https" and peer in ("127.0.0.1", "::1")

    def _set_cookie(
        self, request: IRequest, name: bytes, value: bytes, path: bytes, expire: bool = False
    ) -> None:
        # IRequest.addCookie lacks httpOnly/sameSite; twisted.web's Request has them.
        http_request: Any = request
        http_request.addCookie(
            name,
            value,
            path=path,
            httpOnly=True,
            secure=self._is_https(request),
            sameSite="strict",
            max_age=b"0" if expire else None,
            expires=b"Thu, 01 Jan 1970 00:00:00 GMT" if expire else None,
        )

    def home(self, role: Role) -> str:
        entries = self.router.nav(role)
        return entries[0].path if entries else "/login"

    def _client(self, request: IRequest) -> str:
        """The client's address; ``X-Forwarded-For`` counts only from a configured
        trusted proxy, and then its rightmost address that is not a trusted proxy."""
        address = str(getattr(request.getClientAddress(), "host", "unknown"))
        trusted = self.limits.trusted_proxies
        if address not in trusted:
            return address
        for header in reversed(request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []):
            for hop in reversed(header.decode("latin-1").split(",")):
                hop = hop.strip()
                try:
                    ipaddress.ip_address(hop)
                except ValueError:
                    return address  # a forged or broken chain: trust only the proxy itself
                if hop not in trusted:
                    return hop
        return address

    # --- core routes --------------------------------------------------------

    def _home(self, page: Page) -> bytes:
        return page.redirect(self.home(page.session.role) if page.session else "/login")

    def _login_form(self, page: Page) -> bytes:
        if page.session is not None:
            return page.redirect(self.home(page.session.role))
        return self._render_login(page, 200, error="")

    def _render_login(self, page: Page, status: int, error: str, login: str = "") -> bytes:
        token = secrets.token_urlsafe(32)
        self._set_cookie(page.request, LOGIN_COOKIE, token.encode("ascii"), b"/login")
        return page.render(
            "login.html", status=status, token=token, error=error, login=login, next=page.arg("next")
        )

    def _login(self, page: Page) -> Body:
        cookie = page.request.getCookie(LOGIN_COOKIE) or b""
        if not same_token(cookie.decode("ascii", "replace"), page.form_arg("csrf")):
            return self._render_login(page, 403, error=page.t("csrf_failed"))
        login = page.form_arg("login").strip()
        if not LOGIN_NAME.fullmatch(login):
            return self._render_login(page, 400, error=page.t("login_failed"))
        address = self._client(page.request)
        if not self.throttle.begin(login, address):
            return self._render_login(page, 429, error=page.t("login_locked"), login=login)
        known = login == "admin" or self.directory.user(login) is not None

        def busy(failure: Failure) -> bytes:
            failure.trap(HashingBusy)
            self.throttle.withdraw(login, address)
            return self._render_login(page, 503, error=page.t("login_busy"), login=login)

        def decide(matches: bool) -> bytes:
            if not (matches and known):
                self.throttle.finish(login, address, succeeded=False)
                return self._render_login(page, 403, error=page.t("login_failed"), login=login)
            self.throttle.finish(login, address, succeeded=True)
            session = self.sessions.create(login)
            log.info("web login of {login!r} from {address}", login=login, address=address)
            self._login_observers.notify(login)
            self._set_cookie(page.request, SESSION_COOKIE, session.id.encode("ascii"), b"/")
            self._set_cookie(page.request, LOGIN_COOKIE, b"", b"/login", expire=True)
            target = page.arg("next")
            if not SAME_SITE_PATH.fullmatch(target):
                target = self.home(session.role)
            return page.redirect(target)

        def settle(failure: Failure) -> Failure:
            self.throttle.finish(login, address, succeeded=False)
            return failure

        checking = self.credentials.verify(login, page.form_arg("password"))
        return checking.addCallbacks(decide, lambda f: busy(f) if f.check(HashingBusy) else settle(f))

    def _logout(self, page: Page) -> bytes:
        if page.session is not None:
            self.sessions.end(page.session.id)
        self._set_cookie(page.request, SESSION_COOKIE, b"", b"/", expire=True)
        return page.redirect("/login")

    def _static(self, page: Page, name: str) -> bytes:
        found = self.static.get(name)
        if found is None:
            return page.error(404, "not_found", "not_found")
        content_type, body = found
        page.request.setHeader(b"Content-Type", content_type)
        page.request.setHeader(b"Cache-Control", b"no-cache")
        return body

    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        set_security_headers(request)
        page = Page(self, request, self._session(request), self._language(request, None))
        return page.error(404, "not_found", "not_found")

    def _not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        set_security_headers(request)
        page = Page(self, request, self._session(request), self._language(request, None))
        return page.error(405, "not_found", "not_found")


def when(seconds: float) -> str:
    """A moment (seconds since the epoch) as the appliance's local date and time."""
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


STATIC_TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}


def _read_static(root: Path) -> dict[str, tuple[bytes, bytes]]:
    """The stylesheet and scripts, read once: a fixed set, so no path reaches the file system."""
    if not root.is_dir():
        return {}
    return {
        path.name: (STATIC_TYPES[path.suffix], path.read_bytes())
        for path in sorted(root.iterdir())
        if path.is_file() and path.suffix in STATIC_TYPES
    }
