"""User: schedules of the own forwards (office hours, holidays), through the
same `Schedules` and checks as the JSON API.  Admin: the same for a group's
forwards ("office closed": the group's unconditional forward on a schedule).

One form per save: the forward (kind and calls), one weekly window (days and
times; leave the times empty for all day), holiday dates (one per line), an
optional iCalendar file of holidays, and what holidays mean.  A bad field is
named above the form and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from appliance.directory import Directory
from appliance.forwarding.records import KINDS, SCOPES, Forwards
from appliance.forwarding.schedule import DAYS, MAX_ICAL, ON_HOLIDAYS, ScheduleError
from appliance.forwarding.scheduled import Schedules, slot
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_schedules": Text("Office hours", "Zeitsteuerung"),
        "schedules_title": Text("When my forwards apply", "Wann meine Umleitungen gelten"),
        "schedules_intro": Text(
            "A forward with a schedule applies only inside it; without one it always applies.",
            "Eine Umleitung mit Zeitplan gilt nur in diesem Zeitraum, ohne Zeitplan immer.",
        ),
        "schedule_forward": Text("Forward", "Umleitung"),
        "schedule_days": Text("Days", "Tage"),
        "schedule_from": Text("From (HH:MM)", "Von (HH:MM)"),
        "schedule_to": Text("To (HH:MM)", "Bis (HH:MM)"),
        "schedule_holidays": Text("Holidays (YYYY-MM-DD, one per line)", "Feiertage (JJJJ-MM-TT, je Zeile)"),
        "schedule_holidays_column": Text("Holidays", "Feiertage"),
        "schedule_ical": Text("Holiday calendar (.ics, optional)", "Feiertagskalender (.ics, optional)"),
        "schedule_shared_holidays": Text(
            "Also the appliance's holiday calendar (set by the admin)",
            "Auch der Feiertagskalender der Anlage (vom Admin eingestellt)",
        ),
        "schedule_shared_short": Text("appliance holidays", "Feiertage der Anlage"),
        "schedule_on_holidays": Text("On holidays the forward", "An Feiertagen ist die Umleitung"),
        "on_holidays_inactive": Text("is off", "aus"),
        "on_holidays_active": Text("is on", "an"),
        "on_holidays_ignore": Text("follows the days", "wie an anderen Tagen"),
        "schedule_none": Text("always", "immer"),
        "schedule_all_day": Text("all day", "ganztägig"),
        "schedule_save": Text("Save schedule", "Zeitplan speichern"),
        "schedule_saved": Text("Schedule saved.", "Zeitplan gespeichert."),
        "schedule_removed": Text("Schedule removed: the forward always applies.", "Zeitplan entfernt."),
        "group_schedules_title": Text(
            "When the forwards of group {name} apply", "Wann die Umleitungen der Gruppe {name} gelten"
        ),
        "group_schedules_link": Text(
            "Office hours of these forwards (office closed)", "Zeitsteuerung dieser Umleitungen (geschlossen)"
        ),
        "group_schedules_intro": Text(
            "Office closed: with a schedule (evenings, weekends) the group's forward applies only then.",
            "Geschlossen: Mit Zeitplan (abends, am Wochenende) gilt die Umleitung der Gruppe nur dann.",
        ),
        "schedule_no_forward": Text(
            "Set a forward first; then give it a schedule here.",
            "Erst eine Umleitung einrichten, dann hier einen Zeitplan.",
        ),
        "day_mon": Text("Mon", "Mo"),
        "day_tue": Text("Tue", "Di"),
        "day_wed": Text("Wed", "Mi"),
        "day_thu": Text("Thu", "Do"),
        "day_fri": Text("Fri", "Fr"),
        "day_sat": Text("Sat", "Sa"),
        "day_sun": Text("Sun", "So"),
    }
)


class SchedulePages:
    def __init__(self, forwards: Forwards, schedules: Schedules, directory: Directory) -> None:
        self.forwards = forwards
        self.schedules = schedules
        self.directory = directory

    def install(self, router: Router) -> None:
        nav = NavEntry("/me/schedules", "nav_schedules", "user", order=25)
        router.route("/me/schedules", self.show, access="user", nav=nav)
        router.route("/me/schedules", self.save, access="user", methods=["POST"], upload=True)
        router.route("/me/schedules/remove", self.remove, access="user", methods=["POST"])
        group = "/admin/groups/<name>/schedules"
        router.route(group, self.group_show, access="admin")
        router.route(group, self.group_save, access="admin", methods=["POST"], upload=True)
        router.route(f"{group}/remove", self.group_remove, access="admin", methods=["POST"])

    # -- the user's own ---------------------------------------------------------

    def show(self, page: Page) -> bytes:
        return self._show(page, Owner(page.login, "/me/schedules"))

    def save(self, page: Page) -> bytes:
        return self._save(page, Owner(page.login, "/me/schedules"))

    def remove(self, page: Page) -> bytes:
        return self._remove(page, Owner(page.login, "/me/schedules"))

    # -- a group's, for the admin ------------------------------------------------

    def group_show(self, page: Page, name: str) -> bytes:
        return self._for_group(page, name, self._show)

    def group_save(self, page: Page, name: str) -> bytes:
        return self._for_group(page, name, self._save)

    def group_remove(self, page: Page, name: str) -> bytes:
        return self._for_group(page, name, self._remove)

    def _for_group(self, page: Page, name: str, step: Callable[[Page, Owner], bytes]) -> bytes:
        owner = self._group(name)
        return step(page, owner) if owner else page.error(404, "not_found", "not_found")

    def _group(self, name: str) -> Owner | None:
        group = self.directory.group(name)
        if group is None:
            return None
        return Owner(group.number, f"/admin/groups/{quote(group.name, safe='')}/schedules", group.name)

    # -- shared ------------------------------------------------------------------

    def _show(self, page: Page, owner: Owner) -> bytes:
        done = {"saved": "schedule_saved", "removed": "schedule_removed"}.get(page.arg("done"), "")
        return self._render(page, owner, 200, message=page.t(done) if done else "")

    def _save(self, page: Page, owner: Owner) -> bytes:
        kind, _, scope = page.arg("forward").partition("/")
        if not any((f.kind, f.scope) == (kind, scope) for f in self.forwards.of(owner.number)):
            return self._render(page, owner, 400, error=page.t("schedule_no_forward"))
        args = page.request.args or {}
        days = [d.decode("utf-8", "replace") for d in args.get(b"days", [])]
        start, end = page.arg("start").strip(), page.arg("end").strip()
        record: dict[str, Any] = {
            "windows": [{"days": days, "start": start, "end": end}] if start or end else [],
            "holidays": [line.strip() for line in page.arg("holidays").splitlines() if line.strip()],
            "on_holidays": page.arg("on_holidays"),
            "shared_holidays": page.arg("shared_holidays") == "on",
        }
        if not start and not end and len(days) < len(DAYS):
            # Whole days only: a window from midnight to midnight.
            record["windows"] = [{"days": days, "start": "00:00", "end": "24:00"}]
        upload = (args.get(b"ical") or [b""])[0]
        if upload:
            if len(upload) > MAX_ICAL:
                return self._render(page, owner, 400, error=f"ical: larger than {MAX_ICAL // 1024} KiB")
            try:
                record["ical"] = upload.decode("utf-8-sig")
            except UnicodeDecodeError:
                return self._render(page, owner, 400, error="ical: not UTF-8 text")
        else:
            kept = self.schedules.of(owner.number).get(slot(kind, scope))
            record["ical"] = kept.calendar.text if kept is not None and kept.calendar else ""
        try:
            self.schedules.set(owner.number, kind, scope, record)
        except ScheduleError as problem:
            return self._render(page, owner, 400, error=str(problem))
        return page.redirect(owner.base, {"done": "saved"})

    def _remove(self, page: Page, owner: Owner) -> bytes:
        kind, _, scope = page.arg("forward").partition("/")
        if kind not in KINDS or scope not in SCOPES:
            return page.error(400, "bad_request", "bad_request_text")
        self.schedules.clear(owner.number, kind, scope)
        return page.redirect(owner.base, {"done": "removed"})

    def _render(self, page: Page, owner: Owner, status: int, message: str = "", error: str = "") -> bytes:
        return page.render(
            "schedules.html",
            status=status,
            base=owner.base,
            group=owner.group,
            forwards=self.forwards.of(owner.number),
            schedules=self.schedules.of(owner.number),
            days=DAYS,
            on_holidays=ON_HOLIDAYS,
            message=message,
            error=error,
        )


@dataclass(frozen=True)
class Owner:
    """Whose forwards a schedule page edits, and where its forms post."""

    number: str
    base: str
    group: str = ""
    """The group's name, for a group's page."""
