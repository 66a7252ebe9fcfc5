"""Per-call cost of the directory at 10 users / 100 contacts and at 10,000 users /
100,000 contacts: the growth must be flat.

No lab needed::

    .venv/bin/python -m bench.directory --rounds 500

For each size a store file is filled (users with further numbers and groups,
groups with numbers, contacts with two numbers each, forwards, a breakthrough
list), then a fresh process builds the real appliance over it (``tap.build``,
as ``twistd`` does, without starting its network services) and measures, on
its one thread:

- ``routed call``: the FastAGI ``call`` route for an external caller (trunk
  channel, caller ID in another spelling than the stored contact and
  breakthrough entries) to a user with an unconditional forward: caller and
  numbering lookups, forwards, breakthrough, display.  The AGI session
  answers at once, so the time is the appliance's own work on the reactor.
- ``missed resolution``: what the missed-call service looks up when a call
  ends (contact by number, owners of the rung lines, internal caller).
- ``missed finish``: the whole end of a missed call: resolution, policy,
  journal entry, mail rendering and one store transaction (with fsync).

Printed: p50/p99 in milliseconds per size (wall-clock, and the thread's CPU
time, which a busy machine does not inflate), the ratio large/small beside the
goals (≤ 1.5, p99 ≤ 2 ms), and the measuring process's RSS (goal ≤ 150 MB at
the large size).  The small size is the baseline measured in the same run.
Last, a ``.vcf`` import of 20,000 cards run as the appliance runs it (sliced on
the reactor): the longest time one slice held the reactor (goal: ~50 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import fmt, percentile, ratio, table

SIZES = {"small": (10, 100), "large": (10_000, 100_000)}
BATCH = 1000


def fill(path: Path, users: int, contacts: int) -> None:
    """A store with ``users`` users (ext 10000…), 100 groups and ``contacts`` contacts."""
    from appliance.contacts import Contact, ContactDirectory
    from appliance.directory import Directory, Group, User
    from appliance.forwarding.records import Forward, Forwards
    from appliance.settings import Settings
    from appliance.store import SQLiteStore

    store = SQLiteStore(path)
    directory = Directory(store)
    for start in range(0, users, BATCH):
        directory.put_users(
            [
                User(
                    str(10000 + i),
                    f"User {i}",
                    f"user{i}@example.org",
                    "de" if i % 2 else "en",
                    groups=(f"g{i % 100}",),
                    numbers=(f"+4930555{10000 + i}",),
                    devices=(f"{10000 + i}-soft",),
                )
                for i in range(start, min(users, start + BATCH))
            ]
        )
    for g in range(100):
        directory.put_group(Group(f"g{g}", str(9000 + g)))
    forwards = Forwards(store)
    for i in range(0, users, 2):
        forwards.set(str(10000 + i), Forward("unconditional", str(10000 + (i + 1) % users)))
    book = ContactDirectory(store)
    for start in range(0, contacts, BATCH):
        book.put(
            Contact(f"c{i:06}", f"Contact {i} Example", (f"030 {2000000 + i}", f"+49 171 {3000000 + i}"))
            for i in range(start, min(contacts, start + BATCH))
        )
    Settings(store).set_many(
        {
            "FWD_BREAKTHROUGH_CALLERIDS": "\n".join(f"0171 {3000000 + i}" for i in range(0, 50)),
            "MC_EXCLUDE_NUMBERS": "\n".join(f"030 {9000000 + i}" for i in range(0, 50)),
        }
    )
    store.close()


class Session:
    """An AGI session whose every command succeeds at once (no Asterisk)."""

    def __init__(self, number: str, caller: str) -> None:
        from appliance.asterisk.fastagi import AGIArgs

        self.args = AGIArgs(query={}, positional=(number, "external"))
        self.env = {
            "agi_callerid": caller,
            "agi_calleridname": "Caller",
            "agi_channel": "PJSIP/trunk-00000001",
            "agi_uniqueid": "1.1",
        }
        self.variables: dict[str, str] = {}

    def exec_(self, application: str, options: str = "") -> Any:
        from twisted.internet.defer import succeed

        if application == "Dial":
            self.variables["DIALSTATUS"] = "NOANSWER"
        return succeed(0)

    def getVariable(self, name: str) -> Any:
        from twisted.internet.defer import succeed

        return succeed(self.variables.get(name))

    def setVariable(self, name: str, value: str) -> Any:
        from twisted.internet.defer import succeed

        self.variables[name] = value
        return succeed(None)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(directory: Path, users: int, contacts: int, rounds: int) -> dict[str, Any]:
    """In a fresh process: build the appliance over the filled store and time the call path."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from appliance import tap
    from appliance.missed.tracking import Leg, TrackedCall

    config = directory / "config.ini"
    config.write_text(
        "[ami]\nhost = 127.0.0.1\nport = 1\nusername = x\nsecret = x\n"
        "[fastagi]\nbind = 127.0.0.1\nport = 0\n[web]\nbind = 127.0.0.1\nport = 0\n"
        "[smtp]\nhost = 127.0.0.1\nport = 1\nstarttls = off\nsender = appliance@localhost\n"
        f"[store]\npath = {directory / 'store.sqlite3'}\n[appliance]\nlanguage = de\n"
    )
    started = time.perf_counter()
    appliance = tap.build(str(config), reactor)
    build_seconds = time.perf_counter() - started
    pick = random.Random(7)
    timings: dict[str, list[float]] = {name: [] for name in ("routed", "resolved", "finished")}
    cpu: dict[str, list[float]] = {name: [] for name in timings}

    def timed(name: str, work: Any, *args: Any) -> Any:
        wall, used = time.perf_counter(), time.thread_time()
        result = work(*args)
        cpu[name].append(time.thread_time() - used)
        timings[name].append(time.perf_counter() - wall)
        return result

    for n in range(rounds):
        i = pick.randrange(0, users, 2)  # even users forward to the next one
        c = pick.randrange(contacts)
        caller = f"0049171{3000000 + c}" if n % 2 else f"+4930{2000000 + c}"
        result: Deferred[Any] = timed("routed", appliance.router, Session(str(10000 + i), caller))
        assert result.called, "the route waited for something"
        call = TrackedCall(f"bench-{n}", 1000.0 + n, caller_num=caller, caller_endpoint="trunk")
        call.legs["leg"] = Leg("leg", f"{10000 + i}-soft", 1000.0 + n, 1000.5 + n, 1010.0 + n)
        facts, contact = timed("resolved", appliance.missed.facts, call)
        assert contact is not None and facts.participants, "caller or owner not found"
        timed("finished", appliance.missed.finish, call)
    return {
        **{name: sorted(values) for name, values in timings.items()},
        **{f"cpu_{name}": sorted(values) for name, values in cpu.items()},
        "rss_mb": rss_mb(),
        "build_s": build_seconds,
    }


def import_slices(cards: int) -> dict[str, float]:
    """A ``.vcf`` import of ``cards`` cards as the appliance runs it (ContactJobs on the
    reactor, tap's cooperator): the longest time one slice held the reactor."""
    from twisted.internet import reactor, task

    from appliance.contacts import ContactDirectory
    from appliance.contactsync import ContactJobs
    from appliance.slices import SLICE_PAUSE
    from appliance.store import SQLiteStore

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    store = SQLiteStore(work / "store.sqlite3")
    held: list[float] = []
    busy: list[float] = []

    def timed(run: Any) -> Any:
        def tick() -> None:
            started, used = time.perf_counter(), time.thread_time()
            run()
            held.append(time.perf_counter() - started)
            busy.append(time.thread_time() - used)

        return reactor.callLater(SLICE_PAUSE, tick)

    jobs = ContactJobs(ContactDirectory(store), task.Cooperator(scheduler=timed), reactor)
    text = "".join(
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:v{i}\r\nFN:Card {i}\r\nTEL:030 {4000000 + i}\r\n"
        f"TEL:+49 172 {5000000 + i}\r\nEND:VCARD\r\n"
        for i in range(cards)
    )
    started = time.perf_counter()
    outcome: list[Any] = []

    def run() -> None:
        jobs.import_vcf(text).addBoth(outcome.append).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    assert outcome and outcome[0] == cards, outcome
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    held.sort()
    over = sum(1 for seconds in held if seconds > 0.050)
    return {
        "total_s": total,
        "max_ms": held[-1] * 1000,
        "p99_ms": percentile(held, 0.99) * 1000,
        "slices": len(held),
        "over_50ms": over,
        "cpu_max_ms": max(busy) * 1000,
        "cpu_over_50ms": sum(1 for seconds in busy if seconds > 0.050),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--contacts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--import-cards", type=int, default=20_000, help="cards in the sliced import")
    parser.add_argument("--measure-import", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.users, args.contacts, args.rounds)))
        return 0
    if args.measure_import:
        print(json.dumps(import_slices(args.import_cards)))
        return 0
    results: dict[str, dict[str, Any]] = {}
    for size, (users, contacts) in SIZES.items():
        work = Path(tempfile.mkdtemp(prefix=f"bench-directory-{size}-"))
        started = time.perf_counter()
        fill(work / "store.sqlite3", users, contacts)
        print(f"{size}: {users} users, {contacts} contacts filled in {time.perf_counter() - started:.0f} s")
        output = subprocess.run(
            [sys.executable, "-m", "bench.directory", "--measure", str(work), "--users", str(users),
             "--contacts", str(contacts), "--rounds", str(args.rounds)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        results[size] = json.loads(output.strip().splitlines()[-1])
        shutil.rmtree(work, ignore_errors=True)
    labels = (("routed", "routed call"), ("resolved", "missed resolution"), ("finished", "missed finish"))
    header = ["operation", "p50 small", "p50 large", "p99 small", "p99 large", "ratio p50", "ratio p99"]
    for prefix, title in (
        ("", "wall-clock time the reactor is held"),
        ("cpu_", "CPU time of the reactor thread"),
    ):
        rows = []
        for what, label in labels:
            small, large = results["small"][prefix + what], results["large"][prefix + what]
            cells = []
            for q in (0.5, 0.99):
                cells += [fmt(percentile(small, q) * 1000, 3), fmt(percentile(large, q) * 1000, 3)]
            p50 = ratio(percentile(large, 0.5), percentile(small, 0.5))
            p99 = ratio(percentile(large, 0.99), percentile(small, 0.99))
            rows.append([label, *cells, fmt(p50, 2), fmt(p99, 2)])
        print()
        print(f"{title} per operation, ms ({args.rounds} rounds; small = 10 users/100 contacts, "
              "large = 10,000 users/100,000 contacts)")  # fmt: skip
        print(table(header, rows))
    print("goal: ratio large/small <= 1.5, p99 <= 2 ms")
    print()
    print(
        table(
            ["size", "RSS MB", "start-up s"],
            [[size, fmt(r["rss_mb"], 1), fmt(r["build_s"], 2)] for size, r in results.items()],
        )
    )
    print("goal: RSS <= 150 MB at the large size")
    output = subprocess.run(
        [sys.executable, "-m", "bench.directory", "--measure-import",
         "--import-cards", str(args.import_cards)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    sliced = json.loads(output.strip().splitlines()[-1])
    print()
    print(
        f".vcf import of {args.import_cards} cards in slices: {sliced['total_s']:.1f} s in all; "
        f"{sliced['slices']} slices, p99 {sliced['p99_ms']:.1f} ms, longest {sliced['max_ms']:.1f} ms, "
        f"{sliced['over_50ms']} over 50 ms (goal: ~50 ms; each batch ends with an fsync); CPU time per "
        f"slice: longest {sliced['cpu_max_ms']:.1f} ms, {sliced['cpu_over_50ms']} over 50 ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
