"""Log lines for the systemd journal, which stamps each line itself.

twistd's own format starts every line with a timestamp, so the journal showed
two.  These lines carry none; instead each starts with the syslog priority in
journald's ``<N>`` form (``SyslogLevelPrefix``), so warnings and errors are
marked as such in ``journalctl -p``.  The unit selects it with
``--logger=appliance.journal.observer``.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import FileLogObserver, LogEvent, LogLevel, eventAsText

PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}
"""syslog priorities (debug 7 … crit 2) of Twisted's log levels."""


def journal_lines(event: LogEvent) -> str | None:
    """``<priority>[system] message``, one prefixed line per line of text (tracebacks too)."""
    text = eventAsText(event, includeTimestamp=False)
    if not text:
        return None
    priority = PRIORITIES.get(event.get("log_level", LogLevel.info), 6)
    return "".join(f"<{priority}>{line}\n" for line in text.splitlines())


def observer(out: IO[str] | None = None) -> FileLogObserver:
    """twistd's ``--logger`` factory: journal lines on standard output."""
    return FileLogObserver(out if out is not None else sys.stdout, journal_lines)
