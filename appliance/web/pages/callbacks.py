"""Pending callback requests: a user's own (user) and all of them (admin), with cancel.

A user cancels only a request of their own: the id sent by the form must be
one of ``pending(requester=page.login)``, else the answer is 404 and nothing
changes.
"""

from __future__ import annotations

from typing import Protocol

from appliance.callback.engine import Request
from appliance.directory import Directory
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.app import NavEntry, Page, Router

i18n.add(
    {
        "nav_callbacks": Text("Callbacks", "Rückrufe"),
        "callbacks_title": Text("My callback requests", "Meine Rückrufwünsche"),
        "all_callbacks_title": Text("Pending callback requests", "Offene Rückrufwünsche"),
        "no_callbacks": Text("No pending callback requests.", "Keine offenen Rückrufwünsche."),
        "callback_requester": Text("From", "Von"),
        "callback_target": Text("Call back", "Rückruf zu"),
        "callback_since": Text("Requested", "Angefordert"),
        "callback_kind": Text("Kind", "Art"),
        "callback_state": Text("State", "Status"),
        "callback_attempts": Text("Attempts", "Versuche"),
        "callback_kind_busy": Text("busy", "besetzt"),
        "callback_kind_ccnr": Text("no answer", "keine Antwort"),
        "callback_state_waiting": Text("waiting", "wartet"),
        "callback_state_ringing": Text("ringing you", "klingelt bei Ihnen"),
        "callback_state_connecting": Text("connecting", "verbindet"),
        "cancel_callback": Text("Cancel request", "Wunsch löschen"),
        "callback_cancelled": Text("Callback request cancelled.", "Rückrufwunsch gelöscht."),
        "callbacks_intro": Text(
            "The appliance calls you back as soon as the line is free (code *39 on the phone).",
            "Die Anlage ruft zurück, sobald der Anschluss frei ist (Kennziffer *39 am Telefon).",
        ),
    }
)


class Callbacks(Protocol):
    """What the pages need of `CallbackService`."""

    def pending(self, requester: str | None = None) -> list[Request]: ...

    def cancel(self, request_id: str) -> bool: ...


class CallbackPages:
    def __init__(self, callbacks: Callbacks, directory: Directory) -> None:
        self.callbacks = callbacks
        self.directory = directory

    def install(self, router: Router) -> None:
        user_nav = NavEntry("/me/callbacks", "nav_callbacks", "user", order=30)
        router.route("/me/callbacks", self.own, access="user", nav=user_nav)
        router.route("/me/callbacks/cancel", self.own_cancel, access="user", methods=["POST"])
        admin_nav = NavEntry("/admin/callbacks", "nav_callbacks", "admin", order=40)
        router.route("/admin/callbacks", self.all, access="admin", nav=admin_nav)
        router.route("/admin/callbacks/cancel", self.cancel, access="admin", methods=["POST"])

    def own(self, page: Page) -> bytes:
        return self._render(page, self.callbacks.pending(requester=page.login), own=True)

    def all(self, page: Page) -> bytes:
        return self._render(page, self.callbacks.pending(), own=False)

    def own_cancel(self, page: Page) -> bytes:
        wanted = page.arg("id")
        if not any(r.id == wanted for r in self.callbacks.pending(requester=page.login)):
            return page.error(404, "not_found", "not_found")
        self.callbacks.cancel(wanted)
        return page.redirect("/me/callbacks", {"cancelled": "1"})

    def cancel(self, page: Page) -> bytes:
        if not self.callbacks.cancel(page.arg("id")):
            return page.error(404, "not_found", "not_found")
        return page.redirect("/admin/callbacks", {"cancelled": "1"})

    def _render(self, page: Page, requests: list[Request], own: bool) -> bytes:
        names = {user.extension: user.name for user in self.directory.users()}
        return page.render(
            "callbacks.html",
            requests=requests,
            names=names,
            own=own,
            action="/me/callbacks/cancel" if own else "/admin/callbacks/cancel",
            cancelled=page.arg("cancelled") == "1",
        )
