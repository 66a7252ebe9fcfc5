"""Admin: the appliance's holiday calendar from a URL (`appliance.forwarding.holidayfeed`):
its URL and refresh interval (the same settings as the settings table), the
state of the last fetch, and a button that fetches it now."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from appliance import settings as keys
from appliance.forwarding.holidayfeed import HolidayFeed
from appliance.settings import InvalidSetting, Settings, Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_holidays": Text("Holidays", "Feiertage"),
        "holidays_title": Text("Holiday calendar of the appliance", "Feiertagskalender der Anlage"),
        "holidays_intro": Text(
            "An iCalendar URL (http or https), e.g. the public holidays of your region. Forward "
            "schedules that follow the appliance's holidays use the last copy fetched without error.",
            "Eine iCalendar-URL (http oder https), z.B. die gesetzlichen Feiertage Ihrer Region. "
            "Umleitungs-Zeitpläne, die den Feiertagen der Anlage folgen, nutzen die zuletzt "
            "fehlerfrei abgerufene Kopie.",
        ),
        "holidays_url": Text("Calendar URL", "Kalender-URL"),
        "holidays_refresh": Text("Fetch every (minutes)", "Abrufen alle (Minuten)"),
        "holidays_save": Text("Save", "Speichern"),
        "holidays_saved": Text(
            "Saved; the calendar is being fetched.", "Gespeichert; der Kalender wird abgerufen."
        ),
        "holidays_fetch": Text("Fetch now", "Jetzt abrufen"),
        "holidays_fetched_now": Text("Fetched.", "Abgerufen."),
        "holidays_fetch_failed": Text(
            "The fetch failed (see below); the last good copy stays in use.",
            "Der Abruf ist fehlgeschlagen (siehe unten); die letzte fehlerfreie Kopie bleibt in Gebrauch.",
        ),
        "holidays_status": Text("Last fetch", "Letzter Abruf"),
        "holidays_none": Text("No calendar URL set.", "Keine Kalender-URL eingestellt."),
        "holidays_copy": Text("Copy in use, fetched", "Verwendete Kopie, abgerufen"),
        "holidays_no_copy": Text("no good copy yet", "noch keine fehlerfreie Kopie"),
        "holidays_checked": Text("Last try", "Letzter Versuch"),
        "holidays_never": Text("not yet", "noch nicht"),
        "holidays_error": Text("Error of the last try", "Fehler beim letzten Versuch"),
        "holidays_ok": Text("none", "keiner"),
        "holidays_events": Text("Events in the copy", "Termine in der Kopie"),
    }
)


class HolidayPages:
    def __init__(self, feed: HolidayFeed, settings: Settings) -> None:
        self.feed = feed
        self.settings = settings

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/holidays", "nav_holidays", "admin", order=45)
        router.route("/admin/holidays", self.show, access="admin", nav=nav)
        router.route("/admin/holidays", self.save, access="admin", methods=["POST"])
        router.route("/admin/holidays/fetch", self.fetch, access="admin", methods=["POST"])

    def show(self, page: Page) -> bytes:
        done = {"saved": "holidays_saved", "fetched": "holidays_fetched_now"}.get(page.arg("done"), "")
        failed = page.t("holidays_fetch_failed") if page.arg("done") == "failed" else ""
        return self._render(page, 200, message=page.t(done) if done else "", error=failed)

    def save(self, page: Page) -> bytes:
        url, refresh = page.arg("url").strip(), page.arg("refresh").strip()
        try:
            self.settings.set_many({keys.HOLIDAY_ICAL_URL.name: url, keys.HOLIDAY_ICAL_REFRESH.name: refresh})
        except InvalidSetting as refused:
            errors = "; ".join(f"{p.name}: {p.message(page.language)}" for p in refused.problems)
            return self._render(page, 400, error=errors, url=url, refresh=refresh)
        return page.redirect("/admin/holidays", {"done": "saved"})

    def fetch(self, page: Page) -> Deferred[bytes]:
        """Waits for the fetch (bounded by its timeout), then shows its outcome."""
        return self.feed.refresh().addCallback(
            lambda status: page.redirect("/admin/holidays", {"done": "failed" if status.error else "fetched"})
        )

    def _render(self, page: Page, status: int, message: str = "", error: str = "", **form: Any) -> bytes:
        return page.render(
            "holidays.html",
            status=status,
            feed=self.feed.status(),
            url=form.get("url", self.settings.get(keys.HOLIDAY_ICAL_URL)),
            refresh=form.get("refresh", self.settings.get(keys.HOLIDAY_ICAL_REFRESH)),
            message=message,
            error=error,
        )
