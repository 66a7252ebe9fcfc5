"""Readiness for systemd (``Type=notify``): ``systemctl start``, apt's postinst
and the admin see the unit active only once FastAGI and the page listen, and a
start-up that fails before that fails the start job itself.

The protocol is one datagram to ``$NOTIFY_SOCKET`` (sd_notify(3)); without
that variable (tests, a shell, twistd outside systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

log = Logger()


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd; False when not run by it."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as error:
        log.warn("systemd notification {notification!r} failed: {error}", notification=message, error=error)
        return False
    return True


class ReadyNotifier(Service):
    """Added after every listening service: by the time the reactor runs, those
    were started (their ports bound at start-up, or start-up stopped)."""

    def __init__(self, reactor: Any, send: Callable[[str], bool] = notify) -> None:
        self.reactor = reactor
        self.send = send

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self.send, "READY=1\nSTATUS=serving")

    def stopService(self) -> Any:
        self.send("STOPPING=1")
        return super().stopService()
