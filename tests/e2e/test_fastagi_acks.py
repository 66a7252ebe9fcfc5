"""FastAGI sessions acknowledge what Asterisk sends at once (issue 19).

res_agi writes with Nagle's algorithm on: a small reply waits in Asterisk's
kernel while an earlier small line (``HANGUP``) is unacknowledged, and Linux
delays our ACK by 40 ms once the exchange looks interactive.  The checks
below are structural, read from the kernel's own counters of our socket
(``TCP_INFO``), never from a stopwatch: by the time a line is handed to the
route, a pure ACK for it has already left, so nothing of Asterisk's is
waiting for one.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.protocols.basic import LineOnlyReceiver

from appliance.asterisk.fastagi import FastAGIFactory

_TCP_INFO_SIZE = 160  # up to tcpi_data_segs_out (Linux >= 4.6)


def acks_and_bytes(sock: socket.socket) -> tuple[int, int]:
    """(pure ACKs sent, bytes received) on ``sock``, from the kernel's tcp_info."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _TCP_INFO_SIZE:
        pytest.fail(f"kernel tcp_info has {len(info)} bytes; segment counters need Linux >= 4.6")
    (bytes_received,) = struct.unpack_from("=Q", info, 128)
    (segs_out,) = struct.unpack_from("=I", info, 136)
    (data_segs_out,) = struct.unpack_from("=I", info, 156)
    return segs_out - data_segs_out, bytes_received


class ResAGI(LineOnlyReceiver):
    """Asterisk's side of one FastAGI session as res_agi writes it (Nagle on):
    the environment, then ``200 result=-1`` and ``HANGUP`` for the Dial, as
    when the far end hangs up a call."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"agi_network_script: probe\nagi_channel: PJSIP/200-00000001\n\n")

    def lineReceived(self, line: bytes) -> None:
        assert self.transport is not None
        if line.startswith(b"EXEC") and b"Dial" in line:
            self.transport.write(b"200 result=-1\nHANGUP\n")
        elif line.startswith(b"GET VARIABLE"):
            self.transport.write(b"200 result=1 (ANSWER)\n")
        else:
            self.transport.write(b"200 result=0\n")


@pytest_twisted.inlineCallbacks
def test_lines_are_acknowledged_before_the_route_sees_them(reactor: Any) -> Generator[Any, Any, None]:
    """On a real loopback session the Dial's result and the HANGUP behind it
    are acknowledged (a pure ACK left our socket) before the route runs on,
    and our socket sends without Nagle: Asterisk's reply to the next command
    has nothing to wait for."""
    seen: dict[str, Any] = {}
    finished: Deferred[Any] = Deferred()

    def route(agi: Any) -> Any:
        return probe(agi).addBoth(finished.callback)

    @inlineCallbacks
    def probe(agi: Any) -> Any:
        sock = agi.transport.getHandle()
        seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for _ in range(3):  # an interactive exchange: Linux now delays its ACKs
            yield agi.noop()
        before = acks_and_bytes(sock)  # the EXEC below will carry the ACK for all before it
        dialled = agi.exec_("Dial", "PJSIP/300,60,tT")
        agi.whenHungUp().addCallback(lambda _: seen.setdefault("at_hangup", acks_and_bytes(sock)))
        seen["result"] = yield dialled
        seen["at_result"] = acks_and_bytes(sock)
        seen["status"] = yield agi.getVariable("DIALSTATUS")
        seen["before"] = before

    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        FastAGIFactory({"probe": route}, reactor)
    )
    try:
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), ResAGI())
        outcome = yield finished
    finally:
        yield port.stopListening()

    assert outcome is None, outcome
    assert seen["nodelay"] != 0
    assert seen["result"] == -1 and seen["status"] == "ANSWER"
    acks_before, received_before = seen["before"]
    for moment in ("at_result", "at_hangup"):
        acks, received = seen[moment]
        assert received - received_before == len(b"200 result=-1\nHANGUP\n"), (moment, seen)
        # Our EXEC carried the ACK for everything before it; a further one is for the reply.
        assert acks > acks_before, (moment, seen)


@pytest_twisted.inlineCallbacks
def test_real_asterisk_dial_result_is_acknowledged_at_once(appliance, phones, reactor):
    """The same against the real Asterisk: 104 calls 204 through a probe route
    that dials 204; 204 answers and hangs up.  When the Dial's result reaches
    the route, our ACK for it has left and Asterisk's HANGUP line follows; the
    DIALSTATUS asked after it comes back."""
    from appliance.pbx import Presence
    from tests.e2e.waiting import wait_model

    seen: dict[str, Any] = {}
    finished: Deferred[Any] = Deferred()

    @inlineCallbacks
    def probe(agi: Any) -> Any:
        sock = agi.transport.getHandle()
        before = acks_and_bytes(sock)  # the EXEC below will carry the ACK for all before it
        dialled = agi.exec_("Dial", "PJSIP/204,20,tT")
        seen["result"] = yield dialled
        seen["at_result"] = acks_and_bytes(sock)
        seen["before"] = before
        yield agi.whenHungUp()
        seen["status"] = yield agi.getVariable("DIALSTATUS")

    appliance.routes["call"] = lambda agi: probe(agi).addBoth(finished.callback)
    pbx = appliance.pbx
    callee, caller = phones("204"), phones("104")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("204") is Presence.IDLE, "204 logged in")
    callee.answer(ring_ms=50, hold_ms=300)
    caller.call("204", hold_ms=5000)
    outcome = yield finished
    assert outcome is None, outcome
    assert seen["result"] == -1 and seen["status"] == "ANSWER", seen
    (acks_before, received_before), (acks, received) = seen["before"], seen["at_result"]
    assert received > received_before, seen
    assert acks > acks_before, seen
