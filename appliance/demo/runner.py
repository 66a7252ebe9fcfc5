"""``./dev demo``: the Asterisk lab with its demo users, the appliance beside it,
and a mailbox page that shows the mails the appliance sends.

Runs in the foreground until Ctrl-C or SIGTERM, then stops the appliance, the
mailbox and the lab, in that order, and leaves no process behind.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.server import Site

from appliance.demo.mailbox import MailboxPage, Maildir, SinkFactory
from appliance.lab import Lab, LabError, LabPorts
from appliance.lab.asteriskconf import DeskPhones
from appliance.web.demo import seed_config as seed_demo_store

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE = 15.0
"""Seconds the appliance gets to stop on SIGTERM before it is killed."""
log = Logger()


@dataclass(frozen=True)
class DemoPorts:
    """Where the demo's own servers listen (all on loopback)."""

    web: int = 8080
    smtp: int = 2525
    mailbox: int = 8025


@dataclass(frozen=True)
class DemoState:
    """What a running demo tells its tour and its tests (``<state>/demo.json``)."""

    instance: str
    runner_pid: int
    appliance_pid: int
    web_url: str
    mailbox_url: str
    maildir: str
    config: str

    @classmethod
    def read(cls, state: Path) -> DemoState:
        return cls(**json.loads((state / "demo.json").read_text()))


def write_config(state: Path, lab: Lab, ports: DemoPorts) -> Path:
    """The shipped ``config.ini`` pointed at this lab instance, the demo's mailbox
    and a store in ``state``."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(REPO / "config.ini", encoding="utf-8")
    lab_ports = lab.ports
    parser["ami"].update(
        host=lab_ports.host, port=str(lab_ports.ami), username=lab.ami_user, secret=lab.ami_secret
    )
    parser["fastagi"].update(bind=lab_ports.host, port=str(lab_ports.fastagi))
    parser["web"].update(bind="127.0.0.1", port=str(ports.web))
    parser["smtp"].update(host="127.0.0.1", port=str(ports.smtp), starttls="off", username="", password="")
    parser["store"]["path"] = str(state / "appliance.sqlite3")
    recordings, played_from = lab.recordings
    parser["announcements"].update(directory=str(recordings), played_from=played_from)
    path = state / "config.ini"
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


SYNCED = b"PBX model resynced"
"""The appliance's log line once it listens and knows the PBX: the demo is ready."""
READY_BOUND = 60.0


class _Appliance(protocol.ProcessProtocol):
    """The ``twistd -n appliance`` child; its output goes to ours."""

    def __init__(self) -> None:
        self.ended: defer.Deferred[int] = defer.Deferred()
        self.synced: defer.Deferred[None] = defer.Deferred()
        self._tail = b""

    def outReceived(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if not self.synced.called:
            self._tail = (self._tail + data)[-4096:]
            if SYNCED in self._tail:
                self.synced.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        """Its exit code, or 128 + the signal that ended it, as a shell says."""
        code = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        self.ended.callback(int(code) if code is not None else 128 + int(signum or 0))


def _stop(reactor: Any, child: _Appliance, transport: Any) -> defer.Deferred[Any]:
    """SIGTERM to the appliance, SIGKILL if it is still there after the grace time."""
    if child.ended.called:
        return defer.succeed(None)
    try:
        transport.signalProcess("TERM")
    except error.ProcessExitedAlready:
        return defer.succeed(None)
    killer = reactor.callLater(STOP_GRACE, lambda: transport.signalProcess("KILL"))

    def done(result: object) -> object:
        if killer.active():
            killer.cancel()
        return result

    return child.ended.addBoth(done)


SOFTPHONE_EXTENSIONS = tuple(str(n) for n in range(100, 110))
"""The extensions a softphone on the desk may use; the tour keeps to 2xx and 3xx."""


class DemoError(Exception):
    """The demo cannot start as asked."""


def desk_phones(address: str, lab_host: str) -> DeskPhones:
    """Softphones on ``address`` (an address of this machine), a fresh password each."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise DemoError(f"--listen {address!r}: not an IPv4 address") from None
    if parsed.is_unspecified or address == lab_host:
        raise DemoError(f"--listen {address}: name one address other than {lab_host} (the sipp phones' own)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as problem:
            raise DemoError(
                f"--listen {address}: not an address of this machine ({problem.strerror})"
            ) from None
    return DeskPhones(address, {ext: secrets.token_urlsafe(9) for ext in SOFTPHONE_EXTENSIONS})


def run(instance: str, state: Path, ports: DemoPorts, listen: str | None = None, reactor: Any = None) -> int:
    """Start everything, serve until a signal, stop everything; the exit code."""
    if reactor is None:
        from twisted.internet import reactor
    signal.signal(signal.SIGTERM, _terminate)  # until the reactor installs its own
    lab_ports = LabPorts.for_instance(instance)
    try:
        desk = None if listen is None else desk_phones(listen, lab_ports.host)
    except DemoError as problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    lab = Lab(instance=instance, ports=lab_ports, desk=desk)
    state.mkdir(parents=True, exist_ok=True)
    try:
        lab.build()
        lab.configure(REPO / "asterisk" / "appliance.conf")
        lab.start()
    except LabError as problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 1
    code = 1
    try:
        config = write_config(state, lab, ports)
        seed_demo_store(config)
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
        maildir = Maildir(state / "mail")
        reactor.listenTCP(ports.smtp, SinkFactory(maildir), interface="127.0.0.1")
        reactor.listenTCP(ports.mailbox, Site(MailboxPage(maildir)), interface="127.0.0.1")
        child = _Appliance()
        twistd = Path(sys.executable).with_name("twistd")
        command = [str(twistd), "-n", "--pidfile=", "appliance", "--config", str(config)]
        transport = reactor.spawnProcess(child, command[0], command, env=dict(os.environ), path=str(REPO))
        described = DemoState(
            instance=instance,
            runner_pid=os.getpid(),
            appliance_pid=transport.pid,
            web_url=f"http://127.0.0.1:{ports.web}/",
            mailbox_url=f"http://127.0.0.1:{ports.mailbox}/",
            maildir=str(maildir.path),
            config=str(config),
        )
        (state / "demo.json").write_text(json.dumps(asdict(described), indent=2))

        def ready(_: object) -> None:
            print(_welcome(lab, described, state), flush=True)

        def late(failure: Any) -> None:
            failure.trap(defer.TimeoutError, defer.CancelledError)
            print(f"demo: the appliance did not sync with the lab within {READY_BOUND:.0f}s", flush=True)

        child.synced.addTimeout(READY_BOUND, reactor).addCallbacks(ready, late)
        exit_code: list[int] = []
        stopping: list[bool] = []

        def ended(code: int) -> None:
            exit_code.append(code)
            if not stopping:  # the appliance ended by itself: so does the demo
                reactor.stop()

        def shutting_down() -> defer.Deferred[Any]:
            stopping.append(True)
            return _stop(reactor, child, transport)

        child.ended.addCallback(ended)
        reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
        reactor.run()
        code = exit_code[0] if exit_code else 0
        # A signal stopped us (0), or the appliance ended by itself (its code).
    except OSError as problem:
        print(f"demo: {problem}", file=sys.stderr)
    finally:
        if os.environ.get("APPLIANCE_DEMO_KEEP_LAB") != "1":
            lab.stop()
    if code not in (0, 128 + signal.SIGTERM):
        print(f"demo: the appliance ended with exit code {code}", file=sys.stderr)
        return code
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(0)  # the ``finally`` blocks stop what was started


def _welcome(lab: Lab, state: DemoState, folder: Path) -> str:
    tour = f"{Path(sys.executable)} -m appliance.demo tour all"
    if folder.resolve() != (REPO / "var" / "demo").resolve():
        tour += f" --state {folder}"
    softphones = ""
    if lab.desk is not None:
        accounts = "\n".join(f"  {ext}  password {password}" for ext, password in lab.desk.passwords.items())
        softphones = (
            f"\nSoftphones: SIP over UDP to {lab.desk.address}:{lab.ports.sip}, user and "
            f"authentication name = extension, passwords (new at every start):\n{accounts}\n"
        )
    return (
        f"{lab.describe()}\n{softphones}\n"
        "Demo users: extensions 100-109, 200-209, 300-309 (PJSIP over UDP, no password, register to "
        f"{lab.ports.host}:{lab.ports.sip}); external calls come in as endpoint 'trunk'.\n"
        f"Web page: {state.web_url} (demo logins: admin/admin; each user: extension/extension)\n"
        f"Mails the appliance sends: {state.mailbox_url}\n"
        f"Watch scripted calls: {tour}   (or: tour callback | forward | missed)\n"
        "Ctrl-C or SIGTERM stops the appliance, the mailbox and the lab.\n"
        "demo ready"
    )
