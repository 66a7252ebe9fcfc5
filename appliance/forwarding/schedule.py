"""Forwards on a schedule: weekly windows (days, times) and holidays (dates,
an iCalendar calendar, and/or the appliance's shared holiday calendar), pure functions of a local moment.

A forward with a schedule applies only while `Schedule.active` says so: on a
holiday as ``on_holidays`` says (``active``: e.g. "office closed" forwards;
``inactive``: e.g. "forward to my mobile during office hours"; ``ignore``),
otherwise inside any of its windows (no windows: every day, all day).  A
window whose end is not after its start runs over midnight into the next day.
An end of ``24:00`` is the end of the day.  The caller passes the moment
already in the appliance's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ON_HOLIDAYS = ("inactive", "active", "ignore")
MAX_ICAL = 256 * 1024
MAX_WINDOWS = 28
MAX_HOLIDAYS = 366
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class ScheduleError(ValueError):
    """A schedule that cannot be stored, and why."""


@dataclass(frozen=True)
class Window:
    """From ``start`` to ``end`` on each of ``days`` (0 = Monday)."""

    days: frozenset[int]
    start: time
    end: time

    def contains(self, at: datetime) -> bool:
        now = at.time().replace(tzinfo=None)
        today = at.weekday()
        if self.start < self.end:
            return today in self.days and self.start <= now < self.end
        yesterday = (today - 1) % 7
        return (today in self.days and now >= self.start) or (yesterday in self.days and now < self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "end": "24:00" if self.end == time.max else self.end.strftime("%H:%M"),
        }


@dataclass(frozen=True)
class HolidayCalendar:
    """The days an iCalendar calendar's events cover, recurring ones included."""

    text: str
    _events: tuple[tuple[date, int, Any, frozenset[date]], ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> HolidayCalendar:
        from dateutil.rrule import rrulestr
        from icalendar import Calendar

        if len(text.encode("utf-8")) > MAX_ICAL:
            raise ScheduleError(f"ical: larger than {MAX_ICAL // 1024} KiB")
        try:
            calendar = Calendar.from_ical(text)
        except ValueError as error:
            raise ScheduleError(f"ical: not an iCalendar calendar: {error}") from None
        events = []
        for event in calendar.walk("VEVENT"):
            try:
                start = _day(event.decoded("DTSTART"))
                end = _day(event.decoded("DTEND")) if "DTEND" in event else start + timedelta(days=1)
                span = max(1, (end - start).days)
                rule = None
                if "RRULE" in event:
                    rule_ical = event["RRULE"].to_ical()
                    rule_text = rule_ical.decode("ascii") if isinstance(rule_ical, bytes) else str(rule_ical)
                    rule = rrulestr(rule_text, dtstart=datetime.combine(start, time()), ignoretz=True)
                excluded = frozenset(_exdates(event.get("EXDATE")))
            except (KeyError, ValueError, TypeError) as error:
                raise ScheduleError(f"ical: an event cannot be read: {error}") from None
            events.append((start, span, rule, excluded))
        return cls(text, tuple(events))

    @property
    def events(self) -> int:
        return len(self._events)

    def covers(self, day: date) -> bool:
        for start, span, rule, excluded in self._events:
            if rule is None:
                if start <= day < start + timedelta(days=span):
                    return True
                continue
            earliest = datetime.combine(day - timedelta(days=span - 1), time())
            latest = datetime.combine(day, time())
            for occurrence in rule.between(earliest, latest, inc=True):
                if occurrence.date() not in excluded:
                    return True
        return False


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...] = ()
    holidays: frozenset[date] = frozenset()
    calendar: HolidayCalendar | None = None
    on_holidays: str = "inactive"
    shared_holidays: bool = False
    """Also the appliance's holiday calendar (`appliance.forwarding.holidayfeed`)."""

    def is_holiday(self, day: date, shared: HolidayCalendar | None = None) -> bool:
        return (
            day in self.holidays
            or (self.calendar is not None and self.calendar.covers(day))
            or (self.shared_holidays and shared is not None and shared.covers(day))
        )

    def active(self, at: datetime, shared: HolidayCalendar | None = None) -> bool:
        """Does a forward with this schedule apply at the local moment ``at``?
        ``shared`` is the appliance's holiday calendar, if it has one."""
        if self.on_holidays != "ignore" and self.is_holiday(at.date(), shared):
            return self.on_holidays == "active"
        return not self.windows or any(window.contains(at) for window in self.windows)

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": [w.to_json() for w in self.windows],
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "ical": self.calendar.text if self.calendar else "",
            "on_holidays": self.on_holidays,
            "shared_holidays": self.shared_holidays,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Schedule:
        """Check every field; the first problem raises `ScheduleError` naming it."""
        if not isinstance(record, Mapping):
            raise ScheduleError("schedule: must be an object")
        unknown = set(record) - {"windows", "holidays", "ical", "on_holidays", "shared_holidays"}
        if unknown:
            raise ScheduleError("schedule: unknown fields " + ", ".join(sorted(unknown)))
        windows = record.get("windows", [])
        holidays = record.get("holidays", [])
        if not isinstance(windows, list) or len(windows) > MAX_WINDOWS:
            raise ScheduleError(f"windows: a list of at most {MAX_WINDOWS}")
        if not isinstance(holidays, list) or len(holidays) > MAX_HOLIDAYS:
            raise ScheduleError(f"holidays: a list of at most {MAX_HOLIDAYS} dates")
        on_holidays = record.get("on_holidays", "inactive")
        if on_holidays not in ON_HOLIDAYS:
            raise ScheduleError("on_holidays: one of " + ", ".join(ON_HOLIDAYS))
        ical = record.get("ical", "")
        if not isinstance(ical, str):
            raise ScheduleError("ical: the text of an iCalendar file")
        shared = record.get("shared_holidays", False)
        if not isinstance(shared, bool):
            raise ScheduleError("shared_holidays: true or false (the appliance's holiday calendar)")
        return cls(
            windows=tuple(_window(w, n) for n, w in enumerate(windows, 1)),
            holidays=frozenset(_date(d) for d in holidays),
            calendar=HolidayCalendar.parse(ical) if ical.strip() else None,
            on_holidays=on_holidays,
            shared_holidays=shared,
        )


def _window(raw: Any, number: int) -> Window:
    where = f"window {number}"
    if not isinstance(raw, Mapping):
        raise ScheduleError(f"{where}: must be an object with days, start, end")
    days = raw.get("days", list(DAYS))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise ScheduleError(f"{where}: days: a non-empty list of " + ", ".join(DAYS))
    start = _clock(raw.get("start"), f"{where}: start")
    end = time.max if raw.get("end") == "24:00" else _clock(raw.get("end"), f"{where}: end")
    if start == end:
        raise ScheduleError(f"{where}: start and end must differ (no windows: all day)")
    return Window(frozenset(DAYS.index(d) for d in days), start, end)


def _clock(raw: Any, where: str) -> time:
    found = _TIME.match(raw) if isinstance(raw, str) else None
    if not found:
        raise ScheduleError(f"{where}: {raw!r} is not a time HH:MM")
    return time(int(found.group(1)), int(found.group(2)))


def _date(raw: Any) -> date:
    try:
        return date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else _bad_date(raw)
    except ValueError:
        return _bad_date(raw)


def _bad_date(raw: Any) -> date:
    raise ScheduleError(f"holidays: {raw!r} is not a date YYYY-MM-DD")


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def _exdates(raw: Any) -> Iterable[date]:
    if raw is None:
        return
    for entry in raw if isinstance(raw, list) else [raw]:
        for moment in entry.dts:
            yield _day(moment.dt)
