"""Phones for end-to-end tests: sipp processes speaking real SIP to the lab.

Each action runs one sipp process with a scenario rendered from
``scenarios/*.xml`` and returns a `SippRun` whose ``done`` Deferred fires
when sipp exits (errback on a non-zero exit, with sipp's complaint).  Every
run binds ports of its own block (`tests.e2e.portblocks`); a sipp that cannot
start at all fails the test's pending waits at once with its own message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger

from appliance.lab import LabPorts
from tests.e2e.portblocks import PortBlock, PortBlocks
from tests.e2e.waiting import abort_waits

SCENARIOS = Path(__file__).parent / "scenarios"
log = Logger()

SIPP_COULD_NOT_BIND = 254
"""sipp's exit code -2: a socket could not be bound, so the scenario never ran, whatever
the test expected of it.  (-1 also ends a run that timed out; a bad scenario file is
caught before sipp starts.)"""


class SippFailed(Exception):
    """sipp exited non-zero: the call did not go as the scenario says."""


class _SippProcess(protocol.ProcessProtocol):
    def __init__(
        self, name: str, done: defer.Deferred[None], workdir: Path, ended: Callable[[], None]
    ) -> None:
        self.name = name
        self.done = done
        self.workdir = workdir
        self.ended = ended
        self.output = bytearray()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        self.ended()
        code = getattr(getattr(reason, "value", None), "exitCode", None)
        if code == 0:
            self.done.callback(None)
            return
        errors = "".join(
            path.read_text(errors="replace")[-3000:] for path in self.workdir.glob(f"{self.name}_*errors.log")
        )
        tail = self.output.decode(errors="replace")[-1500:]
        failure = SippFailed(f"{self.name}: sipp exit {code}\n{tail}\n{errors}")
        if code == SIPP_COULD_NOT_BIND:
            log.error("sipp {name} could not bind its ports", name=self.name)
            abort_waits(failure)
        self.done.errback(failure)


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
    """One lab extension played by sipp on its own loopback ports.

    Its home block's SIP port is the registered contact, where the answering
    scenarios listen; every sipp run takes a block of its own for the rest.
    """

    reactor: IReactorProcess
    lab: LabPorts
    extension: str
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="phone-")))
    runs: list[SippRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blocks = PortBlocks.for_lab(self.lab)
        self.home: PortBlock | None = self.blocks.take()

    @property
    def port(self) -> int:
        """The phone's contact port: where Asterisk sends its calls."""
        assert self.home is not None, f"phone {self.extension} is closed"
        return self.home.sip

    def _run(
        self,
        scenario: str,
        values: Mapping[str, object],
        *args: str,
        local_port: int | None = None,
        timeout: int = 60,
        calls: int = 1,
    ) -> SippRun:
        template = (SCENARIOS / f"{scenario}.xml").read_text()
        rendered = template.format(**{"ext": self.extension, **values})
        ElementTree.fromstring(rendered)  # a broken scenario fails here, not after a wait
        name = f"{self.extension}-{scenario}-{len(self.runs)}"
        path = self.workdir / f"{name}.xml"
        path.write_text(rendered)
        block = self.blocks.take()
        command = [
            shutil.which("sipp") or "sipp",
            f"{self.lab.host}:{self.lab.sip}",
            "-sf",
            str(path),
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port or block.sip),
            "-cp",
            str(block.control),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(block.media),
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            str(timeout),
            "-timeout_error",
            "-trace_err",
            *args,
        ]
        done: defer.Deferred[None] = defer.Deferred()
        try:
            transport = self.reactor.spawnProcess(
                _SippProcess(name, done, self.workdir, lambda: self.blocks.release(block)),
                command[0],
                command,
                env=dict(os.environ),
                path=str(self.workdir),
            )
        except BaseException:
            self.blocks.release(block)
            raise
        run = SippRun(name, transport, done)
        self.runs.append(run)
        log.info("sipp {name} started", name=name)
        return run

    def register(self, expires: int = 3600) -> SippRun:
        """Log the phone in: its contact is the port its answering scenarios use."""
        contact = f"<sip:{self.extension}@127.0.0.1:{self.port}>"
        return self._run("register", {"contact": contact, "expires": expires}, timeout=10)

    def unregister(self) -> SippRun:
        """Log the line out: every binding (``Contact: *``), also one an earlier
        test's phone left at another port, so the line is logged out for sure."""
        return self._run("register", {"contact": "*", "expires": 0}, timeout=10)

    def answer(self, ring_ms: int = 500, hold_ms: int | None = None) -> SippRun:
        """Wait for one call, ring ``ring_ms``, answer; hang up after ``hold_ms`` or
        wait for the caller's BYE when ``hold_ms`` is None."""
        scenario = "answer" if hold_ms is None else "answer_hangup"
        return self._run(scenario, {"ring_ms": ring_ms, "hold_ms": hold_ms or 0}, local_port=self.port)

    def answer_waiting(self, ring_ms: int = 300) -> SippRun:
        """An office phone with call waiting: answer one call after ``ring_ms``; a
        second call during it rings (180 Ringing, never 486) until it is cancelled.
        The run ends once both calls are over; `invites` tells what it saw."""
        return self._run(
            "answer_waiting", {"ring_ms": ring_ms}, "-trace_logs", local_port=self.port, calls=2, timeout=180
        )

    def invites(self, run: SippRun, tag: str = "INVITE-FROM") -> list[str]:
        """What a run logged under ``tag``: the From of each INVITE, ``INVITE-WAITING``
        for calls that arrived while the phone was in another call, ``INVITE-AT`` …"""
        lines: list[str] = []
        for path in sorted(self.workdir.glob(f"{run.name}_*_logs.log")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith(tag + " "):
                    lines.append(line[len(tag) + 1 :])
        return lines

    def ring_unanswered(self) -> SippRun:
        """Ring one call without answering until the caller cancels it."""
        return self._run("ring_timed", {}, "-trace_logs", local_port=self.port, timeout=120)

    def rang_seconds(self, run: SippRun) -> float:
        """How long the phone rang in a `ring_unanswered` run: from the INVITE's
        arrival to the CANCEL's, as the phone's own clock saw them."""
        [invite] = self.invites(run, "INVITE-AT")
        [cancel] = self.invites(run, "CANCEL-AT")
        return float(cancel.split()[-1]) - float(invite.split()[-1])

    def call(self, target: str, hold_ms: int = 1000, caller_name: str = "") -> SippRun:
        """Call ``target``, stay ``hold_ms`` once answered, then hang up."""
        name = caller_name or f"Phone {self.extension}"
        return self._run("call", {"target": target, "hold_ms": hold_ms, "name": name})

    def listen(self, target: str, listen_ms: int = 30000) -> SippRun:
        """Call ``target`` and wait for the other side to answer, play and hang up
        within ``listen_ms`` (`listened_seconds` tells how long it took)."""
        name = f"Phone {self.extension}"
        values = {"target": target, "listen_ms": listen_ms, "name": name, "hold_ms": 0}
        return self._run("listen", values, "-trace_logs", timeout=listen_ms // 1000 + 30)

    def listened_seconds(self, run: SippRun) -> float:
        """From the answer to the other side's BYE in a `listen` run, by the phone's clock."""
        [answered] = self.invites(run, "ANSWERED-AT")
        [bye] = self.invites(run, "BYE-AT")
        return float(bye.split()[-1]) - float(answered.split()[-1])

    def watch(self, target: str, notifies: int, report_port: int) -> SippRun:
        """A BLF key on ``target``: SUBSCRIBE (Event: dialog), send the dialog
        ``<state>`` of each of ``notifies`` NOTIFYs as a UDP datagram to
        127.0.0.1:``report_port``, then unsubscribe."""
        one = (
            '  <recv request="NOTIFY"><action>\n'
            '    <ereg regexp="confirmed|early|terminated" search_in="body" check_it="true" assign_to="s"/>\n'
            f"    <exec command=\"bash -c 'echo {self.extension} [$s]"
            f" >/dev/udp/127.0.0.1/{report_port}'\"/>\n"
            "  </action></recv>\n"
            "  <send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n"
            "[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n]]></send>\n"
        )
        return self._run("blf_watch", {"target": target, "notifies": one * notifies}, timeout=90)

    def give_up(self, target: str, ring_ms: int = 5000, caller_name: str = "") -> SippRun:
        """Call ``target``, let it ring ``ring_ms`` after the first 180, then hang up
        (CANCEL), as a caller does who stops waiting."""
        name = caller_name or f"Phone {self.extension}"
        values = {"target": target, "ring_ms": ring_ms, "name": name, "identity_header": "X-Test: gives-up"}
        return self._run("mc_call_cancel", values, timeout=ring_ms // 1000 + 30)

    def kill_all(self) -> None:
        for run in self.runs:
            run.kill()

    def close(self) -> None:
        """Kill every run and give the contact port back once they have all ended:
        the phone is done."""
        self.kill_all()
        home, self.home = self.home, None
        if home is not None:
            running = [run.done for run in self.runs if not run.done.called]
            defer.DeferredList(running, consumeErrors=True).addBoth(lambda _: self.blocks.release(home))
