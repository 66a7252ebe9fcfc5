"""FastAGI over real loopback sockets: sessions per second and latency.

The server runs in this process's reactor; the load generator
(L{bench.agiload}, playing Asterisk) runs in a child process so it does not
take the server's event loop.  Each session is a trivial script with two
round trips (C{SET VARIABLE} then C{GET VARIABLE}), served by
L{FastAGIFactory} on an endpoint built the way the appliance builds its own
(L{appliance.config.Listen.endpoint}: listen backlog 1024), on port 0.

Baseline, same run, same client: a bare L{LineOnlyReceiver} that skips the
environment lines, then writes the same two command lines, one per reply, and
closes; no AGI parsing, no routing, no timeout, no logging.

At 50 concurrent sessions ours runs a second time with every log event also
written to a file by the journal observer the shipped systemd unit selects
(L{appliance.journal.observer}; like plain C{twistd}, it filters no level).

Each scenario stops after C{requests} sessions or C{seconds}, whichever comes
first, after a 200-session warm-up that is not counted.  The rate is every
session finished in the measured window over its length; the server's CPU is
this process's CPU time over that window, per session.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, ServerFactory
from twisted.logger import globalLogPublisher
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from appliance import journal
from appliance.asterisk.fastagi import FastAGIFactory, FastAGIProtocol, formatCommand
from appliance.config import Listen
from bench._report import fmt, ratio, table
from bench.agiload import MEASURING

CONCURRENCY = (1, 50, 200)
REQUESTS = 5000
SECONDS = 10.0
WARMUP = 200
#: The appliance's FastAGI endpoint (its listen backlog too), on a fresh port.
ENDPOINT = Listen("127.0.0.1", 0).endpoint()

_ROOT = Path(__file__).resolve().parent.parent
_COMMANDS = (formatCommand("SET VARIABLE", "X", "1"), formatCommand("GET VARIABLE", "X"))


# The servers ------------------------------------------------------------


@inlineCallbacks
def benchScript(agi: FastAGIProtocol) -> Generator[Deferred[Any], Any, None]:
    """The script under test: two round trips."""
    yield agi.setVariable("X", "1")
    value = yield agi.getVariable("X")
    if value != "1":
        raise ValueError(f"GET VARIABLE X answered {value!r}")


class BareAGIServer(LineOnlyReceiver):
    """Baseline: the same bytes on the wire, none of the work.

    Ignores every line up to the empty one, then writes one command per
    reply line and closes after the last reply.
    """

    delimiter = b"\n"
    COMMANDS = tuple(command.encode("ascii") + b"\n" for command in _COMMANDS)

    def __init__(self) -> None:
        self.inEnvironment = True
        self.sent = 0

    def lineReceived(self, line: bytes) -> None:
        assert self.transport is not None
        if self.inEnvironment:
            if line:
                return
            self.inEnvironment = False
        if self.sent < len(self.COMMANDS):
            self.transport.write(self.COMMANDS[self.sent])
            self.sent += 1
        else:
            self.transport.loseConnection()


def fastAGIFactory(reactor: Any) -> ServerFactory:
    return FastAGIFactory({"bench": benchScript}, reactor)


def bareFactory(reactor: Any) -> Factory:
    return Factory.forProtocol(BareAGIServer)


@dataclass(frozen=True)
class Server:
    """A server under test.

    C{journalLog}: while it runs, every log event is also written to a file
    by the shipped unit's journal observer, which filters no level.
    """

    name: str
    makeFactory: Callable[[Any], Factory]
    baseline: bool = False
    journalLog: bool = False


BASELINE = Server("bare LineReceiver", bareFactory, baseline=True)
OURS = Server("FastAGIFactory", fastAGIFactory)
OURS_JOURNAL_LOG = Server("FastAGI + journal log", fastAGIFactory, journalLog=True)
#: Concurrencies at which OURS_JOURNAL_LOG runs too.
JOURNAL_LOG_CONCURRENCY = (50,)


# Results ----------------------------------------------------------------------


@dataclass(frozen=True)
class AGIResult:
    """One scenario: one server at one concurrency."""

    server: Server
    concurrency: int
    completed: int
    failed: int
    abandoned: int
    elapsed: float
    perSecond: float
    p50: float
    p99: float
    serverCpu: float
    clientCpu: float
    stall: float
    firstError: str = ""
    error: str = ""

    @property
    def cpuPerSession(self) -> float:
        """Server CPU seconds per session finished in the window."""
        finished = self.perSecond * self.elapsed
        return self.serverCpu / finished if finished > 0 else float("nan")

    def busy(self, cpu: float) -> float:
        """CPU seconds over wall seconds, as a percentage of one core."""
        return 100 * cpu / self.elapsed if self.elapsed > 0 else float("nan")


def _failedResult(server: Server, concurrency: int, error: str) -> AGIResult:
    nan = float("nan")
    return AGIResult(server, concurrency, 0, 0, 0, 0.0, nan, nan, nan, nan, nan, nan, error=error)


# The child process ------------------------------------------------------------


def _cpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpuStallSeconds() -> float:
    """Linux PSI: total time some runnable task waited for a CPU (nan if unknown).

    Over a scenario, this divided by the wall time says how much the machine
    was oversubscribed; with only the server and the load generator on two
    cores it stays near zero.
    """
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as pressure:
            for line in pressure:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


class _LoadProcess(ProcessProtocol):
    """Reads the load generator's stdout: the C{measuring} mark, then JSON.

    Takes this process's CPU reading at both, so the server's CPU time
    covers the measured sessions only.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.stderr = b""
        self.result: dict[str, Any] | None = None
        self.cpuStart: float | None = None
        self.stallStart = float("nan")
        self.serverCpu = float("nan")
        self.stall = float("nan")
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self._line(line.decode("utf-8", "replace").strip())

    def _line(self, line: str) -> None:
        if line == MEASURING:
            self.cpuStart = _cpuSeconds()
            self.stallStart = cpuStallSeconds()
        elif line.startswith("{"):
            if self.cpuStart is not None:
                self.serverCpu = _cpuSeconds() - self.cpuStart
                self.stall = cpuStallSeconds() - self.stallStart
            self.result = json.loads(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: Failure) -> None:
        error = reason.value
        self.ended.callback(error.exitCode if isinstance(error, ProcessDone | ProcessTerminated) else None)


async def _runClient(
    reactor: Any, port: int, concurrency: int, requests: int, seconds: float
) -> _LoadProcess:
    process = _LoadProcess()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    args = [
        sys.executable,
        "-m",
        "bench.agiload",
        f"--port={port}",
        f"--concurrency={concurrency}",
        f"--requests={requests}",
        f"--seconds={seconds}",
        f"--warmup={WARMUP}",
    ]
    transport = reactor.spawnProcess(process, sys.executable, args, env=env, path=str(_ROOT))
    # The child bounds itself (deadline plus grace); this is the backstop.
    killer = reactor.callLater(2 * seconds + 30, transport.signalProcess, "KILL")
    await process.ended
    if killer.active():
        killer.cancel()
    return process


async def runScenario(
    reactor: Any,
    server: Server,
    concurrency: int,
    requests: int = REQUESTS,
    seconds: float = SECONDS,
    endpoint: str = ENDPOINT,
) -> AGIResult:
    """Listen on a fresh loopback port, drive it with the child, stop listening."""
    listening: IListeningPort = await serverFromString(reactor, endpoint).listen(server.makeFactory(reactor))
    log_file = tempfile.TemporaryFile("w", encoding="utf-8") if server.journalLog else None
    observer = journal.observer(log_file) if log_file is not None else None
    if observer is not None:
        globalLogPublisher.addObserver(observer)
    try:
        address = listening.getHost()
        assert isinstance(address, IPv4Address)
        port = address.port
        process = await _runClient(reactor, port, concurrency, requests, seconds)
    finally:
        if observer is not None:
            globalLogPublisher.removeObserver(observer)
        if log_file is not None:
            log_file.close()
        stopped = listening.stopListening()
        if stopped is not None:
            await stopped
    result = process.result
    if result is None:
        stderr = process.stderr.decode("utf-8", "replace").strip().splitlines()
        return _failedResult(server, concurrency, stderr[-1] if stderr else "load generator gave no result")

    def number(key: str) -> float:
        value = result[key]
        return float("nan") if value is None else float(value)

    return AGIResult(
        server=server,
        concurrency=concurrency,
        completed=result["completed"],
        failed=result["failed"],
        abandoned=result["abandoned"],
        elapsed=result["elapsed"],
        perSecond=number("perSecond"),
        p50=number("p50"),
        p99=number("p99"),
        serverCpu=process.serverCpu,
        clientCpu=result["clientCpu"],
        stall=process.stall,
        firstError=result["firstError"],
    )


def scenarios(concurrencies: Sequence[int] = CONCURRENCY) -> list[tuple[Server, int]]:
    """What runs, in order: at each concurrency the baseline, then ours."""
    plan = []
    for concurrency in concurrencies:
        plan += [(BASELINE, concurrency), (OURS, concurrency)]
        if concurrency in JOURNAL_LOG_CONCURRENCY:
            plan.append((OURS_JOURNAL_LOG, concurrency))
    return plan


async def run(
    reactor: Any,
    concurrencies: Sequence[int] = CONCURRENCY,
    requests: int = REQUESTS,
    seconds: float = SECONDS,
    progress: Callable[[str], None] = lambda _: None,
) -> list[AGIResult]:
    """Every scenario, one after the other."""
    results = []
    for server, concurrency in scenarios(concurrencies):
        progress(f"fastagi: {server.name}, {concurrency} concurrent ...")
        results.append(await runScenario(reactor, server, concurrency, requests, seconds))
    return results


# Report -----------------------------------------------------------------------


def report(results: Sequence[AGIResult]) -> str:
    """The table: at each concurrency the baseline, then ours with its ratio."""
    header = [
        "server",
        "conc",
        "requests",
        "failed",
        "req/s",
        "p50 ms",
        "p99 ms",
        "srv CPU us/req",
        "srv CPU %",
        "load CPU %",
        "stall %",
    ]
    rows: list[list[str]] = []
    baselines = {r.concurrency: r for r in results if r.server.baseline and not r.error}
    for result in results:
        if result.error:
            rows.append([result.server.name, str(result.concurrency), "error: " + result.error[:60]])
            continue
        rows.append(
            [
                result.server.name,
                str(result.concurrency),
                fmt(result.completed),
                fmt(result.failed + result.abandoned),
                fmt(result.perSecond),
                fmt(1000 * result.p50, 2),
                fmt(1000 * result.p99, 2),
                fmt(1e6 * result.cpuPerSession),
                fmt(result.busy(result.serverCpu)),
                fmt(result.busy(result.clientCpu)),
                fmt(result.busy(result.stall)),
            ]
        )
        base = baselines.get(result.concurrency)
        if base is not None and not result.server.baseline:
            rows.append(
                [
                    "  ratio to bare",
                    "",
                    "",
                    "",
                    fmt(ratio(result.perSecond, base.perSecond), 2) + "x",
                    fmt(ratio(result.p50, base.p50), 2) + "x",
                    fmt(ratio(result.p99, base.p99), 2) + "x",
                    fmt(ratio(result.cpuPerSession, base.cpuPerSession), 2) + "x",
                    "",
                    "",
                    "",
                ]
            )
    width = len(header)
    rows = [row + [""] * (width - len(row)) for row in rows]
    notes = [
        f"{r.server.name} at {r.concurrency}: {r.failed} failed, {r.abandoned} abandoned;"
        f" first: {r.firstError}"
        for r in results
        if r.failed or r.abandoned
    ]
    title = (
        "FastAGI over loopback: a request is one AGI() session, 2 round trips (SET VARIABLE, GET VARIABLE);\n"
        "latency = client connect -> server closes; load generator in a child process\n"
    )
    return title + table(header, rows) + "".join("\n" + note for note in notes)
