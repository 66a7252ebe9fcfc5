"""Hardening figures against a real ``twistd -n appliance`` on loopback.

    python -m bench.hardening [--post-mb 300] [--idle 1000] [--logins 200]

Starts the appliance as its own process (AMI pointed at a closed port: no
Asterisk is needed for these figures), then, each beside a baseline taken in
the same run without the attack:

1. ``--post-mb`` MB unauthenticated POSTs to ``/login`` (Content-Length, then
   chunked), one after the other for ``--seconds``, while a client times
   FastAGI requests: the appliance's RSS growth and the FastAGI p50/p99;
2. ``--idle`` idle FastAGI connections that never send an environment: how
   many the server closed and how long the last one took, the RSS growth, and a
   FastAGI request timed while they are open;
3. ``--logins`` parallel wrong logins to ``admin`` from one address: how many
   passwords the appliance checked (its "web login failed" log lines), and
   the answers the clients got.

Every loop is bounded in count and time; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench._report import fmt, percentile, table

HOST = "127.0.0.1"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Appliance:
    """``twistd -n appliance`` in a temporary directory, its log in a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fastagi = free_port()
        self.web = free_port()
        config = workdir / "config.ini"
        config.write_text(
            f"""[ami]
host = {HOST}
port = {free_port()}
username = bench
secret = bench
[fastagi]
bind = {HOST}
port = {self.fastagi}
[web]
bind = {HOST}
port = {self.web}
[smtp]
host = {HOST}
port = {free_port()}
starttls = off
sender = bench@localhost
[store]
path = store.sqlite3
[appliance]
language = en
"""
        )
        self.log = open(workdir / "twistd.log", "wb")  # closed in stop()
        twistd = Path(sys.executable).with_name("twistd")
        self.process = subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", "appliance", "--config", str(config)],
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        for port in (self.fastagi, self.web):
            while True:
                if self.process.poll() is not None:
                    raise SystemExit(f"appliance exited: {(self.workdir / 'twistd.log').read_text()[-2000:]}")
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"appliance not listening on {port} within 60 s") from None
                    time.sleep(0.1)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def log_text(self) -> str:
        self.log.flush()
        return (self.workdir / "twistd.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


# --- FastAGI timing ---------------------------------------------------------------

ENVIRONMENT = (
    b"agi_network: yes\nagi_network_script: feature\nagi_request: agi://127.0.0.1/feature\n"
    b"agi_channel: PJSIP/100-00000001\nagi_uniqueid: 1.1\nagi_callerid: 100\nagi_arg_1: *999\n\n"
)


def fastagi_request(port: int) -> float:
    """One request as Asterisk makes it (an unknown feature code: the appliance answers
    with EXEC Playback, we reply, it closes); seconds from connect to close."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(ENVIRONMENT)
        received = b""
        while b"\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("FastAGI closed without a command")
            received += chunk
        sock.sendall(b"200 result=0\n")
        while sock.recv(4096):
            pass
    return time.perf_counter() - started


class FastAGIProbe:
    """Times FastAGI requests back to back in a thread until stopped (at most ``limit``)."""

    def __init__(self, port: int, limit: int = 20_000) -> None:
        self.port = port
        self.limit = limit
        self.times: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.times) + self.errors < self.limit:
            try:
                self.times.append(fastagi_request(self.port))
            except (OSError, RuntimeError):
                self.errors += 1

    def __enter__(self) -> FastAGIProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def figures(self) -> tuple[str, str, str]:
        ordered = sorted(self.times)
        return (
            str(len(ordered)),
            fmt(percentile(ordered, 0.5) * 1000, 2),
            fmt(percentile(ordered, 0.99) * 1000, 2),
        )


@contextmanager
def rss_peak(appliance: Appliance) -> Iterator[list[float]]:
    """Samples the appliance's RSS every 20 ms; yields [before, peak] (peak filled at exit)."""
    result = [appliance.rss_mb(), 0.0]
    stop = threading.Event()

    def sample() -> None:
        peak = result[0]
        while not stop.wait(0.02):
            peak = max(peak, appliance.rss_mb())
        result[1] = peak

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=10)


# --- 1. big POST -----------------------------------------------------------------


def big_post(port: int, size: int, chunked: bool) -> tuple[int, str]:
    """Send a POST of ``size`` bytes until the server stops us; (bytes sent, status line)."""
    head = f"POST /login HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    block = b"a" * MB
    piece = (b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block
    sent = 0
    status = "-"
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            while sent < size:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered early
                sock.sendall(piece)
                sent += len(block)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        try:
            first = sock.recv(200).split(b"\r\n", 1)[0]
            status = first.decode("latin-1") or "closed"
        except OSError as error:
            status = f"reset ({error.__class__.__name__})"
    return sent, status


def post_figures(appliance: Appliance, megabytes: int, seconds: float) -> list[list[str]]:
    rows = []
    with FastAGIProbe(appliance.fastagi) as probe:
        time.sleep(seconds)  # baseline window, same process, nothing else running
    rows.append(["FastAGI alone (baseline)", *probe.figures(), "-", "-", "-"])
    for chunked in (False, True):
        with rss_peak(appliance) as rss, FastAGIProbe(appliance.fastagi) as probe:
            outcomes: list[tuple[int, str]] = []
            until = time.monotonic() + seconds
            while time.monotonic() < until and len(outcomes) < 10_000:
                outcomes.append(big_post(appliance.web, megabytes * MB, chunked))
        rounds = len(outcomes)
        sent = max(bytes_sent for bytes_sent, _ in outcomes)
        statuses = Counter(status for _, status in outcomes)
        rows.append(
            [
                f"{megabytes} MB POST /login x{rounds} ({'chunked' if chunked else 'Content-Length'})",
                *probe.figures(),
                fmt(rss[1] - rss[0], 1),
                fmt(sent / MB, 1),
                ", ".join(f"{s} x{n}" for s, n in statuses.items()),
            ]
        )
    return rows


# --- 2. idle FastAGI connections ----------------------------------------------------


def idle_figures(appliance: Appliance, count: int) -> list[list[str]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 200), hard))
    baseline = sorted(fastagi_request(appliance.fastagi) for _ in range(200))
    before = appliance.rss_mb()
    opened: dict[int, tuple[socket.socket, float]] = {}
    closed_after: list[float] = []
    poller = select.epoll()
    started = time.monotonic()
    for _ in range(count):
        sock = socket.create_connection((HOST, appliance.fastagi), timeout=10)
        sock.setblocking(False)
        opened[sock.fileno()] = (sock, time.monotonic())
        poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP)
    peak = appliance.rss_mb()
    during = sorted(fastagi_request(appliance.fastagi) for _ in range(200))  # new calls meanwhile
    deadline = started + 15.0
    while opened and time.monotonic() < deadline:
        for fd, _ in poller.poll(0.2):
            sock, at = opened.pop(fd)
            try:
                data = sock.recv(100)
            except OSError:
                data = b""
            if data in (b"", b"FAILURE\n"):
                closed_after.append(time.monotonic() - at)
            poller.unregister(fd)
            sock.close()
    still_open = len(opened)
    for sock, _ in opened.values():
        sock.close()
    poller.close()
    slowest = max(closed_after, default=float("nan"))
    return [
        ["FastAGI request, no idle connections (baseline)", "200", *ms(baseline), "-", "-", "-"],
        [
            f"FastAGI request while {count} idle connections open",
            "200",
            *ms(during),
            f"{len(closed_after)} / {count}",
            fmt(slowest, 2),
            fmt(peak - before, 1),
        ],
        ["idle connections still open after 15 s", str(still_open), "", "", "", "", ""],
    ]


def ms(ordered: list[float]) -> tuple[str, str]:
    return fmt(percentile(ordered, 0.5) * 1000, 2), fmt(percentile(ordered, 0.99) * 1000, 2)


# --- 3. parallel wrong logins -------------------------------------------------------


def login_form(port: int, source: str) -> tuple[str, str]:
    """(cookie, csrf token) of a fresh login form."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", "/login")
        response = connection.getresponse()
        body = response.read().decode()
        cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
        token = re.search(r'name="csrf" value="([^"]*)"', body)
        return cookie, token.group(1) if token else ""
    finally:
        connection.close()


def wrong_login(port: int, source: str, cookie: str, token: str) -> str:
    connection = http.client.HTTPConnection(HOST, port, timeout=60, source_address=(source, 0))
    try:
        body = f"csrf={token}&login=admin&password=wrong-guess"
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        connection.request("POST", "/login", body=body, headers=headers)
        return str(connection.getresponse().status)
    except OSError as error:
        return f"refused ({error.__class__.__name__})"
    finally:
        connection.close()


def login_figures(appliance: Appliance, count: int, sources: Callable[[int], str], label: str) -> list[str]:
    before = appliance.log_text().count("web login failed for")
    forms = [login_form(appliance.web, sources(n)) for n in range(count)]
    barrier = threading.Barrier(count, timeout=60)

    def attempt(n: int) -> str:
        barrier.wait()
        return wrong_login(appliance.web, sources(n), *forms[n])

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        answers = Counter(pool.map(attempt, range(count)))
    checked = appliance.log_text().count("web login failed for") - before
    return [label, str(count), str(checked), ", ".join(f"{a} x{n}" for a, n in sorted(answers.items()))]


def spread(n: int) -> str:
    """The n-th of many loopback source addresses (127.0.1.1, 127.0.1.2, ...)."""
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--post-mb", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each POST run")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--logins", type=int, default=200)
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    appliance = Appliance(workdir)
    try:
        print(f"appliance pid {appliance.process.pid}, RSS at start {appliance.rss_mb():.1f} MB\n")
        print("1. Unauthenticated big POST while FastAGI requests are timed")
        header = ["run", "FastAGI reqs", "p50 ms", "p99 ms", "RSS growth MB", "MB sent", "answers"]
        print(table(header, post_figures(appliance, options.post_mb, options.seconds)))
        print("\n2. Idle FastAGI connections (no environment ever sent)")
        header = ["run", "n", "p50 ms", "p99 ms", "closed by server", "slowest close s", "RSS growth MB"]
        print(table(header, idle_figures(appliance, options.idle)))
        print("\n3. Parallel wrong logins to admin")
        rows = [
            login_figures(appliance, options.logins, lambda n: HOST, "all from 127.0.0.1"),
            login_figures(appliance, options.logins, spread, "each from its own address"),
        ]
        print(table(["clients", "logins", "passwords checked", "answers"], rows))
    finally:
        appliance.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
