"""Recall latency beside Asterisk's own call completion (CCSS), same run, same lab.

Needs root and the Asterisk lab (its own instance, default ``test2``)::

    .venv/bin/python -m bench.callback --instance test2 --rounds 30

Rounds alternate between the two, so both see the same machine load.  Each
round: 200 calls 300 (sipp, 300 answers), so 200 is busy; 100 asks to be
called back when 200 is free; the AMI hangs up 300's channel.  A small UDP
listener on 100's registered contact port notes when the recall's INVITE
arrives and answers 486 Busy Here, which ends that request.

- appliance: 200's call goes through the shipped route (FastAGI ``EXEC
  Dial``, as every internal call does); the request 100 -> 200 is made through
  the engine (the spoken offer is not what is measured).
- CCSS: the lab's ``ccss<number>`` dialplan (``appliance/lab/asteriskconf.py``):
  plain ``Dial()`` without the appliance, generic agent and monitor set per
  call; 100 dials ``ccss200`` while 200 is busy and ``CallCompletionRequest``
  takes the offer.  Asterisk recalls by itself.

Printed: hangup -> 200 free in the PBX model, and hangup -> INVITE at 100
(the recall latency; the INVITE's arrival is the kernel's receive time at
100's socket), median and p99 in milliseconds for each, and the ratio
appliance / CCSS; for the appliance also its recall split in two: hangup ->
Originate (the call route's last FastAGI exchange, the AMI event that frees
200, this process's reactions) and Originate -> INVITE at 100 (Asterisk
placing the call); then the load average and the CPU stall over the run
(bench/README.md: with a high stall, wall-time figures are noise).  The
issue's goal: median within 1.5x of CCSS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from twisted.internet import defer, task

from bench._lab import RefusingPhone, lab_and_appliance
from bench._report import fmt, percentile, ratio, table
from bench.fastagi import cpuStallSeconds

KINDS = ("appliance", "ccss")


@defer.inlineCallbacks
def measure(reactor: Any, instance: str, rounds: int) -> Any:
    from appliance.pbx import Presence
    from tests.e2e.phones import Phone
    from tests.e2e.waiting import wait_model, wait_until

    lab, appliance = yield lab_and_appliance(reactor, instance, "bench-callback-")
    pbx, ami = appliance.pbx, appliance.ami
    requester, target, other = (Phone(reactor, lab.ports, n) for n in ("100", "200", "300"))
    catcher = RefusingPhone(reactor, "486 Busy Here", "bench")
    port = reactor.listenUDP(requester.port, catcher, interface="127.0.0.1")
    to_free: dict[str, list[float]] = {kind: [] for kind in KINDS}
    to_invite: dict[str, list[float]] = {kind: [] for kind in KINDS}
    stages: dict[str, list[float]] = {"to_originate": [], "place": []}

    def all_idle() -> bool:
        return all(pbx.presence(n) is Presence.IDLE for n in ("100", "200", "300"))

    def cc_event(name: str) -> Any:
        """Fires on the next AMI event ``name`` (CCSS reports each step)."""
        seen: list[object] = []

        def subscribe(callback: Any) -> Any:
            def noted(event: object) -> Any:
                seen.append(event)
                return callback(event)

            return ami.subscribe(name, noted)

        return wait_until(reactor, subscribe, lambda: seen, name, timeout=10)

    recalls: list[float] = []
    appliance.callbacks.on_recall(lambda _recall: recalls.append(reactor.seconds()))
    try:
        for phone in (requester, target, other):
            yield phone.register().done
        yield wait_model(reactor, pbx, all_idle, "idle")
        for n in range(2 * rounds):
            kind = KINDS[n % 2]
            prefix = "ccss" if kind == "ccss" else ""
            answering = other.answer(ring_ms=50)
            calling = target.call(prefix + "300", hold_ms=60000)
            yield wait_model(
                reactor,
                pbx,
                lambda: pbx.presence("200") is Presence.BUSY and pbx.presence("300") is Presence.BUSY,
                "200 talking to 300",
            )
            if kind == "ccss":
                acknowledged = cc_event("CCRequestAcknowledged")
                yield requester.call("ccss200", hold_ms=5000).done
                yield acknowledged
                yield wait_model(reactor, pbx, lambda: pbx.presence("100") is Presence.IDLE, "100 free")
                ended = cc_event("CCFailure")
            else:
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
                yield ami.sendAction("Hangup", Channel=channel.name)
            arrived = yield catcher.waiting
            yield wait_model(reactor, pbx, lambda: pbx.presence("200") is Presence.IDLE, "200 free")
            unsubscribe()
            to_invite[kind].append(arrived - hangup)
            if freed:
                to_free[kind].append(freed[0] - hangup)
            if kind == "appliance" and recalls:
                originated = recalls[-1]
                stages["to_originate"].append(originated - hangup)
                stages["place"].append(arrived - originated)
            if kind == "ccss":
                yield ended
            else:
                appliance.callbacks.engine.cancel("100")
            yield defer.DeferredList([answering.done, calling.done], consumeErrors=True)
            yield wait_model(reactor, pbx, all_idle, "all free")
            print(f"round {n // 2 + 1}/{rounds} {kind}: {1000 * (arrived - hangup):.1f} ms", file=sys.stderr)
    finally:
        for phone in (requester, target, other):
            phone.kill_all()
        yield port.stopListening()
        yield appliance.stopService()
    return to_free, to_invite, stages


def report(
    to_free: dict[str, list[float]], to_invite: dict[str, list[float]], stages: dict[str, list[float]]
) -> str:
    def row(name: str, values: list[float]) -> list[str]:
        ordered = sorted(values)
        return [
            name,
            str(len(ordered)),
            fmt(1000 * percentile(ordered, 0.5), 1),
            fmt(1000 * percentile(ordered, 0.99), 1),
            fmt(1000 * ordered[-1], 1) if ordered else "-",
        ]

    rows = []
    for kind in KINDS:
        rows.append(row(f"{kind}: hangup -> 200 free (model)", to_free[kind]))
        rows.append(row(f"{kind}: hangup -> INVITE at 100", to_invite[kind]))
        if kind == "appliance":
            rows.append(row("  of which hangup -> Originate", stages["to_originate"]))
            rows.append(row("  of which Originate -> INVITE at 100", stages["place"]))
    ours, theirs = sorted(to_invite["appliance"]), sorted(to_invite["ccss"])
    rows.append(
        [
            "ratio appliance / CCSS (recall)",
            "",
            fmt(ratio(percentile(ours, 0.5), percentile(theirs, 0.5)), 2) + "x",
            fmt(ratio(percentile(ours, 0.99), percentile(theirs, 0.99)), 2) + "x",
            fmt(ratio(ours[-1], theirs[-1]), 2) + "x" if ours and theirs else "-",
        ]
    )
    rows.append(["goal (issue 19): median within", "", "1.50x", "", ""])
    return table(["recall latency", "n", "median ms", "p99 ms", "max ms"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callback", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="test2", help="lab instance (test, test1..test9)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of each kind, alternating")
    options = parser.parse_args(argv)

    def run(reactor: Any) -> Any:
        started, stall = time.monotonic(), cpuStallSeconds()

        def show(result: Any) -> None:
            busy = 100 * (cpuStallSeconds() - stall) / (time.monotonic() - started)
            print(report(*result))
            print(f"load average {os.getloadavg()[0]:.2f}; CPU stall {fmt(busy, 0)}% of the run (Linux PSI)")

        return measure(reactor, options.instance, options.rounds).addCallback(show)

    task.react(run)


if __name__ == "__main__":
    main()
