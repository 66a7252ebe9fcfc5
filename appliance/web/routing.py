"""Pages, their groups and the router that serves them behind the access checks.

A page group (`appliance.web.pages`) only needs these names, not the web app
itself, so the app can import the groups it always serves without a cycle.
`Router` sends every request through `WebApp._dispatch`, which checks login,
role and CSRF token before a handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias
from urllib.parse import parse_qs, urlencode

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from appliance.settings import Language
from appliance.web import i18n
from appliance.web.auth import Role, Session

if TYPE_CHECKING:
    from appliance.web.app import WebApp

Access: TypeAlias = Literal["public", "any", "admin", "user"]
"""Who may open a route: everyone, any logged-in account, the admin, or users."""


@dataclass(frozen=True)
class NavEntry:
    """A link in the navigation bar, shown to one role."""

    path: str
    label: str
    """A catalogue key (see `appliance.web.i18n`)."""
    role: Role
    order: int = 100


Body: TypeAlias = "bytes | Deferred[bytes]"
Handler: TypeAlias = Callable[..., Body]
"""``handler(page, **route_arguments)`` returns the response body, or a Deferred of it."""


class PageGroup(Protocol):
    """One module's pages: it adds its routes and navigation entries."""

    def install(self, router: Router) -> None: ...


class Page:
    """One request as a page handler sees it: who asks, in which language, and helpers."""

    def __init__(self, web: WebApp, request: IRequest, session: Session | None, language: Language) -> None:
        self.web = web
        self.request = request
        self.session = session
        self.language: Language = i18n.as_language(language) or "de"
        """The fallback when neither the directory nor the browser names a language."""

    @property
    def login(self) -> str:
        """The logged-in account (routes other than ``public`` always have one)."""
        assert self.session is not None
        return self.session.login

    def t(self, key: str) -> str:
        return i18n.translate(key, self.language)

    def has_arg(self, name: str) -> bool:
        return name.encode("utf-8") in (self.request.args or {})

    def form_arg(self, name: str, default: str = "") -> str:
        """A field of the request body only, never of the URL: secrets (CSRF token,
        password) must not come from a link someone else made or land in logs."""
        encoded = name.encode("utf-8")
        values = (self.request.args or {}).get(encoded) or []
        query = self.request.uri.partition(b"?")[2]
        # Twisted puts the URL's values first, then the body's.
        in_query = len(parse_qs(query, keep_blank_values=True).get(encoded, []))
        values = values[in_query:]
        return values[0].decode("utf-8", "replace") if values else default

    def arg(self, name: str, default: str = "") -> str:
        """A query or form field as text (the first if repeated)."""
        values = (self.request.args or {}).get(name.encode("utf-8"))
        return values[0].decode("utf-8", "replace") if values else default

    def render(self, template: str, status: int = 200, **values: Any) -> bytes:
        self.request.setResponseCode(status)
        self.request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        nav = self.web.router.nav(self.session.role) if self.session else []
        current = self.request.path.decode("utf-8", "replace")
        matching = [e.path for e in nav if current == e.path or current.startswith(e.path + "/")]
        context = {
            "t": self.t,
            "language": self.language,
            "session": self.session,
            "csrf": self.session.csrf if self.session else "",
            "nav": nav,
            "current": current,
            # The navigation entry of this page: the longest path the request is under.
            "active": max(matching, key=len, default=""),
            "alerts": self.web.current_alerts() if self.session and self.session.role == "admin" else [],
            **values,
        }
        return self.web.templates.get_template(template).render(context).encode("utf-8")

    def redirect(self, location: str, query: Mapping[str, str] | None = None) -> bytes:
        if query:
            location += "?" + urlencode({key: value for key, value in query.items() if value})
        self.request.setResponseCode(303)
        self.request.setHeader(b"Location", location.encode("utf-8"))
        return b""

    def error(self, status: int, title: str, text: str) -> bytes:
        return self.render("error.html", status=status, title=self.t(title), text=self.t(text))


class Router:
    """Adds routes to the Klein app behind the access and CSRF checks."""

    def __init__(self, web: WebApp) -> None:
        self._web = web
        self._nav: list[NavEntry] = []
        self._uploads = Map()

    def is_upload(self, method: bytes, path: bytes) -> bool:
        """Whether ``path`` (a raw request target) names an upload route."""
        target = path.split(b"?", 1)[0].decode("utf-8", "replace")
        try:
            self._uploads.bind("appliance").match(target, method=method.decode("ascii", "replace"))
        except HTTPException:
            return False
        return True

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        access: Access,
        methods: Iterable[str] = ("GET",),
        nav: NavEntry | None = None,
        upload: bool = False,
    ) -> None:
        """Serve ``handler`` at ``path`` (Klein/werkzeug syntax) for those ``access`` allows.

        Every method but GET must carry the session's CSRF token in the
        ``csrf`` form field of the body, or it is refused with 403 before the
        handler runs.  Bodies are limited to a form's size unless ``upload``.
        """
        methods = list(methods)
        web = self._web
        if upload:
            self._uploads.add(Rule(path, methods=methods, endpoint=path))

        def run(request: IRequest, **kwargs: Any) -> Body:
            return web._dispatch(request, handler, access, kwargs)

        web.app.route(path, methods=methods, endpoint=f"{','.join(methods)} {path}")(run)
        if nav is not None:
            self._nav.append(nav)
            self._nav.sort(key=lambda entry: (entry.order, entry.path))

    def nav(self, role: Role) -> list[NavEntry]:
        return [entry for entry in self._nav if entry.role == role]
