"""Journal log lines: no timestamp of their own, the syslog priority in front."""

from __future__ import annotations

import io

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appliance.journal import journal_lines, observer


class JournalLinesTests(SynchronousTestCase):
    def event(self, level: LogLevel, **extra: object) -> dict[str, object]:
        return {
            "log_format": "AMI {state}",
            "state": "connected",
            "log_level": level,
            "log_namespace": "appliance.ami",
            "log_time": 1_700_000_000.0,
            **extra,
        }

    def test_priority_and_system_without_timestamp(self) -> None:
        self.assertEqual(journal_lines(self.event(LogLevel.info)), "<6>[appliance.ami#info] AMI connected\n")
        self.assertEqual(
            journal_lines(self.event(LogLevel.error)), "<3>[appliance.ami#error] AMI connected\n"
        )
        self.assertEqual(journal_lines(self.event(LogLevel.warn))[:3], "<4>")  # type: ignore[index]

    def test_every_traceback_line_keeps_the_priority(self) -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            failure = Failure()
        lines = journal_lines(self.event(LogLevel.critical, log_failure=failure))
        assert lines is not None
        self.assertIn("ZeroDivisionError", lines)
        self.assertGreater(len(lines.splitlines()), 2)
        for line in lines.splitlines():
            self.assertTrue(line.startswith("<2>"), line)
            self.assertNotIn("2023-11", line)

    def test_empty_event_writes_nothing(self) -> None:
        out = io.StringIO()
        observer(out)({"log_level": LogLevel.info})
        self.assertEqual(out.getvalue(), "")

    def test_observer_writes_to_the_given_file(self) -> None:
        out = io.StringIO()
        observer(out)(self.event(LogLevel.info))
        self.assertEqual(out.getvalue(), "<6>[appliance.ami#info] AMI connected\n")
