"""Schedules of forwards in the store, and the forwarding that honours them.

Store namespace ``forward_schedules``: key the user's extension, value an
object ``{"<kind>/<scope>": <schedule>}``, one schedule per forward.  A
forward without a schedule always applies, as before.  `ScheduledForwarding`
is `Forwarding` whose calls see only the forwards active now, in the time
zone from config.ini; the pages, the API and the feature codes still see
every forward as set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from appliance.dialplan import Call
from appliance.forwarding.records import KINDS, SCOPES, Forward
from appliance.forwarding.rules import Context
from appliance.forwarding.schedule import HolidayCalendar, Schedule, ScheduleError
from appliance.forwarding.service import Forwarding
from appliance.numbers import EXTENSION
from appliance.store import IKeyValueStore, StoreChange, moved

log = Logger()

NAMESPACE = "forward_schedules"


def slot(kind: str, scope: str) -> str:
    return f"{kind}/{scope}"


class Schedules:
    """Read and write schedules; parsed schedules are cached by their stored form."""

    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store
        self._parsed: dict[str, Schedule | None] = {}

    def of(self, extension: str) -> dict[str, Schedule]:
        raw = self.store.get(NAMESPACE, extension) if EXTENSION.match(extension) else None
        if not isinstance(raw, dict):
            return {}
        found = {}
        for key, record in raw.items():
            schedule = self._parse(extension, key, record)
            if schedule is not None:
                found[key] = schedule
        return found

    def set(self, extension: str, kind: str, scope: str, record: Any) -> Schedule:
        """Check and store ``record`` for the forward (kind, scope); `ScheduleError` if bad."""
        if not EXTENSION.match(extension):
            raise ScheduleError(f"extension: {extension!r} is not 2 to 8 digits")
        if kind not in KINDS or scope not in SCOPES:
            raise ScheduleError(f"forward: {kind!r}/{scope!r} is not a kind and scope")
        schedule = Schedule.from_json(record)
        raw = self.store.get(NAMESPACE, extension)
        current = dict(raw) if isinstance(raw, dict) else {}
        current[slot(kind, scope)] = schedule.to_json()
        self.store.put(NAMESPACE, extension, current)
        return schedule

    def moved(self, old: str, new: str | None) -> list[StoreChange]:
        """Store changes that carry ``old``'s schedules to ``new`` (None: drop them),
        beside `Forwards.moved`."""
        return moved(self.store, NAMESPACE, old, new)

    def clear(self, extension: str, kind: str, scope: str) -> None:
        raw = self.store.get(NAMESPACE, extension) if EXTENSION.match(extension) else None
        if not isinstance(raw, dict) or slot(kind, scope) not in raw:
            return
        rest = {key: value for key, value in raw.items() if key != slot(kind, scope)}
        if rest:
            self.store.put(NAMESPACE, extension, rest)
        else:
            self.store.delete(NAMESPACE, extension)

    def _parse(self, extension: str, key: str, record: Any) -> Schedule | None:
        cache_key = json.dumps([key, record], sort_keys=True)
        if cache_key not in self._parsed:
            try:
                self._parsed[cache_key] = Schedule.from_json(record)
            except ScheduleError as error:
                log.warn(
                    "ignoring stored schedule {key} of {ext}: {error}", key=key, ext=extension, error=error
                )
                self._parsed[cache_key] = None
            if len(self._parsed) > 1000:
                self._parsed.clear()
        return self._parsed[cache_key]


class ScheduledForwarding(Forwarding):
    """`Forwarding` whose call routing skips forwards outside their schedule."""

    def __init__(
        self,
        *args: Any,
        schedules: Schedules,
        clock: IReactorTime,
        zone: tzinfo | None,
        shared_holidays: Callable[[], HolidayCalendar | None] = lambda: None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.schedules = schedules
        self.clock = clock
        self.zone = zone
        self.shared_holidays = shared_holidays
        """The appliance's holiday calendar (the kept copy from its URL), if any."""

    def now(self) -> datetime:
        """The appliance's local time (config time zone; None: the system's)."""
        moment = datetime.fromtimestamp(self.clock.seconds(), tz=self.zone)
        return moment if self.zone is not None else moment.astimezone()

    def active_forwards(self, extension: str) -> list[Forward]:
        forwards = self.forwards.of(extension)
        schedules = self.schedules.of(extension) if forwards else {}
        if not schedules:
            return forwards
        now = self.now()
        shared = self.shared_holidays()
        return [
            f
            for f in forwards
            if (s := schedules.get(slot(f.kind, f.scope))) is None or s.active(now, shared)
        ]

    def context(self, call: Call, blind_transfer: bool = False) -> Context:
        return replace(super().context(call, blind_transfer), forwards=self.active_forwards)
