"""Admin: call groups (list with each member's state now, 100 a page; add, edit,
delete) and each group's forwards.

`appliance.web.groupform` checks the form; every problem is shown beside its
field and nothing is stored.  The directory is the one the router asks, so a
saved group rings from the next call on.  A group's forwards are kept like a
user's, under the group's number (`Forwards`, the same form as the forward
pages); when the number changes they move with it, and they go with the group,
in the same transaction as the group itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.directory import STRATEGIES, Directory, Group
from appliance.forwarding.records import KINDS, SCOPES, Forward, Forwards
from appliance.forwarding.scheduled import Schedules
from appliance.pbx import PBXModel, Presence
from appliance.settings import Text
from appliance.store import StoreChange
from appliance.web import i18n
from appliance.web.groupform import (
    FIELDS,
    GENERAL,
    OVERFLOW_CHOICES,
    GroupForm,
    form_of,
    new_form,
    parse_group_form,
)
from appliance.web.pages.forwards import SubmittedForward, remove_forward, save_forward
from appliance.web.pages.paging import group_slice
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_groups": Text("Groups", "Gruppen"),
        "groups_title": Text("Call groups", "Rufgruppen"),
        "add_group": Text("Add group", "Gruppe anlegen"),
        "edit_group": Text("Group", "Gruppe"),
        "no_groups": Text("No groups yet.", "Noch keine Gruppen."),
        "group_name": Text("Name", "Name"),
        "group_name_hint": Text(
            "letters, digits, - and _; members see it on a group call; fixed once the group exists",
            "Buchstaben, Ziffern, - und _; Mitglieder sehen ihn bei einem Gruppenruf; nach dem Anlegen fest",
        ),
        "group_number": Text("Number", "Rufnummer"),
        "group_members": Text("Members", "Mitglieder"),
        "group_members_hint": Text(
            "one extension a line, in ring order", "eine Rufnummer je Zeile, in Klingelreihenfolge"
        ),
        "group_members_more": Text(
            "also rung (they name the group in their user record)",
            "klingeln auch (sie nennen die Gruppe in ihrem Benutzereintrag)",
        ),
        "group_strategy": Text("Strategy", "Strategie"),
        "strategy_ringall": Text("Ring all at once", "Alle gleichzeitig"),
        "strategy_hunt": Text("One after another, in order", "Nacheinander in Reihenfolge"),
        "strategy_cyclic": Text(
            "One after another, starting after the last one first rung",
            "Reihum, beginnend nach dem zuletzt zuerst Gerufenen",
        ),
        "group_ring_seconds": Text("Ring time (seconds)", "Klingelzeit (Sekunden)"),
        "group_ring_seconds_hint": Text(
            "per member one after another; of the whole group when all ring at once",
            "je Mitglied bei nacheinander; der ganzen Gruppe bei alle gleichzeitig",
        ),
        "group_overflow": Text("When nobody answers", "Wenn sich niemand meldet"),
        "overflow_none": Text("Nothing more (unanswered)", "Nichts weiter (unbeantwortet)"),
        "overflow_busy": Text("Busy", "Besetzt"),
        "overflow_number": Text("Go on to a number", "Weiter zu einer Rufnummer"),
        "group_overflow_number": Text("Overflow number", "Überlauf-Rufnummer"),
        "group_overflow_number_hint": Text(
            "a user, another group or an external number", "ein Benutzer, eine andere Gruppe oder extern"
        ),
        "group_saved": Text("Group saved.", "Gruppe gespeichert."),
        "group_deleted": Text("Group deleted.", "Gruppe gelöscht."),
        "delete_group": Text("Delete this group", "Diese Gruppe löschen"),
        "group_forwards": Text("Group forwards", "Umleitungen der Gruppe"),
        "group_forward_hint": Text(
            "Forwards of the group's number, kept like a user's.",
            "Umleitungen der Gruppenrufnummer, wie bei einem Benutzer.",
        ),
        "member_state": Text("State", "Zustand"),
        "state_idle": Text("logged in", "angemeldet"),
        "state_ringing": Text("ringing", "klingelt"),
        "state_busy": Text("busy", "besetzt"),
        "state_dnd": Text("do not disturb", "nicht stören"),
        "state_logged_out": Text("logged out", "abgemeldet"),
        "state_unknown": Text("unknown (no link to Asterisk)", "unbekannt (keine Verbindung zu Asterisk)"),
        "state_no_user": Text("not a user", "kein Benutzer"),
    }
)

DONE_MESSAGES = {
    "saved": "group_saved",
    "forward_saved": "forward_saved",
    "forward_removed": "forward_removed",
}
"""What the group page says after a redirect (``?done=``)."""


@dataclass(frozen=True)
class MemberRow:
    """One member in the group list, with what a call would meet there now."""

    extension: str
    name: str
    state: str
    """A catalogue key: ``state_idle``, ``state_busy``, … (see above)."""
    listed: bool = True
    """In the group's own ordered list (False: the user's record names the group)."""


class GroupPages:
    def __init__(
        self,
        directory: Directory,
        forwards: Forwards,
        schedules: Schedules,
        pbx: PBXModel,
        presence: Callable[[str], Presence] | None = None,
    ) -> None:
        self.directory = directory
        self.forwards = forwards
        self.schedules = schedules
        self.pbx = pbx
        self.presence = presence or pbx.presence
        """A member's state over all their phones (`appliance.devices.Devices.presence`)."""

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/groups", "nav_groups", "admin", order=25)
        router.route("/admin/groups", self.overview, access="admin", nav=nav)
        router.route("/admin/groups/new", self.new, access="admin")
        router.route("/admin/groups/new", self.create, access="admin", methods=["POST"])
        router.route("/admin/groups/<name>", self.edit, access="admin")
        router.route("/admin/groups/<name>", self.update, access="admin", methods=["POST"])
        router.route("/admin/groups/<name>/delete", self.delete, access="admin", methods=["POST"])
        router.route("/admin/groups/<name>/forwards", self.forward_set, access="admin", methods=["POST"])
        router.route(
            "/admin/groups/<name>/forwards/remove", self.forward_remove, access="admin", methods=["POST"]
        )

    # --- the list --------------------------------------------------------------

    def overview(self, page: Page) -> bytes:
        shown = group_slice(self.directory, page.arg("after"))
        groups = shown.groups
        return page.render(
            "groups.html",
            groups=groups,
            members={group.name: self._member_rows(group) for group in groups},
            forwards={group.name: self.forwards.of(group.number) for group in groups},
            deleted=page.arg("deleted") == "1",
            after=shown.after,
            next_after=shown.next_after,
        )

    def _member_rows(self, group: Group) -> list[MemberRow]:
        rows = [self._member_row(extension, listed=True) for extension in group.members]
        rows += [
            self._member_row(user.extension, listed=False)
            for user in self.directory.members_of(group.name)
            if user.extension not in group.members
        ]
        return rows

    def _member_row(self, extension: str, listed: bool) -> MemberRow:
        user = self.directory.user(extension)
        if user is None:
            return MemberRow(extension, "", "state_no_user", listed)
        if not self.pbx.synced:
            return MemberRow(extension, user.name, "state_unknown", listed)
        return MemberRow(extension, user.name, "state_" + self.presence(extension).value, listed)

    # --- one group -------------------------------------------------------------

    def new(self, page: Page) -> bytes:
        return self._page(page, 200, None, new_form())

    def edit(self, page: Page, name: str) -> bytes:
        group = self.directory.group(name)
        if group is None:
            return page.error(404, "not_found", "not_found")
        message = DONE_MESSAGES.get(page.arg("done"), "")
        return self._page(page, 200, group, form_of(group), message=message)

    def create(self, page: Page) -> bytes:
        return self._save(page, None)

    def update(self, page: Page, name: str) -> bytes:
        group = self.directory.group(name)
        if group is None:
            return page.error(404, "not_found", "not_found")
        return self._save(page, group)

    def _save(self, page: Page, stored: Group | None) -> bytes:
        form = parse_group_form({name: page.arg(name) for name in FIELDS}, self.directory, stored)
        if form.group is None:
            return self._page(page, 400, stored, form)
        # The group's forwards and their schedules follow a new number in the same transaction.
        follow = [] if stored is None else self._records_of(stored.number, form.group.number)
        group = self.directory.put_group(form.group, also=follow)
        return page.redirect(f"/admin/groups/{group.name}", {"done": "saved"})

    def delete(self, page: Page, name: str) -> bytes:
        group = self.directory.group(name)
        if group is None:
            return page.error(404, "not_found", "not_found")
        self.directory.delete_group(name, also=self._records_of(group.number, None))
        return page.redirect("/admin/groups", {"deleted": "1"})

    def _records_of(self, number: str, new: str | None) -> list[StoreChange]:
        return [*self.forwards.moved(number, new), *self.schedules.moved(number, new)]

    # --- the group's forwards --------------------------------------------------

    def forward_set(self, page: Page, name: str) -> bytes:
        group = self.directory.group(name)
        if group is None:
            return page.error(404, "not_found", "not_found")
        submitted = save_forward(page, self.forwards, group.number)
        if submitted.error:
            return self._page(page, 400, group, form_of(group), forward=submitted)
        return page.redirect(f"/admin/groups/{group.name}", {"done": "forward_saved"})

    def forward_remove(self, page: Page, name: str) -> bytes:
        group = self.directory.group(name)
        if group is None:
            return page.error(404, "not_found", "not_found")
        if not remove_forward(page, self.forwards, group.number):
            return page.error(400, "bad_request", "bad_request_text")
        return page.redirect(f"/admin/groups/{group.name}", {"done": "forward_removed"})

    def _page(
        self,
        page: Page,
        status: int,
        stored: Group | None,
        form: GroupForm,
        message: str = "",
        forward: SubmittedForward | None = None,
    ) -> bytes:
        forward = forward or SubmittedForward(Forward("unconditional", ""), "")
        return page.render(
            "group_form.html",
            status=status,
            stored=stored,
            values=form.values,
            problems={field: text.in_(page.language) for field, text in form.problems.items()},
            general=GENERAL,
            strategies=STRATEGIES,
            overflow_choices=OVERFLOW_CHOICES,
            message=page.t(message) if message else "",
            forwards=self.forwards.of(stored.number) if stored else [],
            kinds=KINDS,
            scopes=SCOPES,
            forward=forward.forward,
            forward_seconds=forward.seconds or str(forward.forward.seconds),
            forward_error=forward.error,
        )
