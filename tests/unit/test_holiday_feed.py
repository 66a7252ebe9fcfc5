"""The appliance's holiday calendar from a URL: fetched at start, refreshed on
the interval from the settings and on demand, the last good copy kept when the
URL fails; schedules that follow it.  Time from a Clock, fetches answered by hand."""

from __future__ import annotations

from datetime import date, datetime

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import settings as keys
from appliance.forwarding.holidayfeed import RETRY_FAILED_SECONDS, FeedError, HolidayFeed
from appliance.forwarding.schedule import HolidayCalendar, Schedule, ScheduleError
from appliance.settings import InvalidSetting, Settings
from appliance.testing import MemoryStore

URL = "https://holidays.example/de-be.ics"


def calendar(*days: str) -> bytes:
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{day}@test\r\nDTSTART;VALUE=DATE:{day.replace('-', '')}\r\n"
        f"SUMMARY:Feiertag\r\nEND:VEVENT\r\n"
        for day in days
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//DE\r\n{events}END:VCALENDAR\r\n".encode()


class HandFetch:
    """fetch(url): each call waits until the test answers it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[bytes]]] = []
        self.ready: list[bytes | FeedError] = []
        """Answers given at once, before any by hand (for synchronous page requests)."""

    def __call__(self, url: str) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.calls.append((url, d))
        if self.ready:
            answer = self.ready.pop(0)
            d.errback(answer) if isinstance(answer, FeedError) else d.callback(answer)
        return d

    def answer(self, body: bytes) -> None:
        self.calls[-1][1].callback(body)

    def fail(self, why: str) -> None:
        self.calls[-1][1].errback(FeedError(why))


class HolidayFeedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.settings = Settings(self.store)
        self.settings.set(keys.HOLIDAY_ICAL_URL, URL)
        self.fetch = HandFetch()
        self.feed = HolidayFeed(self.store, self.settings, self.fetch, self.clock)

    def started(self) -> None:
        self.feed.startService()
        self.addCleanup(self.feed.stopService)
        self.clock.advance(0)

    def test_fetched_at_start_and_kept_in_the_store(self) -> None:
        """The first fetch runs at start; its calendar and times are stored and shown."""
        self.started()
        self.assertEqual([url for url, _ in self.fetch.calls], [URL])
        self.assertTrue(self.feed.status().fetching)
        self.fetch.answer(calendar("2027-01-01"))
        status = self.feed.status()
        self.assertEqual((status.fetched, status.checked, status.error, status.events), (1.8e9, 1.8e9, "", 1))
        calendar_now = self.feed.calendar()
        assert calendar_now is not None
        self.assertTrue(calendar_now.covers(date(2027, 1, 1)))
        self.assertFalse(calendar_now.covers(date(2027, 1, 2)))
        record = self.store.get("holiday_calendar", "shared")
        assert isinstance(record, dict)
        self.assertEqual(record["url"], URL)

    def test_refreshed_on_the_interval_from_the_settings(self) -> None:
        """HOLIDAY_ICAL_REFRESH minutes after a good fetch the next one runs, not before."""
        self.settings.set(keys.HOLIDAY_ICAL_REFRESH, "120")
        self.started()
        self.fetch.answer(calendar("2027-01-01"))
        self.clock.advance(120 * 60 - 1)
        self.assertEqual(len(self.fetch.calls), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.fetch.calls), 2)
        self.fetch.answer(calendar("2027-01-01", "2027-05-01"))
        self.assertEqual(self.feed.status().events, 2)
        self.settings.set(keys.HOLIDAY_ICAL_REFRESH, "10")  # a shorter interval applies from now
        self.clock.advance(10 * 60)
        self.assertEqual(len(self.fetch.calls), 3)

    def test_failure_keeps_the_last_good_copy_and_says_why(self) -> None:
        """A failing URL or a body that is no calendar: the copy stays in use, the
        error and the time of the try are shown, and it is tried again within 5 minutes."""
        self.started()
        self.fetch.answer(calendar("2027-01-01"))
        self.clock.advance(3600)
        self.fetch.fail("HTTP 503")
        status = self.feed.status()
        self.assertEqual((status.fetched, status.checked, status.error), (1.8e9, 1.8e9 + 3600, "HTTP 503"))
        kept = self.feed.calendar()
        assert kept is not None and kept.covers(date(2027, 1, 1))
        self.clock.advance(RETRY_FAILED_SECONDS)
        self.assertEqual(len(self.fetch.calls), 3)
        self.fetch.answer(b"<html>moved</html>")
        self.assertIn("not an iCalendar calendar", self.feed.status().error)
        kept = self.feed.calendar()
        assert kept is not None and kept.covers(date(2027, 1, 1))
        self.clock.advance(RETRY_FAILED_SECONDS)
        self.fetch.answer(b"\xff\xfe not text")
        self.assertEqual(self.feed.status().error, "not UTF-8 text")
        self.clock.advance(RETRY_FAILED_SECONDS)
        self.fetch.answer(calendar("2027-12-25"))
        status = self.feed.status()
        self.assertEqual((status.error, status.fetched), ("", self.clock.seconds()))
        fresh = self.feed.calendar()
        assert fresh is not None and fresh.covers(date(2027, 12, 25))
        self.assertFalse(fresh.covers(date(2027, 1, 1)))

    def test_failure_without_a_copy(self) -> None:
        self.started()
        self.fetch.fail("connection refused")
        status = self.feed.status()
        self.assertEqual((status.fetched, status.error), (None, "connection refused"))
        self.assertIsNone(self.feed.calendar())

    def test_on_demand_fetch_runs_once_while_one_is_running(self) -> None:
        """The page's button while the timer's fetch runs waits for that one."""
        self.started()
        first = self.feed.refresh()
        self.assertEqual(len(self.fetch.calls), 1)
        self.assertNoResult(first)
        self.fetch.answer(calendar("2027-01-01"))
        self.assertEqual(self.successResultOf(first).events, 1)
        second = self.feed.refresh()
        self.assertEqual(len(self.fetch.calls), 2)
        self.fetch.fail("timed out")
        self.assertEqual(self.successResultOf(second).error, "timed out")

    def test_a_new_url_drops_the_old_copy_and_is_fetched_at_once(self) -> None:
        self.started()
        self.fetch.answer(calendar("2027-01-01"))
        self.settings.set(keys.HOLIDAY_ICAL_URL, "http://intranet.example/holidays.ics")
        self.assertIsNone(self.feed.calendar())  # another calendar's copy
        self.assertEqual(self.feed.status().fetched, None)
        self.clock.advance(0)
        self.assertEqual(self.fetch.calls[-1][0], "http://intranet.example/holidays.ics")
        self.fetch.answer(calendar("2027-10-03"))
        copy = self.feed.calendar()
        assert copy is not None and copy.covers(date(2027, 10, 3))

    def test_restart_keeps_the_copy_and_waits_for_the_interval(self) -> None:
        """After a restart the stored copy applies at once; the next fetch is due
        an interval after the last one."""
        self.started()
        self.fetch.answer(calendar("2027-01-01"))
        self.feed.stopService()
        self.clock.advance(600)
        again = HolidayFeed(self.store, self.settings, self.fetch, self.clock)
        again.startService()
        self.addCleanup(again.stopService)
        self.assertIsNotNone(again.calendar())
        self.clock.advance(3600 - 600 - 1)
        self.assertEqual(len(self.fetch.calls), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.fetch.calls), 2)

    def test_no_url_no_fetch(self) -> None:
        self.settings.set(keys.HOLIDAY_ICAL_URL, "")
        self.started()
        self.clock.advance(7200)
        self.assertEqual(self.fetch.calls, [])
        self.assertIsNone(self.feed.calendar())
        self.assertEqual(self.feed.status().url, "")

    def test_stopping_cancels_a_running_fetch_without_an_error(self) -> None:
        self.started()
        self.feed.stopService()
        self.assertEqual(self.feed.status().error, "")
        self.assertTrue(self.fetch.calls[0][1].called)

    def test_url_changed_while_a_fetch_runs(self) -> None:
        """The old URL's answer is not kept as the new URL's copy; the new URL is
        fetched as soon as the old fetch ends."""
        self.started()
        self.settings.set(keys.HOLIDAY_ICAL_URL, "http://intranet.example/new.ics")
        self.clock.advance(0)
        self.assertEqual(len(self.fetch.calls), 1)  # one fetch at a time
        self.fetch.calls[0][1].callback(calendar("2027-01-01"))
        self.assertIsNone(self.feed.calendar())
        self.clock.advance(0)
        self.assertEqual(self.fetch.calls[-1][0], "http://intranet.example/new.ics")
        self.fetch.answer(calendar("2027-10-03"))
        copy = self.feed.calendar()
        assert copy is not None and copy.covers(date(2027, 10, 3))

    def test_only_http_and_https_urls_are_accepted(self) -> None:
        for bad in ("ftp://x.example/a.ics", "file:///etc/passwd", "holidays.ics", "http://"):
            with self.assertRaises(InvalidSetting):
                self.settings.set(keys.HOLIDAY_ICAL_URL, bad)
        self.settings.set(keys.HOLIDAY_ICAL_URL, "HTTP://Host.example:8080/a.ics?x=1")


class SharedHolidaysInSchedulesTests(SynchronousTestCase):
    def test_a_schedule_follows_the_shared_calendar_only_when_asked(self) -> None:
        shared = HolidayCalendar.parse(calendar("2027-01-01").decode())
        office = {"windows": [{"days": ["fri"], "start": "08:00", "end": "17:00"}]}
        at = datetime(2027, 1, 1, 10, 0)  # a Friday
        following = Schedule.from_json({**office, "shared_holidays": True})
        plain = Schedule.from_json(office)
        self.assertFalse(following.active(at, shared))
        self.assertTrue(following.active(at, None))  # no calendar fetched yet
        self.assertTrue(plain.active(at, shared))
        self.assertTrue(
            Schedule.from_json({**office, "shared_holidays": True, "on_holidays": "active"}).active(
                datetime(2027, 1, 1, 20, 0), shared
            )
        )
        self.assertEqual(following.to_json()["shared_holidays"], True)
        self.assertEqual(Schedule.from_json(following.to_json()), following)
        with self.assertRaises(ScheduleError):
            Schedule.from_json({"shared_holidays": "yes"})


def test_admin_page_shows_the_state_and_fetches_on_demand() -> None:
    """The admin page: URL and interval saved through the settings' checks (a bad
    URL is named, nothing changes); the last try's error is shown escaped beside
    the time of the kept copy; "fetch now" runs a fetch and shows its outcome;
    users are not let in."""
    from appliance.web.pages.holidays import HolidayPages
    from tests.unit.test_web import make_lab

    lab = make_lab()
    fetch = HandFetch()
    feed = HolidayFeed(lab.store, lab.settings, fetch, lab.clock)
    lab.web.add(HolidayPages(feed, lab.settings))
    admin = lab.browser()
    assert admin.login("admin", "admin-secret").code == 303
    assert "No calendar URL set" in admin.get("/admin/holidays").text

    csrf = admin.csrf("/admin/holidays")
    refused = admin.post("/admin/holidays", {"csrf": csrf, "url": "file:///etc/passwd", "refresh": "60"})
    assert refused.code == 400 and "HOLIDAY_ICAL_URL" in refused.text
    assert lab.settings.get(keys.HOLIDAY_ICAL_URL) == ""
    saved = admin.post("/admin/holidays", {"csrf": csrf, "url": URL, "refresh": "30"})
    assert saved.code == 303
    assert (lab.settings.get(keys.HOLIDAY_ICAL_URL), lab.settings.get(keys.HOLIDAY_ICAL_REFRESH)) == (URL, 30)

    fetch.ready = [calendar("2027-01-01"), FeedError("HTTP 503 <b>down</b>")]
    fetched = admin.post("/admin/holidays/fetch", {"csrf": csrf})
    assert (fetched.code, fetched.header("location")) == (303, "/admin/holidays?done=fetched")
    page = admin.get("/admin/holidays?done=fetched").text
    assert "Fetched." in page and 'id="holiday-error">none<' in page
    lab.clock.advance(60)
    failed = admin.post("/admin/holidays/fetch", {"csrf": csrf})
    assert failed.header("location") == "/admin/holidays?done=failed"
    assert len(fetch.calls) == 2
    page = admin.get("/admin/holidays").text
    assert "HTTP 503 &lt;b&gt;down&lt;/b&gt;" in page and "<b>down" not in page
    assert 'id="holiday-events">1<' in page

    user = lab.browser()
    assert user.login("100", "anna-secret").code == 303
    assert user.get("/admin/holidays").code in (403, 404)
