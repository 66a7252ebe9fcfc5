"""Forward schedules: pure windows/holidays on given moments, and the
forwarding that honours them on an injected clock."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.dialplan import Call
from appliance.directory import Directory, User
from appliance.forwarding.records import Forward, Forwards
from appliance.forwarding.schedule import Schedule, ScheduleError
from appliance.forwarding.scheduled import ScheduledForwarding, Schedules
from appliance.settings import Settings
from appliance.testing import MemoryStore

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:30"}]}
ICAL = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//holidays//DE
BEGIN:VEVENT
UID:xmas@test
DTSTART;VALUE=DATE:20241224
DTEND;VALUE=DATE:20241227
RRULE:FREQ=YEARLY
EXDATE;VALUE=DATE:20261224
SUMMARY:Weihnachten
END:VEVENT
BEGIN:VEVENT
UID:once@test
DTSTART;VALUE=DATE:20260501
SUMMARY:Tag der Arbeit
END:VEVENT
END:VCALENDAR
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


class ScheduleTests(SynchronousTestCase):
    def test_weekly_window(self) -> None:
        """Office hours: Monday to Friday 08:00 to 17:30, end excluded."""
        office = Schedule.from_json(OFFICE)
        self.assertTrue(office.active(at("2026-12-01T08:00")))  # a Tuesday
        self.assertTrue(office.active(at("2026-12-01T17:29")))
        self.assertFalse(office.active(at("2026-12-01T17:30")))
        self.assertFalse(office.active(at("2026-12-01T07:59")))
        self.assertFalse(office.active(at("2026-12-05T10:00")))  # Saturday

    def test_window_over_midnight_belongs_to_its_start_day(self) -> None:
        """Friday 18:00 to 07:00 covers Friday evening and Saturday morning only."""
        night = Schedule.from_json({"windows": [{"days": ["fri"], "start": "18:00", "end": "07:00"}]})
        self.assertTrue(night.active(at("2026-12-04T23:00")))
        self.assertTrue(night.active(at("2026-12-05T06:59")))
        self.assertFalse(night.active(at("2026-12-05T07:00")))
        self.assertFalse(night.active(at("2026-12-04T06:00")))  # Friday morning: Thursday not listed

    def test_holidays_from_dates_and_icalendar(self) -> None:
        """Listed dates and the calendar's days (recurring, multi-day, EXDATE) are holidays."""
        schedule = Schedule.from_json({**OFFICE, "holidays": ["2026-12-31"], "ical": ICAL})
        for day in ("2026-12-31", "2025-12-24", "2025-12-26", "2024-12-25", "2026-05-01"):
            self.assertTrue(schedule.is_holiday(date.fromisoformat(day)), day)
        # EXDATE takes out the whole 2026 occurrence; none before DTSTART
        for day in ("2026-12-24", "2026-12-25", "2025-12-27", "2026-05-02", "2023-12-24"):
            self.assertFalse(schedule.is_holiday(date.fromisoformat(day)), day)
        self.assertFalse(schedule.active(at("2026-12-31T10:00")))  # a Thursday, but a holiday

    def test_office_closed_forward_is_active_on_holidays(self) -> None:
        closed = Schedule.from_json(
            {
                "windows": [{"days": ["sat", "sun"], "start": "00:00", "end": "23:59"}],
                "holidays": ["2026-12-31"],
                "on_holidays": "active",
            }
        )
        self.assertTrue(closed.active(at("2026-12-31T10:00")))
        self.assertFalse(closed.active(at("2026-12-30T10:00")))
        self.assertTrue(closed.active(at("2026-12-05T10:00")))

    def test_end_of_day(self) -> None:
        """An end of 24:00 runs to midnight and survives a round trip."""
        weekend = Schedule.from_json(
            {"windows": [{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"}]}
        )
        self.assertTrue(weekend.active(at("2026-12-05T23:59:59")))
        self.assertTrue(weekend.active(at("2026-12-05T00:00")))
        self.assertFalse(weekend.active(at("2026-12-07T00:00")))
        self.assertEqual(weekend.to_json()["windows"][0]["end"], "24:00")
        self.assertEqual(Schedule.from_json(weekend.to_json()), weekend)

    def test_bad_schedules_name_the_field(self) -> None:
        cases: dict[str, dict[str, Any]] = {
            "window 1: start": {"windows": [{"start": "8:00", "end": "17:00"}]},
            "window 1: days": {"windows": [{"days": ["monday"], "start": "08:00", "end": "17:00"}]},
            "must differ": {"windows": [{"start": "08:00", "end": "08:00"}]},
            "holidays": {"holidays": ["31.12.2026"]},
            "on_holidays": {"on_holidays": "sometimes"},
            "ical": {"ical": "not a calendar"},
            "unknown fields": {"window": []},
        }
        for expected, record in cases.items():
            with self.assertRaises(ScheduleError) as caught:
                Schedule.from_json(record)
            self.assertIn(expected, str(caught.exception))

    def test_round_trip(self) -> None:
        schedule = Schedule.from_json(
            {**OFFICE, "holidays": ["2026-12-31"], "ical": ICAL, "on_holidays": "active"}
        )
        self.assertEqual(Schedule.from_json(schedule.to_json()), schedule)


class ScheduledForwardingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.directory = Directory(self.store)
        for ext in ("100", "200", "300"):
            self.directory.put_user(User(ext, f"User {ext}"))
        self.forwards = Forwards(self.store)
        self.schedules = Schedules(self.store)
        self.forwarding = ScheduledForwarding(
            self.forwards,
            Settings(self.store),
            self.directory,
            schedules=self.schedules,
            clock=self.clock,
            zone=BERLIN,
        )
        self.forwards.set("200", Forward("unconditional", "300"))
        self.forwards.set("200", Forward("busy", "100"))

    def routed(self) -> list[str]:
        call = Call("200", "internal", "100", "User 100", "PJSIP/100-00000001", "u1")
        return sorted(f.kind for f in self.forwarding.context(call).forwards("200"))

    def test_forward_follows_its_schedule_on_the_clock(self) -> None:
        """Inside office hours the unconditional forward applies; outside only the
        unscheduled busy forward; the page's list keeps both."""
        self.schedules.set("200", "unconditional", "all", OFFICE)
        self.clock.advance(at("2026-12-01T09:00").timestamp())
        self.assertEqual(self.routed(), ["busy", "unconditional"])
        self.clock.advance(9 * 3600)  # 18:00
        self.assertEqual(self.routed(), ["busy"])
        self.assertEqual(len(self.forwards.of("200")), 2)

    def test_time_zone_from_config(self) -> None:
        """08:30 in Berlin is 07:30 UTC: inside office hours."""
        self.schedules.set("200", "unconditional", "all", OFFICE)
        self.clock.advance(datetime.fromisoformat("2026-12-01T07:30+00:00").timestamp())
        self.assertIn("unconditional", self.routed())

    def test_bad_schedule_is_refused_whole(self) -> None:
        self.schedules.set("200", "unconditional", "all", OFFICE)
        with self.assertRaises(ScheduleError):
            self.schedules.set("200", "unconditional", "all", {"windows": "always"})
        self.assertEqual(self.schedules.of("200")["unconditional/all"], Schedule.from_json(OFFICE))
        self.schedules.clear("200", "unconditional", "all")
        self.assertEqual(self.schedules.of("200"), {})
