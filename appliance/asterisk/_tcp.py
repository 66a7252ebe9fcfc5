"""TCP options that keep the request/reply exchanges with Asterisk free of
Nagle/delayed-ACK stalls.

res_agi leaves Nagle's algorithm on for FastAGI sockets, so Asterisk holds a
small reply back while an earlier small line of its own (say C{HANGUP}) is
unacknowledged; Linux, seeing an interactive exchange, delays that ACK by
40 ms or more.  We therefore acknowledge at once after every read
(C{TCP_QUICKACK}, which Linux drops again by itself, hence after every read)
and send our own small writes without waiting for an ACK (C{TCP_NODELAY}).
A command or action also leaves at once (L{writeNow}) instead of when the
reactor next polls, after whatever else arrived in the meantime.
Transports without a TCP socket (tests' C{StringTransport}) are left alone.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.interfaces import IWriteDescriptor

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def _tcpSocket(transport: Any) -> socket.socket | None:
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if (
        isinstance(handle, socket.socket)
        and handle.family in (socket.AF_INET, socket.AF_INET6)
        and handle.type == socket.SOCK_STREAM
    ):
        return handle
    return None


def _setOption(transport: Any, option: int | None) -> None:
    sock = _tcpSocket(transport)
    if sock is None or option is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        pass  # closed under us: nothing left to speed up


def sendWithoutDelay(transport: Any) -> None:
    """Our small writes leave at once instead of waiting for the peer's ACK."""
    _setOption(transport, socket.TCP_NODELAY)


def acknowledgeNow(transport: Any) -> None:
    """Send the ACK for what was just read now, not after the delayed-ACK timer."""
    _setOption(transport, _QUICKACK)


def writeNow(transport: Any) -> None:
    """Hand what C{transport} buffered to the kernel now, not on the reactor's
    next turn.  Only while no producer is attached and no close is pending, where
    L{IWriteDescriptor.doWrite} just sends; an error it returns is left for
    the reactor, which meets it again on its own next write."""
    if (
        IWriteDescriptor.providedBy(transport)
        and _tcpSocket(transport) is not None
        and not getattr(transport, "disconnecting", True)
        and getattr(transport, "producer", None) is None
    ):
        transport.doWrite()
