"""Ports for a lab instance's test tools, handed out in blocks that cannot collide.

A port found free by binding port 0 lies in the kernel's ephemeral range, where
any process's next outgoing socket may take it before sipp binds it, and sipp
binds more than the one port it is given (media +2 for video, RTCP beside each,
a control socket at 8888 and up).  So each lab instance reserves a range below
the ephemeral range (`LabPorts.tools_start`..`tools_end`), and this module hands
out blocks of it: one block per sipp run, mail sink or web server, never one that
is still in use in this process.  Suites side by side use other instances, whose
ranges are disjoint.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from appliance.lab import LabPorts

BLOCK = 8
"""Ports per block: SIP, sipp's control socket, two TCP ports, four media ports."""

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


class PortPlanError(Exception):
    """The reserved range cannot serve: it overlaps the ephemeral range, or is used up."""


@dataclass(frozen=True)
class PortBlock:
    """``BLOCK`` consecutive ports, for UDP and TCP alike."""

    start: int

    @property
    def sip(self) -> int:
        return self.start

    @property
    def control(self) -> int:
        """sipp's control socket (``-cp``), which would otherwise search from 8888."""
        return self.start + 1

    @property
    def tcp(self) -> tuple[int, int]:
        """Two ports for a TCP server (a mail sink, a web page) or a port nobody listens on."""
        return (self.start + 2, self.start + 3)

    @property
    def media(self) -> int:
        """sipp's ``-mp``: audio RTP and RTCP here and +1, video RTP and RTCP at +2 and +3."""
        return self.start + 4

    def ports(self) -> range:
        return range(self.start, self.start + BLOCK)


def ephemeral_range(path: Path = EPHEMERAL) -> range:
    """The ports the kernel picks for sockets bound to port 0 or connected unbound."""
    low, high = (int(part) for part in path.read_text().split())
    return range(low, high + 1)


class PortBlocks:
    """The blocks of one reserved range: taken oldest-released first, so a port is
    not reused while stray packets of its last call may still arrive."""

    _by_range: dict[tuple[int, int], PortBlocks] = {}
    _by_range_lock = threading.Lock()

    def __init__(self, start: int, end: int, ephemeral: range | None = None) -> None:
        ephemeral = ephemeral_range() if ephemeral is None else ephemeral
        if start <= 1024 or end < start + BLOCK - 1:
            raise PortPlanError(f"ports {start}-{end} hold no block of {BLOCK} unprivileged ports")
        if start <= ephemeral[-1] and ephemeral[0] <= end:
            raise PortPlanError(
                f"test ports {start}-{end} overlap the kernel's ephemeral ports "
                f"{ephemeral[0]}-{ephemeral[-1]} ({EPHEMERAL}): another socket could take them"
            )
        self.range = range(start, end + 1)
        self._free = deque(PortBlock(first) for first in range(start, end + 2 - BLOCK, BLOCK))
        self._taken: set[PortBlock] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_lab(cls, ports: LabPorts) -> PortBlocks:
        """The one allocator of this process for that instance's range."""
        key = (ports.tools_start, ports.tools_end)
        with cls._by_range_lock:
            if key not in cls._by_range:
                cls._by_range[key] = cls(*key)
            return cls._by_range[key]

    def take(self) -> PortBlock:
        with self._lock:
            if not self._free:
                raise PortPlanError(
                    f"all {len(self._taken)} port blocks of {self.range[0]}-{self.range[-1]} are in use"
                )
            block = self._free.popleft()
            self._taken.add(block)
            return block

    def release(self, block: PortBlock) -> None:
        with self._lock:
            if block not in self._taken:
                raise PortPlanError(f"port block {block.start} was not taken")
            self._taken.remove(block)
            self._free.append(block)

    def in_use(self) -> frozenset[PortBlock]:
        with self._lock:
            return frozenset(self._taken)
