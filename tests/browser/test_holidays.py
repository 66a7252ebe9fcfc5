"""The appliance's holiday calendar on the admin page in real headless Chromium:
the URL of a real loopback HTTP server saved, "Fetch now" shows the copy; the
server failing shows the error while the copy stays in use; a user's schedule
follows it with its box."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect
from twisted.internet import reactor
from twisted.web.server import Site

from appliance import settings as keys
from appliance.directory import User
from appliance.forwarding.records import Forward
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, reserved_port, screenshot
from tests.e2e.test_holiday_feed import CalendarServer
from tests.unit.test_holiday_feed import calendar


def test_admin_sets_the_calendar_url_and_sees_each_fetch(page: Page, running: Running) -> None:
    """Save URL and interval, fetch: 2 events, no error.  The server answers 503:
    the page names it and still shows the copy's 2 events; a bad URL is refused."""
    server = CalendarServer()
    server.body = calendar("2027-01-01", "2027-12-25")
    site: Any = Site(server)
    port: Any = running.call(lambda: reactor.listenTCP(reserved_port(), site, interface="127.0.0.1"))
    url = f"http://127.0.0.1:{port.getHost().port}/feiertage.ics"
    try:
        log_in(page, running, "admin", ADMIN_PASSWORD)
        page.click("nav >> text=Holidays")
        expect(page).to_have_url(running.url + "/admin/holidays")
        expect(page.locator("#holiday-status")).to_have_text("No calendar URL set.")

        page.fill("#url", "ftp://127.0.0.1/x.ics")
        page.click("form.holidays-form button[type=submit]")
        expect(page.get_by_role("alert")).to_contain_text("HOLIDAY_ICAL_URL")
        assert running.call(running.appliance.settings.get, keys.HOLIDAY_ICAL_URL) == ""

        page.fill("#url", url)
        page.fill("#refresh", "120")
        page.click("form.holidays-form button[type=submit]")
        expect(page.get_by_role("status")).to_contain_text("Saved")
        page.click("text=Fetch now")
        expect(page.get_by_role("status")).to_have_text("Fetched.")
        expect(page.locator("#holiday-events")).to_have_text("2")
        expect(page.locator("#holiday-error")).to_have_text("none")
        assert running.call(running.appliance.settings.get, keys.HOLIDAY_ICAL_REFRESH) == 120

        server.code = 503
        page.click("text=Fetch now")
        expect(page.get_by_role("alert").first).to_contain_text("The fetch failed")
        expect(page.locator("#holiday-error")).to_have_text("HTTP 503")
        expect(page.locator("#holiday-events")).to_have_text("2")
        screenshot(page, "32-admin-holidays")
        kept: Any = running.call(running.appliance.holiday_feed.calendar)
        assert kept is not None and kept.events == 2
    finally:
        running.call(port.stopListening)
        running.call(running.appliance.settings.set, keys.HOLIDAY_ICAL_URL, "")


def test_user_schedule_follows_the_appliance_holidays(page: Page, running: Running) -> None:
    running.add_user(User("241", "Hanna Ito", "", "en"), "hanna-secret")
    running.call(running.appliance.forwarding.forwards.replace_all, "241", [Forward("unconditional", "300")])
    log_in(page, running, "241", "hanna-secret")
    page.click("nav >> text=Office hours")
    page.check("#shared_holidays")
    page.click("form.schedule-form button[type=submit]")
    expect(page.get_by_role("status")).to_have_text("Schedule saved.")
    expect(page.locator("#schedule-unconditional-all")).to_contain_text("appliance holidays")
    saved = running.call(running.appliance.schedules.of, "241")["unconditional/all"]
    assert saved.shared_holidays is True
