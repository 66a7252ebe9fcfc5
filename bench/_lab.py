"""The lab and an in-process appliance for the benchmarks that place real calls."""

from __future__ import annotations

import fcntl
import struct
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.protocol import DatagramProtocol

REPO = Path(__file__).resolve().parents[1]


@defer.inlineCallbacks
def lab_and_appliance(reactor: Any, instance: str, prefix: str) -> Any:
    """Start (or reuse) lab ``instance`` and an appliance synced with it: (lab, appliance)."""
    from appliance import tap
    from appliance.lab import Lab, LabPorts
    from tests.e2e.conftest import appliance_config
    from tests.e2e.waiting import wait_synced

    lab = Lab(instance=instance, ports=LabPorts.for_instance(instance))
    lab.build()
    if not lab.is_running():
        lab.configure(REPO / "asterisk" / "appliance.conf")
        lab.start()
    appliance = tap.build(str(appliance_config(Path(tempfile.mkdtemp(prefix=prefix)), lab)), reactor)
    appliance.startService()
    yield wait_synced(reactor, appliance)
    return lab, appliance


def sip_headers(text: str, *names: str) -> list[str]:
    """The lines of a SIP message whose header name is one of ``names``."""
    wanted = tuple(name.lower() + ":" for name in names)
    return [line for line in text.split("\r\n") if line.lower().startswith(wanted)]


SIOCGSTAMPNS = 0x8907
"""Linux ioctl: the kernel's receive time of the last datagram read from a socket."""


def kernel_arrival(sock: Any) -> float | None:
    """When the datagram just read reached ``sock`` (time.time() scale), or None.

    The first call on a socket only switches the kernel's stamping on."""
    try:
        seconds, nanoseconds = struct.unpack("@qq", fcntl.ioctl(sock, SIOCGSTAMPNS, bytes(16)))
    except OSError:
        return None
    return seconds + nanoseconds / 1e9


class RefusingPhone(DatagramProtocol):
    """A phone that notes when each INVITE arrives and refuses it with ``status``,
    so a benchmark measures signalling alone.  The arrival is the kernel's
    receive time, not when this process got round to reading it: the process
    runs the appliance too, whose work after the Originate must not count."""

    def startProtocol(self) -> None:
        assert self.transport is not None
        kernel_arrival(ISystemHandle(self.transport).getHandle())

    def __init__(self, clock: Any, status: str, tag: str) -> None:
        self.clock = clock
        self.status = status
        self.tag = tag
        self.waiting: defer.Deferred[float] | None = None

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        text = data.decode(errors="replace")
        if not text.startswith("INVITE "):
            return
        assert self.transport is not None
        arrived = kernel_arrival(ISystemHandle(self.transport).getHandle()) or self.clock.seconds()
        headers = [
            h + f";tag={self.tag}" if h.lower().startswith("to:") and "tag=" not in h else h
            for h in sip_headers(text, "via", "from", "to", "call-id", "cseq")
        ]
        reply = f"SIP/2.0 {self.status}\r\n" + "\r\n".join(headers) + "\r\nContent-Length: 0\r\n\r\n"
        assert self.transport is not None
        self.transport.write(reply.encode(), addr)
        if self.waiting is not None and not self.waiting.called:
            self.waiting.callback(arrived)
