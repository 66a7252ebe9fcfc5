"""Post-dial delay added by forwarding: INVITE sent by the caller → INVITE at the target.

Needs root and the Asterisk lab (its own instance, default ``test1``)::

    .venv/bin/python -m bench.forwarding --instance test1 --rounds 50

Three ways to reach phone 300 from 100, measured in one run on one lab:

- ``forwarded``: 100 calls 200, whose unconditional forward (with display)
  the appliance turns into a Dial of 300;
- ``appliance``: 100 calls 300 through the appliance's call route, no forward;
- ``plain Dial()``: 100 calls 300 with the appliance's FastAGI port closed, so
  the shipped dialplan falls back to ``Dial(PJSIP/300)`` (a refused TCP
  connect on loopback comes first; it costs well under a millisecond).

The caller and the target are small UDP endpoints in this process: the caller
notes when it sends the INVITE, the target when the INVITE arrives and answers
``503`` (no callback offer, no forward on the way back), and the caller ACKs
the final response.  Printed: median and p90 in milliseconds, and the
forwarded and appliance delays beside the plain one (added ms and ratio).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from bench._lab import RefusingPhone, lab_and_appliance, sip_headers
from bench._report import fmt, percentile, table

SDP = (
    "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Caller(DatagramProtocol):
    """Phone 100: sends one INVITE per call and ACKs its final response."""

    def __init__(self, clock: Any, server: tuple[str, int]) -> None:
        self.clock = clock
        self.server = server
        self.count = 0
        self.done: defer.Deferred[None] | None = None
        self.sent: dict[str, str] = {}

    def call(self, number: str) -> tuple[float, defer.Deferred[None]]:
        self.count += 1
        assert self.transport is not None
        host, port = self.transport.getHost().host, self.transport.getHost().port
        call_id = f"bench-{self.count}-{id(self)}@127.0.0.1"
        branch = f"z9hG4bKbench{self.count}x{id(self)}"
        via = f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport"
        from_ = f'From: "Bench 100" <sip:100@{self.server[0]}>;tag=bench{self.count}'
        invite = (
            f"INVITE sip:{number}@{self.server[0]}:{self.server[1]} SIP/2.0\r\n{via}\r\n{from_}\r\n"
            f"To: <sip:{number}@{self.server[0]}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:100@{host}:{port}>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
        )
        self.sent[call_id] = (
            f"ACK sip:{number}@{self.server[0]}:{self.server[1]} SIP/2.0\r\n{via}\r\n{from_}\r\n"
        )
        self.done = defer.Deferred()
        started = self.clock.seconds()
        self.transport.write(invite.encode(), self.server)
        return started, self.done

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        text = data.decode(errors="replace")
        status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else ""
        if not status or status.startswith("1"):
            return
        [call_id] = [h.split(":", 1)[1].strip() for h in sip_headers(text, "call-id")] or [""]
        ack = self.sent.get(call_id)
        if ack is None:
            return
        to = sip_headers(text, "to")
        ack += "\r\n".join(
            [*to, f"Call-ID: {call_id}", "CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0"]
        )
        assert self.transport is not None
        self.transport.write((ack + "\r\n\r\n").encode(), addr)
        if self.done is not None and not self.done.called:
            self.done.callback(None)


@defer.inlineCallbacks
def measure(reactor: Any, instance: str, rounds: int) -> Any:
    from appliance.directory import User
    from appliance.forwarding.records import Forward
    from appliance.pbx import Presence
    from tests.e2e.phones import Phone
    from tests.e2e.waiting import wait_model

    lab, appliance = yield lab_and_appliance(reactor, instance, "bench-fwd-")
    pbx = appliance.pbx
    for ext in ("100", "200", "300"):
        appliance.directory.put_user(User(ext, f"User {ext}", language="de"))
    appliance.forwarding.forwards.set("200", Forward("unconditional", "300"))
    phone = Phone(reactor, lab.ports, "300")
    target = RefusingPhone(reactor, "503 Service Unavailable", "bench300")
    target_port = reactor.listenUDP(phone.port, target, interface="127.0.0.1")
    caller = Caller(reactor, (lab.ports.host, lab.ports.sip))
    caller_port = reactor.listenUDP(0, caller, interface="127.0.0.1")
    delays: dict[str, list[float]] = {"forwarded": [], "appliance": [], "plain Dial()": []}
    try:
        yield phone.register().done
        yield wait_model(reactor, pbx, lambda: pbx.presence("300") is Presence.IDLE, "300 registered")

        @defer.inlineCallbacks
        def one(name: str, number: str) -> Any:
            target.waiting = defer.Deferred()
            started, finished = caller.call(number)
            arrived = yield target.waiting
            yield finished
            delays[name].append(arrived - started)
            yield wait_model(reactor, pbx, lambda: not pbx.channels, "calls ended")

        for _ in range(3):  # warm-up: AGI connection paths, Asterisk caches
            yield one("forwarded", "200")
            yield one("appliance", "300")
        for values in delays.values():
            values.clear()
        for n in range(rounds):
            yield one("forwarded", "200")
            yield one("appliance", "300")
            print(f"round {n + 1}/{rounds}", file=sys.stderr)
        yield appliance.fastagi.stopService()
        for _ in range(rounds + 3):
            yield one("plain Dial()", "300")
        del delays["plain Dial()"][:3]
    finally:
        phone.kill_all()
        yield target_port.stopListening()
        yield caller_port.stopListening()
        yield appliance.stopService()
    return delays


def report(delays: dict[str, list[float]]) -> str:
    plain = percentile(sorted(delays["plain Dial()"]), 0.5)
    rows = []
    for name, values in delays.items():
        ordered = sorted(values)
        median = percentile(ordered, 0.5)
        rows.append(
            [
                name,
                str(len(ordered)),
                fmt(1000 * median, 2),
                fmt(1000 * percentile(ordered, 0.9), 2),
                fmt(1000 * (median - plain), 2),
                fmt(median / plain, 2) if plain else "-",
            ]
        )
    return table(["INVITE -> INVITE at 300", "n", "median ms", "p90 ms", "added ms", "x plain"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarding", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="test1", help="lab instance (test, test1..test9)")
    parser.add_argument("--rounds", type=int, default=50)
    options = parser.parse_args(argv)

    def run(reactor: Any) -> Any:
        d = measure(reactor, options.instance, options.rounds)
        return d.addCallback(lambda result: print(report(result)))

    task.react(run)


if __name__ == "__main__":
    main()
