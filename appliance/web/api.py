"""A small JSON API beside the web page, for tools: the same user actions
(forwards and their schedules, do-not-disturb, call waiting, callback
requests, missed-call journal) through the same validation and store as the pages.

Every request carries ``Authorization: Bearer apl_...`` (a token made on the
page ``/me/tokens`` or ``/admin/tokens``).  A user's token reaches only that
user (``/api/v1/users/me/...`` or their own extension); the admin's reaches
every user of the directory.  Each token is rate-limited; wrong tokens count
as failed logins and lock the client address out like the login form does.
No session cookie is read, so there is nothing for CSRF to abuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from appliance.callback.engine import Request
from appliance.directory import Directory
from appliance.forwarding.records import KINDS, SCOPES, Forward, ForwardError, Forwards
from appliance.forwarding.schedule import ScheduleError
from appliance.forwarding.scheduled import Schedules
from appliance.missed.journal import Journal
from appliance.pbx import PBXModel
from appliance.web.auth import LoginThrottle
from appliance.web.pages.callbacks import CallWaitingSwitch
from appliance.web.routing import Body, Page, Router
from appliance.web.tokens import ApiToken, ApiTokens, RateLimit, bearer

log = Logger()

PREFIX = "/api/v1/users/<who>"
MAX_BODY = 16 * 1024
THROTTLE_KEY = "api-token"


class Callbacks(Protocol):
    def pending(self, requester: str | None = None) -> list[Request]: ...

    def cancel(self, request_id: str) -> bool: ...


class AMI(Protocol):
    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def respond(page: Page, status: int, value: Any) -> bytes:
    page.request.setResponseCode(status)
    page.request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"


class ApiPages:
    def __init__(
        self,
        tokens: ApiTokens,
        limits: RateLimit,
        throttle: LoginThrottle,
        directory: Directory,
        forwards: Forwards,
        callbacks: Callbacks,
        journal: Journal,
        pbx: PBXModel,
        ami: AMI,
        schedules: Schedules,
        call_waiting: CallWaitingSwitch,
    ) -> None:
        self.tokens = tokens
        self.limits = limits
        self.throttle = throttle
        self.directory = directory
        self.forwards = forwards
        self.callbacks = callbacks
        self.journal = journal
        self.pbx = pbx
        self.ami = ami
        self.schedules = schedules
        self.call_waiting = call_waiting

    def install(self, router: Router) -> None:
        def route(path: str, method: str, handler: Callable[..., Body]) -> None:
            router.route(PREFIX + path, self._guarded(handler), access="public", methods=[method])

        route("/forwards", "GET", self.get_forwards)
        route("/forwards", "PUT", self.put_forward)
        route("/forwards", "DELETE", self.delete_forwards)
        route("/schedules", "GET", self.get_schedules)
        route("/schedules/<kind>/<scope>", "PUT", self.put_schedule)
        route("/schedules/<kind>/<scope>", "DELETE", self.delete_schedule)
        route("/dnd", "GET", self.get_dnd)
        route("/dnd", "PUT", self.put_dnd)
        route("/call_waiting", "GET", self.get_call_waiting)
        route("/call_waiting", "PUT", self.put_call_waiting)
        route("/callbacks", "GET", self.get_callbacks)
        route("/callbacks/<request_id>", "DELETE", self.delete_callback)
        route("/journal", "GET", self.get_journal)

    # -- access ---------------------------------------------------------------

    def _guarded(self, handler: Callable[..., Body]) -> Callable[..., Body]:
        def run(page: Page, who: str, **kwargs: Any) -> Body:
            page.request.setHeader(b"Cache-Control", b"no-store")
            try:
                extension = self._authorize(page, who)
                result = handler(page, extension, **kwargs)
            except ApiError as error:
                return respond(page, error.status, {"error": error.message})
            if isinstance(result, Deferred):
                return result.addErrback(self._failed, page)
            return result

        return run

    def _failed(self, failure: Any, page: Page) -> bytes:
        if failure.check(ApiError):
            return respond(page, failure.value.status, {"error": failure.value.message})
        log.failure("API request failed", failure)
        return respond(page, 502, {"error": "the PBX did not take the change; try again"})

    def _authorize(self, page: Page, who: str) -> str:
        address = page.web._client(page.request)  # X-Forwarded-For only from trusted proxies
        if self.throttle.locked(THROTTLE_KEY, address):
            raise ApiError(429, "too many failed attempts; wait and try again")
        secret = bearer(page.request)
        token = self.tokens.find(secret) if secret else None
        if token is None:
            self.throttle.failed(THROTTLE_KEY, address)
            log.warn("API request from {address} without a valid token", address=address)
            page.request.setHeader(b"WWW-Authenticate", b'Bearer realm="appliance"')
            raise ApiError(401, "a valid API token is needed (Authorization: Bearer apl_...)")
        if not self.limits.allow(token.id):
            page.request.setHeader(b"Retry-After", str(self.limits.retry_after(token.id)).encode("ascii"))
            raise ApiError(429, "rate limit reached; slow down")
        return self._subject(token, who)

    def _subject(self, token: ApiToken, who: str) -> str:
        """The user a request is about: the token's own, or any for the admin."""
        if token.login == "admin":
            if who == "me" or self.directory.user(who) is None:
                raise ApiError(404, f"no user {who!r}")
            return who
        if who not in ("me", token.login):
            raise ApiError(403, "this token acts only for its own user")
        if self.directory.user(token.login) is None:
            raise ApiError(403, "the token's user no longer exists")
        return token.login

    @staticmethod
    def _json(page: Page) -> dict[str, Any]:
        content = page.request.content
        raw = content.read(MAX_BODY + 1) if content is not None else b""
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value

    # -- forwards -------------------------------------------------------------

    def get_forwards(self, page: Page, extension: str) -> bytes:
        return respond(page, 200, {"forwards": [asdict(f) for f in self.forwards.of(extension)]})

    def put_forward(self, page: Page, extension: str) -> bytes:
        body = self._json(page)
        unknown = set(body) - {"kind", "target", "scope", "seconds", "enabled"}
        if unknown:
            raise ApiError(400, "unknown fields: " + ", ".join(sorted(unknown)))
        try:
            forward = Forward(
                kind=body.get("kind", ""),
                target=body.get("target", ""),
                scope=body.get("scope", "all"),
                seconds=body.get("seconds", 20),
                enabled=body.get("enabled", True),
            )
            stored = self.forwards.set(extension, forward)
        except ForwardError as error:
            raise ApiError(400, str(error)) from None
        log.info("API: forward of {ext} set: {forward}", ext=extension, forward=forward)
        return respond(page, 200, {"forwards": [asdict(f) for f in stored]})

    def delete_forwards(self, page: Page, extension: str) -> bytes:
        kind = page.arg("kind") or None
        scope = page.arg("scope") or None
        if kind is not None and kind not in KINDS:
            raise ApiError(400, "kind: one of " + ", ".join(KINDS))
        if scope is not None and scope not in SCOPES:
            raise ApiError(400, "scope: one of " + ", ".join(SCOPES))
        left = self.forwards.clear(extension, kind, scope)
        return respond(page, 200, {"forwards": [asdict(f) for f in left]})

    # -- schedules of forwards ---------------------------------------------------

    def get_schedules(self, page: Page, extension: str) -> bytes:
        found = self.schedules.of(extension)
        return respond(page, 200, {"schedules": {key: s.to_json() for key, s in found.items()}})

    def put_schedule(self, page: Page, extension: str, kind: str, scope: str) -> bytes:
        try:
            schedule = self.schedules.set(extension, kind, scope, self._json(page))
        except ScheduleError as error:
            raise ApiError(400, str(error)) from None
        log.info("API: schedule of {ext} {kind}/{scope} set", ext=extension, kind=kind, scope=scope)
        return respond(page, 200, {"schedule": schedule.to_json()})

    def delete_schedule(self, page: Page, extension: str, kind: str, scope: str) -> bytes:
        self.schedules.clear(extension, kind, scope)
        return respond(
            page, 200, {"schedules": {k: s.to_json() for k, s in self.schedules.of(extension).items()}}
        )

    # -- do-not-disturb (Asterisk presence, as the *78/#78 codes set it) ---------

    def get_dnd(self, page: Page, extension: str) -> bytes:
        return respond(page, 200, {"dnd": self.pbx.endpoint(extension).dnd})

    def put_dnd(self, page: Page, extension: str) -> Deferred[bytes]:
        body = self._json(page)
        wanted = body.get("dnd")
        if not isinstance(wanted, bool):
            raise ApiError(400, "dnd: true or false")
        d = self.ami.sendAction(
            "Setvar",
            Variable=f"PRESENCE_STATE(CustomPresence:{extension})",
            Value="dnd,," if wanted else "available,,",
        )
        return d.addCallback(lambda _: respond(page, 200, {"dnd": wanted}))

    # -- call waiting (as *43 / #43 and the callbacks page set it) ---------------

    def _call_waiting(self, page: Page, extension: str) -> bytes:
        return respond(
            page,
            200,
            {
                "call_waiting": self.call_waiting.enabled(extension),
                "choice": self.call_waiting.choice(extension),
            },
        )

    def get_call_waiting(self, page: Page, extension: str) -> bytes:
        return self._call_waiting(page, extension)

    def put_call_waiting(self, page: Page, extension: str) -> bytes:
        """``{"call_waiting": true | false | null}``; null follows CW_DEFAULT again."""
        body = self._json(page)
        unknown = set(body) - {"call_waiting"}
        if unknown:
            raise ApiError(400, "unknown fields: " + ", ".join(sorted(unknown)))
        if "call_waiting" not in body or not isinstance(body["call_waiting"], (bool, type(None))):
            raise ApiError(400, "call_waiting: true, false or null (the default for everyone)")
        self.call_waiting.choose(extension, body["call_waiting"])
        log.info("API: call waiting of {ext}: {on}", ext=extension, on=body["call_waiting"])
        return self._call_waiting(page, extension)

    # -- callbacks and journal ----------------------------------------------------

    def get_callbacks(self, page: Page, extension: str) -> bytes:
        pending = [
            {"id": r.id, "target": r.target, "created": r.created, "state": r.state.value}
            for r in self.callbacks.pending(requester=extension)
        ]
        return respond(page, 200, {"callbacks": pending})

    def delete_callback(self, page: Page, extension: str, request_id: str) -> bytes:
        if not any(r.id == request_id for r in self.callbacks.pending(requester=extension)):
            raise ApiError(404, f"no pending callback request {request_id!r}")
        self.callbacks.cancel(request_id)
        return respond(page, 200, {"cancelled": request_id})

    def get_journal(self, page: Page, extension: str) -> bytes:
        return respond(page, 200, {"missed": [asdict(e) for e in self.journal.entries(extension)]})
