"""FastAGI load generator: plays Asterisk against a FastAGI server.

Run as a child process by L{bench.fastagi} so that the client's work does not
share the server's event loop::

    python -m bench.agiload --port 4573 --concurrency 50 --requests 5000 --seconds 10

Each session is what res_agi does for C{AGI(agi://127.0.0.1:port/bench)}:
connect, send the environment block (the lines Asterisk 22 sends, then an
empty line), answer every command line with one C{200} reply, and wait for
the server to close.  A closed loop keeps C{concurrency} sessions in flight:
each finished session starts the next one until C{requests} sessions have
started or C{seconds} have passed.  The first C{warmup} sessions are not
counted (see L{LoadGenerator}).

The result is one JSON object on stdout: counts, elapsed wall time, the rate,
latency percentiles in seconds (connect -> server closes) and this process's CPU time.
Before it, the line C{measuring} marks the end of the warm-up, so the parent
can take its own CPU reading over the same span.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConnector, IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from bench._report import percentile

#: res_agi's environment for a network AGI (launch_netscript + setup_env).
_ENVIRONMENT = (
    "agi_network: yes\n"
    "agi_network_script: bench\n"
    "agi_request: agi://127.0.0.1:{port}/bench\n"
    "agi_channel: PJSIP/100-{seq:08x}\n"
    "agi_language: en\n"
    "agi_type: PJSIP\n"
    "agi_uniqueid: 1732350000.{seq}\n"
    "agi_version: 22.1.0\n"
    "agi_callerid: 100\n"
    "agi_calleridname: Bench\n"
    "agi_callingpres: 0\n"
    "agi_callingani2: 0\n"
    "agi_callington: 0\n"
    "agi_callingtns: 0\n"
    "agi_dnid: 200\n"
    "agi_rdnis: unknown\n"
    "agi_context: from-internal\n"
    "agi_extension: 200\n"
    "agi_priority: 1\n"
    "agi_enhanced: 0.0\n"
    "agi_accountcode: \n"
    "agi_threadid: 140234567890{seq_mod}\n"
    "\n"
)

#: The line written to stdout when the warm-up is over and measuring starts.
MEASURING = "measuring"

#: Commands each session must see; anything else counts as a failed session.
EXPECTED_COMMANDS = 2


def _reply(command: bytes) -> bytes:
    """What Asterisk answers: GET VARIABLE carries the value, SET does not."""
    if command.startswith(b"GET VARIABLE"):
        return b"200 result=1 (1)\n"
    return b"200 result=1\n"


@dataclass
class Stats:
    """What the measured sessions did; C{firstError} counts the warm-up too."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    abandoned: int = 0
    firstError: str = ""
    latencies: list[float] = field(default_factory=list)


class FakeAsterisk(LineOnlyReceiver):
    """One session, Asterisk's side."""

    delimiter = b"\n"

    def __init__(self, environment: bytes, finished: Callable[[str], None]) -> None:
        self.environment = environment
        self.finished = finished
        self.commands = 0
        self.refused = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.environment)

    def lineReceived(self, line: bytes) -> None:
        assert self.transport is not None
        if line.startswith(b"FAILURE"):
            self.refused = True
            return
        self.commands += 1
        self.transport.write(_reply(line))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.refused:
            self.finished("server wrote FAILURE")
        elif self.commands != EXPECTED_COMMANDS:
            self.finished(f"{self.commands} commands, expected {EXPECTED_COMMANDS}")
        else:
            self.finished("")


class _SessionFactory(ClientFactory):
    """One factory per session: it carries the session's start time."""

    def __init__(
        self, environment: bytes, done: Callable[[float, bool, str], None], started: float, measured: bool
    ) -> None:
        self.environment = environment
        self.done = done
        self.started = started
        self.measured = measured
        self.reported = False

    def buildProtocol(self, addr: object) -> FakeAsterisk:
        return FakeAsterisk(self.environment, self._finished)

    def _finished(self, error: str) -> None:
        """End of the session; C{error} is empty when it went as expected."""
        if not self.reported:
            self.reported = True
            self.done(self.started, self.measured, error)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._finished(f"connect failed: {reason.getErrorMessage()}")


class LoadGenerator:
    """Closed loop: keeps C{concurrency} sessions in flight.

    Every finished session starts the next one.  The first C{warmup}
    sessions to finish are the warm-up; at that moment (the I{mark})
    measuring starts, without draining the loop, so there is no burst of
    simultaneous connects inside the measured window.  After the mark,
    sessions start until C{requests} have started or C{seconds} have passed;
    the run ends when the last one is done, or C{GRACE} seconds after the
    deadline (open sessions then count as abandoned).

    Latencies are those of sessions started after the mark; the rate counts
    every session that finished after the mark, over the time from the mark
    to the last one.
    """

    #: Seconds after the deadline before open sessions are abandoned.
    GRACE = 5.0

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        concurrency: int,
        requests: int,
        seconds: float,
        warmup: int,
        measuring: Callable[[], None] = lambda: None,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.tcp: IReactorTCP = reactor
        self.clock: IReactorTime = reactor
        self.host = host
        self.port = port
        self.concurrency = concurrency
        self.requests = requests
        self.seconds = seconds
        self.warmup = warmup
        self.measuring = measuring
        self.now = now
        self.stats = Stats()
        self.sequence = 0
        self.inflight = 0
        self.warmedUp = 0
        self.mark: float | None = None
        self.finishedInWindow = 0
        self.lastEnd = 0.0
        self.cpuAtMark = 0.0
        self.finished: Deferred[None] = Deferred()
        self._timers: list[IDelayedCall] = []

    def run(self) -> Deferred[dict[str, Any]]:
        """Start the loop; fire with the JSON-able result."""
        # A warm-up that never ends (a broken server) must not hold the run.
        self._timers.append(self.clock.callLater(self.seconds, self._startMeasuring))
        for _ in range(max(1, min(self.concurrency, self.warmup))):
            self._launch()
        return self.finished.addCallback(lambda _: self._result())

    def _launch(self) -> None:
        self.sequence += 1
        self.inflight += 1
        measured = self.mark is not None
        if measured:
            self.stats.started += 1
        seq = self.sequence
        environment = _ENVIRONMENT.format(port=self.port, seq=seq, seq_mod=seq % 10).encode("ascii")
        factory = _SessionFactory(environment, self._done, self.now(), measured)
        self.tcp.connectTCP(self.host, self.port, factory, timeout=10)

    def _startMeasuring(self) -> None:
        if self.mark is not None:
            return
        self.measuring()
        self.cpuAtMark = _cpuSeconds()
        self.mark = self.lastEnd = self.now()
        self._timers.append(self.clock.callLater(self.seconds + self.GRACE, self._abandon))

    def _moreToStart(self, now: float) -> bool:
        if self.mark is None:
            return True
        return self.stats.started < self.requests and now < self.mark + self.seconds

    def _done(self, started: float, measured: bool, error: str) -> None:
        if self.finished.called:
            return
        ended = self.now()
        self.inflight -= 1
        ok = not error
        if error and not self.stats.firstError:
            self.stats.firstError = error
        if self.mark is None:
            self.warmedUp += 1
            if self.warmedUp >= self.warmup:
                self._startMeasuring()
        else:
            self.lastEnd = ended
            if ok:
                self.finishedInWindow += 1
            if measured and ok:
                self.stats.completed += 1
                self.stats.latencies.append(ended - started)
            elif measured:
                self.stats.failed += 1
        if self._moreToStart(ended):
            self._launch()
        elif self.inflight == 0:
            self._finish()

    def _abandon(self) -> None:
        self.stats.abandoned = self.inflight
        if self.inflight and not self.stats.firstError:
            self.stats.firstError = f"{self.inflight} sessions still open {self.GRACE:g} s after the deadline"
        self._finish()

    def _finish(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        if not self.finished.called:
            self.finished.callback(None)

    def _result(self) -> dict[str, Any]:
        latencies = sorted(self.stats.latencies)
        elapsed = self.lastEnd - self.mark if self.mark is not None else 0.0
        return {
            "concurrency": self.concurrency,
            "started": self.stats.started,
            "completed": self.stats.completed,
            "failed": self.stats.failed,
            "abandoned": self.stats.abandoned,
            "elapsed": elapsed,
            "perSecond": self.finishedInWindow / elapsed if elapsed > 0 else None,
            "p50": percentile(latencies, 0.50) if latencies else None,
            "p99": percentile(latencies, 0.99) if latencies else None,
            "max": latencies[-1] if latencies else None,
            "clientCpu": _cpuSeconds() - self.cpuAtMark,
            "firstError": self.stats.firstError,
        }


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _cpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agiload", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=200)
    options = parser.parse_args(argv)
    if options.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("loopback only")

    from twisted.internet.task import react

    async def go(reactor: Any) -> None:
        generator = LoadGenerator(
            reactor,
            options.host,
            options.port,
            options.concurrency,
            options.requests,
            options.seconds,
            options.warmup,
            measuring=lambda: _emit(MEASURING),
        )
        result = await generator.run()
        _emit(json.dumps(result))

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
