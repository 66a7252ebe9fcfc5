"""Recall latency: from the target's hangup to the recall's INVITE at the requester.

Needs root and the Asterisk lab (its own instance, default ``test2``)::

    .venv/bin/python -m bench.callback --instance test2 --rounds 30

Each round: 200 calls 300 (sipp, 300 answers), so 200 is busy; a callback
request 100 → 200 is made through the engine (the offer announcement is not
what is measured); the appliance hangs up 200's call over AMI.  A small UDP
listener on 100's registered contact port notes when the recall's INVITE
arrives and answers 486 Busy Here, after which the request is cancelled.

Printed: hangup → target free in the PBX model, and hangup → INVITE at the
requester, median and p99 in milliseconds, beside the bound the seed allows
(60 s) and the one the issue aims for (2 s).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import defer, task

from bench._lab import RefusingPhone, lab_and_appliance
from bench._report import fmt, percentile, table


@defer.inlineCallbacks
def measure(reactor: Any, instance: str, rounds: int) -> Any:
    from appliance.pbx import Presence
    from tests.e2e.phones import Phone
    from tests.e2e.waiting import wait_model

    lab, appliance = yield lab_and_appliance(reactor, instance, "bench-callback-")
    pbx = appliance.pbx
    requester, target, other = (Phone(reactor, lab.ports, n) for n in ("100", "200", "300"))
    catcher = RefusingPhone(reactor, "486 Busy Here", "bench")
    port = reactor.listenUDP(requester.port, catcher, interface="127.0.0.1")
    to_free: list[float] = []
    to_invite: list[float] = []
    try:
        for phone in (requester, target, other):
            yield phone.register().done
        yield wait_model(
            reactor, pbx, lambda: all(pbx.presence(n) is Presence.IDLE for n in ("100", "200", "300")), "idle"
        )
        for n in range(rounds):
            answering = other.answer(ring_ms=50)
            calling = target.call("300", hold_ms=60000)
            yield wait_model(
                reactor,
                pbx,
                lambda: pbx.presence("200") is Presence.BUSY and pbx.presence("300") is Presence.BUSY,
                "200 talking to 300",
            )
            appliance.callbacks.engine.request("100", "200")
            catcher.waiting = defer.Deferred()
            freed: list[float] = []
            unsubscribe = pbx.subscribe(
                lambda _c, freed=freed: (
                    freed.append(reactor.seconds())
                    if not freed and pbx.presence("200") is Presence.IDLE
                    else None
                )
            )
            hangup = reactor.seconds()
            for channel in pbx.channels_of("300"):
                yield appliance.ami.sendAction("Hangup", Channel=channel.name)
            arrived = yield catcher.waiting
            unsubscribe()
            to_invite.append(arrived - hangup)
            if freed:
                to_free.append(freed[0] - hangup)
            appliance.callbacks.engine.cancel("100")
            yield defer.DeferredList([answering.done, calling.done], consumeErrors=True)
            yield wait_model(reactor, pbx, lambda: pbx.presence("100") is Presence.IDLE, "100 free")
            print(f"round {n + 1}/{rounds}: {1000 * (arrived - hangup):.1f} ms", file=sys.stderr)
    finally:
        for phone in (requester, target, other):
            phone.kill_all()
        yield port.stopListening()
        yield appliance.stopService()
    return to_free, to_invite


def report(to_free: list[float], to_invite: list[float]) -> str:
    rows = []
    for name, values in (
        ("hangup -> target free (model)", to_free),
        ("hangup -> INVITE at requester", to_invite),
    ):
        ordered = sorted(values)
        rows.append(
            [
                name,
                str(len(ordered)),
                fmt(1000 * percentile(ordered, 0.5), 1),
                fmt(1000 * percentile(ordered, 0.99), 1),
                fmt(1000 * ordered[-1], 1) if ordered else "-",
            ]
        )
    rows.append(["bound: issue aim / seed", "", "2,000.0", "", "60,000.0"])
    return table(["recall latency", "n", "median ms", "p99 ms", "max ms"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callback", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="test2", help="lab instance (test, test1..test9)")
    parser.add_argument("--rounds", type=int, default=30)
    options = parser.parse_args(argv)

    def run(reactor: Any) -> Any:
        d = measure(reactor, options.instance, options.rounds)
        return d.addCallback(lambda result: print(report(*result)))

    task.react(run)


if __name__ == "__main__":
    main()
