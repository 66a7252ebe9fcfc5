"""AMI event parsing: events per second through L{AMIProtocol}.

A recorded-style stream (the greeting, then calls as Asterisk 22 reports
them: Newchannel, Newexten, VarSet, DeviceStateChange, DialBegin, Newstate,
DialEnd, Hangup; 5 to 33 headers, most 17 to 20, shaped like the lab recording in
C{tests/unit/data}) is fed to C{AMIProtocol.dataReceived} in fixed-size
chunks over a L{StringTransport}; every event reaches C{eventHandler}.

Baseline, same run, same chunks: a bare L{LineReceiver} that splits lines
at C{": "} into a dict and hands the dict over at each empty line.

Each side runs for C{ROUNDS} alternating rounds of about C{SECONDS} seconds;
the best round is reported (the least disturbed by the rest of the machine).
Rates are per second of this process's CPU time, which other load on the
machine barely changes; the rate per second of wall time is shown too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver

from appliance.asterisk.ami import AMIProtocol
from bench._report import fmt, ratio, table

CALLS = 16
CHUNK = 4096
ROUNDS = 5
SECONDS = 0.4
GREETING = "Asterisk Call Manager/11.0.0"
SYSTEM = "appliance-lab-test"

#: (number, name) of the phones in the recording; one name is not ASCII.
_PHONES = [
    ("100", "Lab 100"),
    ("101", "Zoë Müller"),
    ("102", "Reception"),
    ("103", "Lab 103"),
    ("200", "Lab 200"),
    ("201", "Support"),
    ("202", "Jörg Weiß"),
    ("203", "Lab 203"),
]


# The stream -------------------------------------------------------------------


@dataclass
class _Channel:
    name: str
    number: str
    callerName: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: tuple[int, str] = (0, "Down")
    connected: tuple[str, str] = ("<unknown>", "<unknown>")
    priority: int = 1

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        """The channel headers every channel event carries."""
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state[0])),
            (prefix + "ChannelStateDesc", self.state[1]),
            (prefix + "CallerIDNum", self.number),
            (prefix + "CallerIDName", self.callerName),
            (prefix + "ConnectedLineNum", self.connected[0]),
            (prefix + "ConnectedLineName", self.connected[1]),
            (prefix + "Language", "en"),
            (prefix + "AccountCode", ""),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]


def _event(name: str, privilege: str, headers: Sequence[tuple[str, str]]) -> str:
    lines = [f"Event: {name}", f"Privilege: {privilege}", f"SystemName: {SYSTEM}"]
    lines += [f"{key}: {value}" if value else f"{key}: " for key, value in headers]
    return "\r\n".join(lines) + "\r\n\r\n"


def _device(device: str, state: str) -> str:
    return _event("DeviceStateChange", "call,all", [("Device", device), ("State", state)])


def _call(index: int) -> list[str]:
    """The events of one answered internal call, in Asterisk's order."""
    epoch = 1795422791
    caller = _PHONES[index % 4]
    callee = _PHONES[4 + (index * 3) % 4]
    a = _Channel(
        name=f"PJSIP/{caller[0]}-{2 * index:08x}",
        number=caller[0],
        callerName=caller[1],
        uniqueid=f"{SYSTEM}-{epoch}.{2 * index}",
        linkedid=f"{SYSTEM}-{epoch}.{2 * index}",
        context="phones",
        exten=callee[0],
        state=(4, "Ring"),
    )
    events = [_event("Newchannel", "call,all", a.snapshot())]
    events += [
        _event("VarSet", "dialplan,all", [*a.snapshot(), ("Variable", variable), ("Value", value)])
        for variable, value in [
            ("SIPDOMAIN", "127.0.0.1"),
            ("SIPURI", f"sip:{caller[0]}@127.0.0.1:5060"),
            ("__APPLIANCE_ORIGIN", "internal"),
        ]
    ]
    events.append(_device(f"PJSIP/{caller[0]}", "INUSE"))
    for priority, (application, data) in enumerate(
        [
            ("Set", "__APPLIANCE_ORIGIN=internal"),
            ("AGI", f"agi://127.0.0.1:14573/call,{callee[0]},internal"),
            ("Dial", f"PJSIP/{callee[0]},60,tT"),
        ],
        start=1,
    ):
        a.priority = priority
        events.append(
            _event(
                "Newexten",
                "dialplan,all",
                [*a.snapshot(), ("Extension", callee[0]), ("Application", application), ("AppData", data)],
            )
        )
    b = _Channel(
        name=f"PJSIP/{callee[0]}-{2 * index + 1:08x}",
        number=callee[0],
        callerName=callee[1],
        uniqueid=f"{SYSTEM}-{epoch}.{2 * index + 1}",
        linkedid=a.linkedid,
        context="phones",
        exten="s",
    )
    events.append(_event("Newchannel", "call,all", b.snapshot()))
    b.connected = (caller[0], caller[1])
    b.exten = callee[0]
    events.append(_event("VarSet", "dialplan,all", [*b.snapshot(), ("Variable", "SIPCALLID"), ("Value", "")]))
    events.append(
        _event("DialBegin", "call,all", [*a.snapshot(), *b.snapshot("Dest"), ("DialString", callee[0])])
    )
    b.state = (5, "Ringing")
    events.append(_event("Newstate", "call,all", b.snapshot()))
    events.append(_device(f"PJSIP/{callee[0]}", "RINGING"))
    b.state = (6, "Up")
    events.append(_event("Newstate", "call,all", b.snapshot()))
    events.append(_device(f"PJSIP/{callee[0]}", "INUSE"))
    a.state = (6, "Up")
    a.connected = (callee[0], callee[1])
    events.append(_event("Newstate", "call,all", a.snapshot()))
    events.append(
        _event(
            "DialEnd",
            "call,all",
            [*a.snapshot(), *b.snapshot("Dest"), ("DialStatus", "ANSWER"), ("Forward", "")],
        )
    )
    for variable, value in [("DIALEDPEERNAME", b.name), ("DIALSTATUS", "ANSWER"), ("ANSWEREDTIME", "12")]:
        events.append(
            _event("VarSet", "dialplan,all", [*a.snapshot(), ("Variable", variable), ("Value", value)])
        )
    b.exten = ""
    cause = [("Cause", "16"), ("Cause-txt", "Normal Clearing")]
    events.append(_event("Hangup", "call,all", [*b.snapshot(), *cause]))
    events.append(_device(f"PJSIP/{callee[0]}", "NOT_INUSE"))
    events.append(_event("Hangup", "call,all", [*a.snapshot(), *cause]))
    events.append(_device(f"PJSIP/{caller[0]}", "NOT_INUSE"))
    return events


def recordedStream(calls: int = CALLS) -> tuple[bytes, int]:
    """The greeting and C{calls} calls' events as wire bytes; and how many events."""
    events = [event for index in range(calls) for event in _call(index)]
    return (GREETING + "\r\n" + "".join(events)).encode("utf-8"), len(events)


def chunked(stream: bytes, size: int = CHUNK) -> list[bytes]:
    """Cut the stream as reads from a socket would: anywhere, even mid-line."""
    return [stream[offset : offset + size] for offset in range(0, len(stream), size)]


# The two parsers ----------------------------------------------------------------


class BareAMIParser(LineReceiver):
    """Baseline: split lines, build one dict per message, hand it over."""

    delimiter = b"\r\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(self, eventHandler: Callable[[dict[str, str]], object]) -> None:
        self.eventHandler = eventHandler
        self.firstLine = True
        self.current: dict[str, str] = {}

    def lineReceived(self, line: bytes) -> None:
        if self.firstLine:
            self.firstLine = False
            return
        if not line:
            if self.current:
                self.eventHandler(self.current)
                self.current = {}
            return
        key, _, value = line.decode("utf-8").partition(": ")
        self.current[key] = value


def _ours(handler: Callable[[object], object]) -> LineReceiver:
    return AMIProtocol(eventHandler=handler)


def _bare(handler: Callable[[object], object]) -> LineReceiver:
    return BareAMIParser(eventHandler=handler)


PARSERS: Sequence[tuple[str, Callable[[Callable[[object], object]], LineReceiver]]] = (
    ("AMIProtocol", _ours),
    ("bare LineReceiver", _bare),
)


# Measuring ----------------------------------------------------------------------


@dataclass(frozen=True)
class AMIResult:
    parser: str
    events: int
    elapsed: float
    cpu: float
    streamEvents: int
    streamBytes: int
    rounds: int = 1

    @property
    def perSecond(self) -> float:
        """Events per second of wall time."""
        return self.events / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def perCpuSecond(self) -> float:
        """Events per second of this process's CPU time: what the parser costs,
        whatever else the machine is doing."""
        return self.events / self.cpu if self.cpu > 0 else float("nan")


def feed(make: Callable[[Callable[[object], object]], LineReceiver], chunks: Sequence[bytes]) -> int:
    """One pass: a fresh connection receives every chunk; the events delivered."""
    delivered = 0

    def handler(event: object) -> None:
        nonlocal delivered
        delivered += 1

    protocol = make(handler)
    protocol.makeConnection(StringTransport())
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return delivered


def measure(
    name: str,
    make: Callable[[Callable[[object], object]], LineReceiver],
    chunks: Sequence[bytes],
    expected: int,
    seconds: float,
    now: Callable[[], float] = time.perf_counter,
    cpuNow: Callable[[], float] = time.process_time,
) -> AMIResult:
    """Whole passes over the stream until C{seconds} of wall time have passed."""
    events = 0
    began, cpu_began = now(), cpuNow()
    while True:
        delivered = feed(make, chunks)
        if delivered != expected:
            raise RuntimeError(f"{name} delivered {delivered} events, the stream holds {expected}")
        events += delivered
        elapsed = now() - began
        if elapsed >= seconds:
            cpu = cpuNow() - cpu_began
            return AMIResult(name, events, elapsed, cpu, expected, sum(map(len, chunks)))


def run(
    rounds: int = ROUNDS, seconds: float = SECONDS, progress: Callable[[str], None] = lambda _: None
) -> list[AMIResult]:
    """Best of C{rounds} for each parser, the parsers alternating."""
    stream, expected = recordedStream()
    chunks = chunked(stream)
    best: dict[str, AMIResult] = {}
    for index in range(rounds):
        for name, make in PARSERS:
            progress(f"ami: {name}, round {index + 1} of {rounds} ...")
            result = measure(name, make, chunks, expected, seconds)
            if name not in best or result.perCpuSecond > best[name].perCpuSecond:
                best[name] = replace(result, rounds=rounds)
    return [best[name] for name, _ in PARSERS]


def report(results: Sequence[AMIResult]) -> str:
    header = ["parser", "events", "CPU s", "events/CPU s", "CPU us/event", "MB/CPU s", "events/wall s"]
    rows = [
        [
            r.parser,
            fmt(r.events),
            fmt(r.cpu, 2),
            fmt(r.perCpuSecond),
            fmt(1e6 / r.perCpuSecond, 2),
            fmt(r.perCpuSecond * r.streamBytes / r.streamEvents / 1e6, 1),
            fmt(r.perSecond),
        ]
        for r in results
    ]
    if len(results) == 2:
        ours, bare = results
        rows.append(
            [
                "  ratio ours/bare",
                "",
                "",
                fmt(ratio(ours.perCpuSecond, bare.perCpuSecond), 2) + "x",
                fmt(ratio(bare.perCpuSecond, ours.perCpuSecond), 2) + "x",
                "",
                fmt(ratio(ours.perSecond, bare.perSecond), 2) + "x",
            ]
        )
    first = results[0]
    title = (
        f"AMI event parsing: {first.streamEvents} events ({first.streamBytes:,} bytes, {CALLS} calls) "
        f"fed in {CHUNK}-byte chunks; best of {first.rounds} rounds\n"
    )
    return title + table(header, rows)
