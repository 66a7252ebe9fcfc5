"""Forwards: a user's own (user) and everyone's (admin), through `Forwards`.

The user pages work on ``page.login`` only; the admin pages name the user in
the URL and accept only extensions of the directory.  `Forwards` validates a
forward before it is stored; its message is shown above the form and nothing
changes.  The breakthrough privileges are settings rows (``FWD_BREAKTHROUGH_*``);
the admin page links to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.announcements import PREFIX
from appliance.directory import Directory
from appliance.forwarding.records import (
    DEFAULT_SECONDS,
    KINDS,
    NOANSWER,
    SCOPES,
    Forward,
    ForwardError,
    Forwards,
)
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.pages.paging import user_slice
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_forwards": Text("Forwards", "Umleitungen"),
        "forwards_title": Text("My forwards", "Meine Umleitungen"),
        "forwards_of": Text("Forwards of", "Umleitungen von"),
        "all_forwards_title": Text("Forwards of all users", "Umleitungen aller Benutzer"),
        "no_forwards": Text("No forwards set.", "Keine Umleitung eingerichtet."),
        "add_forward": Text("Add or replace a forward", "Umleitung einrichten oder ersetzen"),
        "forward_replaces": Text(
            "A forward of the same kind and calls replaces the old one.",
            "Eine Umleitung derselben Art für dieselben Anrufe ersetzt die bisherige.",
        ),
        "forward_kind": Text("When", "Wann"),
        "forward_scope": Text("Calls", "Anrufe"),
        "forward_target": Text("Forward to", "Umleiten zu"),
        "forward_seconds": Text("Ring first (seconds)", "Vorher klingeln (Sekunden)"),
        "forward_seconds_hint": Text("only when not answered", "nur bei Nichtmelden"),
        "kind_unconditional": Text("Always", "Immer"),
        "kind_busy": Text("When busy", "Bei besetzt"),
        "kind_noanswer": Text("When not answered", "Bei Nichtmelden"),
        "scope_all": Text("All calls", "Alle Anrufe"),
        "scope_internal": Text("Internal calls", "Interne Anrufe"),
        "scope_external": Text("External calls", "Externe Anrufe"),
        "forward_announcement": Text("or play an announcement", "oder eine Ansage spielen"),
        "forward_announcement_hint": Text("then the call ends", "danach endet der Anruf"),
        "announcement_none": Text("none: forward to the number", "keine: zur Nummer umleiten"),
        "announcement": Text("Announcement", "Ansage"),
        "announcement_closed": Text("Outside business hours", "Außerhalb der Geschäftszeiten"),
        "announcement_holiday": Text("Closed today", "Heute geschlossen"),
        "announcement_unavailable": Text("Nobody available", "Niemand erreichbar"),
        "number_or_announcement": Text(
            "Forward to: please enter a number or choose an announcement, not both.",
            "Umleiten zu: bitte eine Nummer eingeben oder eine Ansage wählen, nicht beides.",
        ),
        "remove": Text("Remove", "Entfernen"),
        "forward_saved": Text("Forward saved.", "Umleitung gespeichert."),
        "forward_removed": Text("Forward removed.", "Umleitung entfernt."),
        "seconds_not_number": Text(
            "Ring first: please enter a whole number of seconds.",
            "Vorher klingeln: bitte eine ganze Zahl von Sekunden eingeben.",
        ),
        "breakthrough_hint": Text(
            "Who may call through a forward is set in the settings:",
            "Wer eine Umleitung durchbrechen darf, steht in den Einstellungen:",
        ),
        "user": Text("User", "Benutzer"),
        "bad_request": Text("Invalid request", "Ungültige Anfrage"),
        "bad_request_text": Text(
            "The form did not say what to change.", "Das Formular enthielt keine gültige Angabe."
        ),
    }
)


class ForwardPages:
    def __init__(self, forwards: Forwards, directory: Directory) -> None:
        self.forwards = forwards
        self.directory = directory

    def install(self, router: Router) -> None:
        router.route(
            "/me/forwards", self.own, access="user", nav=NavEntry("/me/forwards", "nav_forwards", "user", 20)
        )
        router.route("/me/forwards", self.own_set, access="user", methods=["POST"])
        router.route("/me/forwards/remove", self.own_remove, access="user", methods=["POST"])
        nav = NavEntry("/admin/forwards", "nav_forwards", "admin", order=30)
        router.route("/admin/forwards", self.overview, access="admin", nav=nav)
        router.route("/admin/forwards/<extension>", self.of_user, access="admin")
        router.route("/admin/forwards/<extension>", self.user_set, access="admin", methods=["POST"])
        router.route("/admin/forwards/<extension>/remove", self.user_remove, access="admin", methods=["POST"])

    # --- user: own forwards --------------------------------------------------

    def own(self, page: Page) -> bytes:
        return self._show(page, page.login, "/me/forwards")

    def own_set(self, page: Page) -> bytes:
        return self._set(page, page.login, "/me/forwards")

    def own_remove(self, page: Page) -> bytes:
        return self._remove(page, page.login, "/me/forwards")

    # --- admin: everyone's ---------------------------------------------------

    def overview(self, page: Page) -> bytes:
        shown = user_slice(self.directory, page.arg("after"))
        return page.render(
            "forwards_all.html",
            users=shown.users,
            forwards={u.extension: self.forwards.of(u.extension) for u in shown.users},
            after=shown.after,
            next_after=shown.next_after,
        )

    def of_user(self, page: Page, extension: str) -> bytes:
        if self.directory.user(extension) is None:
            return page.error(404, "not_found", "not_found")
        return self._show(page, extension, f"/admin/forwards/{extension}")

    def user_set(self, page: Page, extension: str) -> bytes:
        if self.directory.user(extension) is None:
            return page.error(404, "not_found", "not_found")
        return self._set(page, extension, f"/admin/forwards/{extension}")

    def user_remove(self, page: Page, extension: str) -> bytes:
        if self.directory.user(extension) is None:
            return page.error(404, "not_found", "not_found")
        return self._remove(page, extension, f"/admin/forwards/{extension}")

    # --- shared ----------------------------------------------------------------

    def _show(
        self,
        page: Page,
        owner: str,
        base: str,
        status: int = 200,
        error: str = "",
        form: Forward | None = None,
        seconds: str = "",
    ) -> bytes:
        message = {"saved": "forward_saved", "removed": "forward_removed"}.get(page.arg("done"), "")
        form = form or Forward("unconditional", "")
        return page.render(
            "forwards.html",
            status=status,
            owner=self.directory.user(owner),
            own=base.startswith("/me/"),
            base=base,
            forwards=self.forwards.of(owner),
            kinds=KINDS,
            scopes=SCOPES,
            form=form,
            seconds=seconds or str(form.seconds),
            message=page.t(message) if message else "",
            error=error,
        )

    def _set(self, page: Page, owner: str, base: str) -> bytes:
        submitted = save_forward(page, self.forwards, owner)
        if submitted.error:
            return self._show(page, owner, base, 400, submitted.error, submitted.forward, submitted.seconds)
        return page.redirect(base, {"done": "saved"})

    def _remove(self, page: Page, owner: str, base: str) -> bytes:
        if not remove_forward(page, self.forwards, owner):
            return page.error(400, "bad_request", "bad_request_text")
        return page.redirect(base, {"done": "removed"})


@dataclass(frozen=True)
class SubmittedForward:
    """The forward form as submitted, to show it again if it was refused."""

    forward: Forward
    seconds: str
    """The ring time as typed."""
    error: str = ""
    """Why it was not stored; "" when it was."""


def save_forward(page: Page, forwards: Forwards, owner: str) -> SubmittedForward:
    """Store the forward of the form for ``owner`` (a user's or a group's number)."""
    kind, scope, target = page.arg("kind"), page.arg("scope"), page.arg("target").strip()
    announcement = page.arg("announcement")
    raw_seconds = page.arg("seconds").strip() or str(DEFAULT_SECONDS)
    if announcement:
        if target:
            both = page.t("number_or_announcement")
            return SubmittedForward(Forward(kind, target, scope), raw_seconds, both)
        target = PREFIX + announcement  # checked against the catalogue with the rest of the forward
    submitted = Forward(kind, target, scope)
    if kind == NOANSWER:
        try:
            seconds = int(raw_seconds)
        except ValueError:
            return SubmittedForward(submitted, raw_seconds, page.t("seconds_not_number"))
        submitted = Forward(kind, target, scope, seconds)
    try:
        forwards.set(owner, submitted)
    except ForwardError as problem:
        return SubmittedForward(submitted, raw_seconds, str(problem))
    return SubmittedForward(submitted, raw_seconds)


def remove_forward(page: Page, forwards: Forwards, owner: str) -> bool:
    """Remove the forward the form names; False when it names no kind and scope."""
    kind, scope = page.arg("kind"), page.arg("scope")
    if kind not in KINDS or scope not in SCOPES:
        return False
    forwards.clear(owner, kind, scope)
    return True
