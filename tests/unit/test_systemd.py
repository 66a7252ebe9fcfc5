"""Readiness notification to systemd, over a real Unix datagram socket."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from appliance.systemd import ReadyNotifier, notify


class RunningReactor:
    """callWhenRunning of a reactor that is running: at once."""

    def callWhenRunning(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)


class NotifyTests(SynchronousTestCase):
    def scratch(self) -> Path:
        """A directory of its own, removed afterwards (trial's mktemp would leave
        directories in the checkout under pytest)."""
        made = Path(tempfile.mkdtemp(prefix="appliance-systemd-"))
        self.addCleanup(shutil.rmtree, made, True)
        return made

    def listen(self, address: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.settimeout(5)
        self.addCleanup(sock.close)
        return sock

    def test_ready_and_stopping_reach_the_socket(self) -> None:
        """READY=1 once the reactor runs; STOPPING=1 when the service stops."""
        path = str(self.scratch() / "notify")
        systemd = self.listen(path)
        sent: list[str] = []

        def send(message: str) -> bool:
            sent.append(message)
            return notify(message, {"NOTIFY_SOCKET": path})

        notifier = ReadyNotifier(RunningReactor(), send)
        notifier.startService()
        self.assertEqual(systemd.recv(100), b"READY=1\nSTATUS=serving")
        notifier.stopService()
        self.assertEqual(systemd.recv(100), b"STOPPING=1")
        self.assertEqual(sent, ["READY=1\nSTATUS=serving", "STOPPING=1"])

    def test_abstract_socket(self) -> None:
        """``@name`` is the abstract namespace, as systemd passes it for some units."""
        name = f"appliance-test-{id(self)}"
        systemd = self.listen("\0" + name)
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(systemd.recv(100), b"READY=1")

    def test_outside_systemd_nothing_is_sent(self) -> None:
        """No NOTIFY_SOCKET: no notification, no error."""
        self.assertFalse(notify("READY=1", {}))

    def test_gone_socket_is_logged_not_raised(self) -> None:
        """A socket that went away (systemd restarted) loses the notification, not the service."""
        missing = str(self.scratch() / "gone")
        with capturedLogs() as events:
            self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": missing}))
        [event] = events
        self.assertIs(event["log_level"], LogLevel.warn)
        self.assertIn("READY=1", formatEvent(event))
