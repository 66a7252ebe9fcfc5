"""Phones for end-to-end tests: sipp processes speaking real SIP to the lab.

Each action runs one sipp process with a scenario rendered from
``scenarios/*.xml`` and returns a `SippRun` whose ``done`` Deferred fires
when sipp exits (errback on a non-zero exit, with sipp's complaint).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger

SCENARIOS = Path(__file__).parent / "scenarios"
log = Logger()


class SippFailed(Exception):
    """sipp exited non-zero: the call did not go as the scenario says."""


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody holds now (sipp needs explicit ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _SippProcess(protocol.ProcessProtocol):
    def __init__(self, name: str, done: defer.Deferred[None], workdir: Path) -> None:
        self.name = name
        self.done = done
        self.workdir = workdir
        self.output = bytearray()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        code = getattr(getattr(reason, "value", None), "exitCode", None)
        if code == 0:
            self.done.callback(None)
            return
        errors = "".join(
            path.read_text(errors="replace")[-3000:] for path in self.workdir.glob("*errors.log")
        )
        tail = self.output.decode(errors="replace")[-1500:]
        self.done.errback(SippFailed(f"{self.name}: sipp exit {code}\n{tail}\n{errors}"))


@dataclass
class SippRun:
    name: str
    transport: object
    done: defer.Deferred[None]

    def kill(self) -> None:
        """Stop sipp; whatever it was waiting for no longer matters."""
        self.done.addErrback(lambda _failure: None)
        try:
            self.transport.signalProcess("KILL")  # type: ignore[attr-defined]
        except error.ProcessExitedAlready:
            pass


@dataclass
class Phone:
    """One lab extension played by sipp on its own loopback ports."""

    reactor: IReactorProcess
    sip_host: str
    sip_port: int
    extension: str
    port: int = field(default_factory=free_udp_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="phone-")))
    runs: list[SippRun] = field(default_factory=list)

    def _run(
        self,
        scenario: str,
        values: Mapping[str, object],
        *args: str,
        local_port: int | None = None,
        timeout: int = 60,
    ) -> SippRun:
        template = (SCENARIOS / f"{scenario}.xml").read_text()
        rendered = template.format(**{"ext": self.extension, **values})
        name = f"{self.extension}-{scenario}-{len(self.runs)}"
        path = self.workdir / f"{name}.xml"
        path.write_text(rendered)
        command = [
            shutil.which("sipp") or "sipp",
            f"{self.sip_host}:{self.sip_port}",
            "-sf",
            str(path),
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port or free_udp_port()),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(free_udp_port()),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            str(timeout),
            "-timeout_error",
            "-trace_err",
            *args,
        ]
        done: defer.Deferred[None] = defer.Deferred()
        transport = self.reactor.spawnProcess(
            _SippProcess(name, done, self.workdir),
            command[0],
            command,
            env=dict(os.environ),
            path=str(self.workdir),
        )
        run = SippRun(name, transport, done)
        self.runs.append(run)
        log.info("sipp {name} started", name=name)
        return run

    def register(self, expires: int = 3600) -> SippRun:
        """Log the phone in: its contact is the port its answering scenarios use."""
        return self._run("register", {"contact_port": self.port, "expires": expires}, timeout=10)

    def unregister(self) -> SippRun:
        """Log the phone out."""
        return self.register(expires=0)

    def answer(self, ring_ms: int = 500, hold_ms: int | None = None) -> SippRun:
        """Wait for one call, ring ``ring_ms``, answer; hang up after ``hold_ms`` or
        wait for the caller's BYE when ``hold_ms`` is None."""
        scenario = "answer" if hold_ms is None else "answer_hangup"
        return self._run(scenario, {"ring_ms": ring_ms, "hold_ms": hold_ms or 0}, local_port=self.port)

    def call(self, target: str, hold_ms: int = 1000, caller_name: str = "") -> SippRun:
        """Call ``target``, stay ``hold_ms`` once answered, then hang up."""
        name = caller_name or f"Phone {self.extension}"
        return self._run("call", {"target": target, "hold_ms": hold_ms, "name": name})

    def kill_all(self) -> None:
        for run in self.runs:
            run.kill()
