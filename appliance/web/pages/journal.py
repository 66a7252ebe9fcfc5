"""The missed-call journal (user: own, with "mark seen"; admin: any user's) and
the missed-call mail opt-in (user: own; admin: who gets mail).

Caller names and numbers come from the caller and are shown only through the
templates' autoescaping.  "Mark seen" applies to ``page.login``'s journal, so
an id of someone else's entry changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.directory import Directory
from appliance.missed.journal import Journal
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.pages.paging import user_slice
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_journal": Text("Missed calls", "Verpasste Anrufe"),
        "journal_title": Text("My missed calls", "Meine verpassten Anrufe"),
        "all_journal_title": Text("Missed-call journal", "Journal verpasster Anrufe"),
        "journal_of": Text("Journal of", "Journal von"),
        "choose_user": Text("Choose a user", "Benutzer wählen"),
        "show": Text("Show", "Anzeigen"),
        "no_missed": Text("No missed calls.", "Keine verpassten Anrufe."),
        "missed_when": Text("When", "Wann"),
        "missed_caller": Text("Caller", "Anrufer"),
        "missed_number": Text("Number", "Rufnummer"),
        "missed_rang": Text("Rang (s)", "Geklingelt (s)"),
        "missed_answered_by": Text("Answered by", "Angenommen von"),
        "missed_new": Text("new", "neu"),
        "missed_seen": Text("seen", "gesehen"),
        "withheld": Text("withheld", "unterdrückt"),
        "mark_seen": Text("Mark seen", "Als gesehen markieren"),
        "mark_all_seen": Text("Mark all seen", "Alle als gesehen markieren"),
        "marked_seen": Text("Marked as seen.", "Als gesehen markiert."),
        "nav_notifications": Text("Notifications", "Benachrichtigung"),
        "notifications_title": Text("Missed-call mail", "E-Mail bei verpassten Anrufen"),
        "opt_in_label": Text(
            "Send me an e-mail for each missed call", "Bei jedem verpassten Anruf eine E-Mail senden"
        ),
        "opt_in_saved": Text("Your choice is saved.", "Ihre Auswahl ist gespeichert."),
        "no_email": Text(
            "No e-mail address is set for you, so no mail can be sent; the administrator can add one.",
            "Für Sie ist keine E-Mail-Adresse eingetragen, daher kann keine Mail gesendet werden; "
            "der Administrator kann eine eintragen.",
        ),
        "mail_to": Text("Mails go to", "Mails gehen an"),
        "notification_users_title": Text(
            "Missed-call mail per user", "E-Mail bei verpassten Anrufen je Benutzer"
        ),
        "opted_in": Text("Wants mail", "Möchte Mail"),
        "notification_settings_hint": Text(
            "Who gets a mail for which calls is set in the settings:",
            "Wer für welche Anrufe eine Mail bekommt, steht in den Einstellungen:",
        ),
    }
)


class JournalPages:
    def __init__(
        self, journal: Journal, directory: Directory, seen: Callable[[str], object] = lambda user: None
    ) -> None:
        self.journal = journal
        self.directory = directory
        self.seen = seen
        """Told when a user marks their journal seen: for the mail, the user is back."""

    def install(self, router: Router) -> None:
        router.route(
            "/me/journal", self.own, access="user", nav=NavEntry("/me/journal", "nav_journal", "user", 40)
        )
        router.route("/me/journal/seen", self.own_seen, access="user", methods=["POST"])
        nav = NavEntry("/admin/journal", "nav_journal", "admin", order=50)
        router.route("/admin/journal", self.of_user, access="admin", nav=nav)

    def own(self, page: Page) -> bytes:
        return page.render(
            "journal.html",
            own=True,
            owner=self.directory.user(page.login),
            entries=self.journal.entries(page.login),
            wanted="",
            marked=page.arg("marked") == "1",
        )

    def own_seen(self, page: Page) -> bytes:
        ids = None if page.arg("all") == "1" else [page.arg("id")]
        self.journal.mark_seen(page.login, ids)
        self.seen(page.login)
        return page.redirect("/me/journal", {"marked": "1"})

    def of_user(self, page: Page) -> bytes:
        wanted = page.arg("user").strip()
        owner = self.directory.user(wanted) if wanted else None
        if wanted and owner is None:
            return page.error(404, "not_found", "not_found")
        return page.render(
            "journal.html",
            own=False,
            owner=owner,
            entries=self.journal.entries(owner.extension) if owner else [],
            wanted=wanted,
            marked=False,
        )


class NotificationPages:
    def __init__(self, journal: Journal, directory: Directory) -> None:
        self.journal = journal
        self.directory = directory

    def install(self, router: Router) -> None:
        user_nav = NavEntry("/me/notifications", "nav_notifications", "user", order=50)
        router.route("/me/notifications", self.own, access="user", nav=user_nav)
        router.route("/me/notifications", self.own_save, access="user", methods=["POST"])
        admin_nav = NavEntry("/admin/notifications", "nav_notifications", "admin", order=60)
        router.route("/admin/notifications", self.all, access="admin", nav=admin_nav)

    def own(self, page: Page) -> bytes:
        return page.render(
            "notifications.html",
            user=self.directory.user(page.login),
            opted_in=self.journal.opted_in(page.login),
            saved=page.arg("saved") == "1",
        )

    def own_save(self, page: Page) -> bytes:
        self.journal.set_opt_in(page.login, page.arg("opt_in") == "1")
        return page.redirect("/me/notifications", {"saved": "1"})

    def all(self, page: Page) -> bytes:
        shown = user_slice(self.directory, page.arg("after"))
        return page.render(
            "notifications_all.html",
            users=shown.users,
            opted_in={user.extension: self.journal.opted_in(user.extension) for user in shown.users},
            after=shown.after,
            next_after=shown.next_after,
        )
