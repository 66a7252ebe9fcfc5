"""The lab beside the containerised appliance: Asterisk, sipp phones and an SMTP sink.

All three are the host's programs (the lab's sid chroot, Debian's sipp, the
test venv's aiosmtpd) started in the container's network namespace, so they
meet the appliance on the container's loopback while the container keeps
``--private-network``.  Plain blocking code, like the rest of the package test.
"""

from __future__ import annotations

import email
import email.policy
import os
import select
import shlex
import shutil
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from appliance.lab import Lab, LabPorts
from tests.package.container import Container

SCENARIOS = Path(__file__).resolve().parents[1] / "e2e" / "scenarios"
SMTP_PORT = 2525


def container_lab(container: Container, dialplan: Path) -> Lab:
    """The test's lab instance (APPLIANCE_TEST_LAB, as the end-to-end suite uses), configured
    with the dialplan include the package ships, started in the container's network."""
    instance = os.environ.get("APPLIANCE_TEST_LAB", "test")
    lab = Lab(instance=instance, ports=LabPorts.for_instance(instance), command_prefix=container.enter("-n"))
    lab.build()
    lab.stop()
    lab.configure(dialplan)
    astdb = lab.root / f"var/lib/appliance-lab/{instance}/astdb.sqlite3"
    astdb.unlink(missing_ok=True)
    lab.start()
    return lab


class SmtpSink:
    """aiosmtpd printing every message it receives (its ``Debugging`` handler)."""

    BEGIN = "---------- MESSAGE FOLLOWS ----------"
    END = "------------ END MESSAGE ------------"

    def __init__(self, container: Container, port: int = SMTP_PORT) -> None:
        self.port = port
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                   "-c", "aiosmtpd.handlers.Debugging", "stdout"]  # fmt: skip
        self.process = container.popen_in_network(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output = b""

    def next_message(self, timeout: float = 60) -> EmailMessage:
        """The next message as the server printed it, waiting on its output with a bound."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while self.END.encode() not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise AssertionError(
                    f"no mail within {timeout}s; the SMTP sink said:\n{self.output[-2000:]!r}"
                )
            if select.select([self.process.stdout], [], [], remaining)[0]:
                self.output += os.read(self.process.stdout.fileno(), 65536)
        text = self.output.decode(errors="replace")
        message, rest = text.split(self.BEGIN, 1)[1].split(self.END, 1)
        self.output = rest.encode()
        lines = [line for line in message.strip("\n").splitlines() if not line.startswith("X-Peer:")]
        parsed = email.message_from_string("\n".join(lines) + "\n", policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Sipp:
    """sipp phones speaking to the lab, each run blocking or in the background."""

    def __init__(self, container: Container, lab: Lab, workdir: Path) -> None:
        self.container = container
        self.lab = lab
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, extension: str, scenario: str, values: dict[str, object], port: int
    ) -> subprocess.Popen[bytes]:
        """sipp as ``extension`` with ``scenarios/<scenario>.xml``, from local port ``port``."""
        text = (SCENARIOS / f"{scenario}.xml").read_text().format(ext=extension, **values)
        path = self.workdir / f"{extension}-{scenario}.xml"
        path.write_text(text)
        sipp = shutil.which("sipp") or "sipp"
        command = [sipp, f"{self.lab.ports.host}:{self.lab.ports.sip}", "-sf", str(path),
                   "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(port + 2),
                   "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error", "-trace_err"]  # fmt: skip
        with open(self.workdir / f"{extension}-{scenario}.log", "wb") as output:
            process = self.container.popen_in_network(
                command, stdout=output, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.running.append(process)
        return process

    def finish(self, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """Wait for sipp; fail with its complaint unless it exits 0."""
        code = process.wait(timeout=timeout)
        if code != 0:
            errors = "".join(path.read_text(errors="replace")[-2000:] for path in self.workdir.glob("*.log"))
            raise AssertionError(f"sipp exited {code} ({shlex.join(map(str, process.args))}):\n{errors}")  # type: ignore[arg-type]

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()
