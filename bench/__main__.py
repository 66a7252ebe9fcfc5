"""Run the benchmarks and print their tables.

    python -m bench                 # everything (about a minute)
    python -m bench ami             # AMI event parsing only (a few seconds)
    python -m bench fastagi         # FastAGI over loopback only
    python -m bench fastagi --requests 2000 --seconds 5 --concurrency 1,50

Progress goes to stderr, the tables to stdout.  Log events of warning level
and above go to stderr; lower ones are dropped by a level filter (the
C{FastAGI + journal log} row shows the cost of writing them all, as the
shipped unit does).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from twisted.copyright import version as twisted_version
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from bench import ami, fastagi
from bench._report import fmt

BENCHMARKS = ("ami", "fastagi")


def _options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the protocol benchmarks.")
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=fastagi.REQUESTS,
        help="fastagi: measured sessions per scenario (default %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=fastagi.SECONDS,
        help="fastagi: time limit per scenario, whichever comes first (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, fastagi.CONCURRENCY)),
        help="fastagi: concurrent sessions, comma-separated (default %(default)s)",
    )
    options = parser.parse_args(argv)
    unknown = sorted(set(options.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options.benchmarks = options.benchmarks or list(BENCHMARKS)
    try:
        options.concurrency = [int(part) for part in options.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency wants numbers like 1,50,200, not {options.concurrency!r}")
    return options


def _startLogging() -> None:
    """Warnings and errors to stderr; lower levels are filtered out."""
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _machine(reactor: Any) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Twisted {twisted_version}, {type(reactor).__name__}; "
        f"{os.cpu_count()} CPUs, {cpu}; {platform.system()} {platform.release()}"
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load() -> str:
    """The load average, so a busy machine shows in the output."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


async def _main(reactor: Any, options: argparse.Namespace) -> None:
    began = time.monotonic()
    stall = fastagi.cpuStallSeconds()
    print(_machine(reactor), flush=True)
    print(f"before: {_load()}", flush=True)
    if "ami" in options.benchmarks:
        print("\n" + ami.report(ami.run(progress=_progress)), flush=True)
    if "fastagi" in options.benchmarks:
        results = await fastagi.run(
            reactor, options.concurrency, options.requests, options.seconds, progress=_progress
        )
        print("\n" + fastagi.report(results), flush=True)
    elapsed = time.monotonic() - began
    stalled = 100 * (fastagi.cpuStallSeconds() - stall) / elapsed
    print(f"\nafter: {_load()}; CPU stall {fmt(stalled)} % of the run; total {elapsed:.0f} s", flush=True)


def main(argv: Sequence[str]) -> None:
    options = _options(argv)
    _startLogging()
    react(lambda reactor: Deferred.fromCoroutine(_main(reactor, options)))


if __name__ == "__main__":
    main(sys.argv[1:])
