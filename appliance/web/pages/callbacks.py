"""Callbacks and calling from the page: a user's own requests (user) and all of
them (admin), with cancel; a user requests a callback to a number that cannot
be reached now, or has the appliance call a number for them (click to call:
their phone rings first); each user's call waiting, set by the user or the admin.

A user cancels only a request of their own: the id sent by the form must be
one of ``pending(requester=page.login)``, else the answer is 404 and nothing
changes.  Requests and calls are always made for ``page.login``.
"""

from __future__ import annotations

from typing import Any, Protocol

from appliance.callback.engine import Request
from appliance.directory import Directory
from appliance.numbers import TYPED_NUMBER
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.pages.paging import UserSlice, user_slice
from appliance.web.routing import NavEntry, Page, Router

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
        "request_callback": Text("Request callback", "Rückruf anfordern"),
        "request_callback_hint": Text(
            "For an internal number that is busy or away now.",
            "Für eine interne Rufnummer, die gerade besetzt oder nicht erreichbar ist.",
        ),
        "callback_number": Text("Number", "Rufnummer"),
        "callback_accepted": Text("Callback requested.", "Rückruf angefordert."),
        "callback_duplicate": Text(
            "You already asked for this callback.", "Dieser Rückruf ist schon angefordert."
        ),
        "callback_limit": Text("Too many open requests.", "Zu viele offene Rückrufwünsche."),
        "callback_invalid": Text(
            "No callback is possible to this number.", "Zu dieser Rufnummer ist kein Rückruf möglich."
        ),
        "callback_reachable": Text(
            "This number is free now: just call it.", "Diese Rufnummer ist gerade frei: einfach anrufen."
        ),
        "click_to_call": Text("Call", "Anrufen"),
        "click_to_call_hint": Text(
            "Your phone rings first; when you answer, the number is dialled.",
            "Zuerst klingelt Ihr Telefon; wenn Sie abheben, wird die Nummer gewählt.",
        ),
        "calling": Text("Your phone is ringing.", "Ihr Telefon klingelt."),
        "call_failed": Text("The call could not be started.", "Der Anruf konnte nicht gestartet werden."),
        "callback_notify": Text("When the line is free", "Wenn der Anschluss frei ist"),
        "callback_notify_ring": Text("ring me, then the number", "mich anrufen, dann die Nummer"),
        "callback_notify_mail": Text("send me a mail", "mir eine Mail senden"),
        "callback_notify_saved": Text("Saved.", "Gespeichert."),
        "callback_notify_invalid": Text("Choose ring or mail.", "Bitte Anruf oder Mail wählen."),
        "callback_notify_hint": Text(
            "You also get a mail when a request expires or you did not take the callback.",
            "Sie erhalten auch eine Mail, wenn ein Wunsch abläuft oder Sie den Rückruf nicht annehmen.",
        ),
        "call_waiting": Text("Call waiting", "Anklopfen"),
        "call_waiting_hint": Text(
            "On: a second call rings while you are on the phone (after a while the caller is "
            "offered a callback). Off: callers find you busy. Codes *43 / #43 on the phone.",
            "An: ein zweiter Anruf klingelt, während Sie telefonieren (nach einer Weile wird dem "
            "Anrufer ein Rückruf angeboten). Aus: Anrufer hören besetzt. Kennziffern *43 / #43 am Telefon.",
        ),
        "call_waiting_default": Text("as set for everyone", "wie für alle eingestellt"),
        "call_waiting_on": Text("on", "an"),
        "call_waiting_off": Text("off", "aus"),
        "call_waiting_saved": Text("Call waiting saved.", "Anklopfen gespeichert."),
        "call_waiting_invalid": Text(
            "Choose on, off or the default.", "Bitte an, aus oder den Standard wählen."
        ),
        "callbacks_intro": Text(
            "The appliance calls you back as soon as the line is free (code *39 on the phone).",
            "Die Anlage ruft zurück, sobald der Anschluss frei ist (Kennziffer *39 am Telefon).",
        ),
    }
)


CALL_WAITING_CHOICES = {"default": None, "on": True, "off": False}


class Callbacks(Protocol):
    """What the pages need of `CallbackService`."""

    def pending(self, requester: str | None = None) -> list[Request]: ...

    def cancel(self, request_id: str) -> bool: ...

    def request_now(self, requester: str, target: str) -> str: ...

    def click_to_call(self, user: str, number: str) -> Any: ...

    def notify_mode(self, user: str) -> str: ...

    def set_notify_mode(self, user: str, mode: str) -> None: ...


class CallWaitingSwitch(Protocol):
    """What the pages need of `appliance.callwaiting.CallWaiting`."""

    def choice(self, line: str) -> bool | None: ...

    def enabled(self, line: str) -> bool: ...

    def choose(self, line: str, on: bool | None) -> None: ...


class CallbackPages:
    def __init__(self, callbacks: Callbacks, directory: Directory, call_waiting: CallWaitingSwitch) -> None:
        self.callbacks = callbacks
        self.directory = directory
        self.call_waiting = call_waiting

    def install(self, router: Router) -> None:
        user_nav = NavEntry("/me/callbacks", "nav_callbacks", "user", order=30)
        router.route("/me/callbacks", self.own, access="user", nav=user_nav)
        router.route("/me/callbacks/cancel", self.own_cancel, access="user", methods=["POST"])
        router.route("/me/callbacks/request", self.own_request, access="user", methods=["POST"])
        router.route("/me/call", self.own_call, access="user", methods=["POST"])
        router.route("/me/callwaiting", self.own_call_waiting, access="user", methods=["POST"])
        router.route("/me/callbacks/notify", self.own_notify, access="user", methods=["POST"])
        router.route("/admin/callwaiting", self.call_waiting_of, access="admin", methods=["POST"])
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

    def own_request(self, page: Page) -> bytes:
        number = page.arg("number").strip()
        outcome = self.callbacks.request_now(page.login, number) if TYPED_NUMBER.match(number) else "invalid"
        return page.redirect("/me/callbacks", {"requested": outcome})

    def own_call(self, page: Page) -> Any:
        number = page.arg("number").strip()
        if not TYPED_NUMBER.match(number):
            return page.redirect("/me/callbacks", {"called": "failed"})
        started = self.callbacks.click_to_call(page.login, number)
        return started.addCallbacks(
            lambda _: page.redirect("/me/callbacks", {"called": "ringing"}),
            lambda _: page.redirect("/me/callbacks", {"called": "failed"}),
        )

    def own_call_waiting(self, page: Page) -> bytes:
        choice = page.arg("call_waiting")
        if choice not in CALL_WAITING_CHOICES:
            return page.error(400, "call_waiting", "call_waiting_invalid")
        self.call_waiting.choose(page.login, CALL_WAITING_CHOICES[choice])
        return page.redirect("/me/callbacks", {"call_waiting": "saved"})

    def own_notify(self, page: Page) -> bytes:
        mode = page.arg("notify")
        if mode not in ("ring", "mail"):
            return page.error(400, "callback_notify", "callback_notify_invalid")
        self.callbacks.set_notify_mode(page.login, mode)
        return page.redirect("/me/callbacks", {"notify": "saved"})

    def call_waiting_of(self, page: Page) -> bytes:
        choice, line = page.arg("call_waiting"), page.arg("line")
        if choice not in CALL_WAITING_CHOICES or self.directory.user(line) is None:
            return page.error(404, "not_found", "not_found")
        self.call_waiting.choose(line, CALL_WAITING_CHOICES[choice])
        return page.redirect("/admin/callbacks", {"call_waiting": "saved"})

    def cancel(self, page: Page) -> bytes:
        if not self.callbacks.cancel(page.arg("id")):
            return page.error(404, "not_found", "not_found")
        return page.redirect("/admin/callbacks", {"cancelled": "1"})

    def _render(self, page: Page, requests: list[Request], own: bool) -> bytes:
        # The admin's call waiting table, a page of users at a time; a user sees only their own.
        shown = UserSlice([], "", "") if own else user_slice(self.directory, page.arg("after"))
        names = {user.extension: user.name for user in shown.users}
        for request in requests:
            for number in (request.requester, request.target):
                if number not in names and (user := self.directory.user(number)) is not None:
                    names[number] = user.name
                elif number not in names and (group := self.directory.group_by_number(number)) is not None:
                    names[number] = group.name
        requested = page.arg("requested")
        called = page.arg("called")
        return page.render(
            "callbacks.html",
            requests=requests,
            names=names,
            own=own,
            action="/me/callbacks/cancel" if own else "/admin/callbacks/cancel",
            cancelled=page.arg("cancelled") == "1",
            requested=requested if requested in _REQUEST_OUTCOMES else "",
            called={"ringing": "calling", "failed": "call_failed"}.get(called, ""),
            call_waiting_saved=page.arg("call_waiting") == "saved",
            notify_saved=page.arg("notify") == "saved",
            my_notify=self.callbacks.notify_mode(page.login) if own else "",
            my_call_waiting=_choice_name(self.call_waiting.choice(page.login)) if own else "",
            call_waiting={
                u.extension: _choice_name(self.call_waiting.choice(u.extension)) for u in shown.users
            },
            after=shown.after,
            next_after=shown.next_after,
        )


_REQUEST_OUTCOMES = ("accepted", "duplicate", "limit", "invalid", "reachable")


def _choice_name(choice: bool | None) -> str:
    return {None: "default", True: "on", False: "off"}[choice]
