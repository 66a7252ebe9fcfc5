"""Forward schedules on the page in real headless Chromium: office hours with
a holiday calendar upload, a refused bad time, removal."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from appliance.directory import User
from appliance.forwarding.records import Forward
from tests.browser.conftest import Running, log_in, screenshot

HOLIDAYS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//browser//test//EN\r\n"
    "BEGIN:VEVENT\r\nUID:ny@browser\r\nDTSTART;VALUE=DATE:20270101\r\nRRULE:FREQ=YEARLY\r\n"
    "SUMMARY:Neujahr\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_user_gives_a_forward_office_hours(page: Page, running: Running, tmp_path: Path) -> None:
    """Gina's unconditional forward gets Mon-Fri 08:00-17:30, a holiday and an .ics
    calendar; 25:00 is refused with the field named; Remove makes it apply always."""
    running.add_user(User("240", "Gina Hu", "", "en"), "gina-secret")
    schedules = running.appliance.schedules

    def reset() -> None:
        running.appliance.forwarding.forwards.replace_all("240", [Forward("unconditional", "300")])
        schedules.clear("240", "unconditional", "all")

    running.call(reset)
    log_in(page, running, "240", "gina-secret")
    page.click("nav >> text=Office hours")
    expect(page).to_have_url(running.url + "/me/schedules")
    expect(page.locator("#schedule-unconditional-all td.windows")).to_have_text("always")

    page.fill("#start", "25:00")
    page.fill("#end", "17:30")
    page.click("form.schedule-form button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("window 1: start: '25:00' is not a time HH:MM")
    assert running.call(schedules.of, "240") == {}

    ics = tmp_path / "holidays.ics"
    ics.write_text(HOLIDAYS)
    page.fill("#start", "08:00")
    page.fill("#end", "17:30")
    page.fill("#holidays", "2026-12-24\n2026-12-31")
    page.set_input_files("#ical", str(ics))
    page.select_option("#on_holidays", "inactive")
    page.click("form.schedule-form button[type=submit]")
    expect(page.get_by_role("status")).to_have_text("Schedule saved.")
    expect(page.locator("#schedule-unconditional-all td.windows")).to_have_text(
        "Mon Tue Wed Thu Fri 08:00-17:30"
    )
    screenshot(page, "31-user-schedules")
    saved = running.call(schedules.of, "240")["unconditional/all"]
    assert saved.to_json()["windows"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:30"}
    ]
    assert saved.calendar is not None and "Neujahr" in saved.calendar.text
    assert len(saved.holidays) == 2

    page.click("#schedule-unconditional-all button")
    expect(page.get_by_role("status")).to_have_text("Schedule removed: the forward always applies.")
    assert running.call(schedules.of, "240") == {}
