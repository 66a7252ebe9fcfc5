"""The demo as a newcomer meets it: started, toured, its mailbox read in Chromium, stopped.

Runs ``python -m appliance.demo`` as its own process on lab instance
``APPLIANCE_DEMO_TEST_LAB`` (test8 by default, clear of the suites' instances),
then the tour against it, then SIGTERM — and looks for anything left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from appliance.demo.runner import DemoState
from appliance.lab import LabPorts
from tests.browser.conftest import screenshot
from tests.e2e.portblocks import PortBlocks

REPO = Path(__file__).resolve().parents[2]
INSTANCE = os.environ.get("APPLIANCE_DEMO_TEST_LAB", "test8")
READY_BOUND = 120.0
TOUR_BOUND = 300.0
STOP_BOUND = 40.0
DESK = "127.0.0.2"
"""The softphones' address: another loopback address stands for the desk's network."""
SCENARIOS = REPO / "tests" / "e2e" / "scenarios"


@dataclass
class RunningDemo:
    process: subprocess.Popen[bytes]
    state_dir: Path
    state: DemoState
    output: Output


class Output:
    """The demo's output, read in a thread so its pipe never fills and blocks it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if line.strip() == "demo ready":
                self.ready.set()
        self.ended.set()

    def wait_ready(self, bound: float) -> None:
        deadline = time.monotonic() + bound
        while not self.ready.wait(timeout=0.2):
            if self.ended.is_set() or time.monotonic() > deadline:
                pytest.fail(f"the demo did not get ready within {bound}s:\n{self.tail()}")

    def tail(self) -> str:
        return "".join(self.lines[-40:])

    def text(self) -> str:
        return "".join(self.lines)


def processes_of(instance: str, pids: list[int]) -> list[str]:
    """Command lines still running: the given pids, and any Asterisk or sipp of the instance."""
    ports = LabPorts.for_instance(instance)
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(entry.name) in pids and command:
            left.append(f"{entry.name}: {command}")
        elif "asterisk" in command and f"/etc/appliance-lab/{instance}/" in command:
            left.append(f"{entry.name}: {command}")
        elif "sipp" in command and f"127.0.0.1:{ports.sip}" in command:
            left.append(f"{entry.name}: {command}")
    return left


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    if os.geteuid() != 0:
        pytest.fail("the demo test needs root for the Asterisk lab (chroot, mount)")
    state_dir = tmp_path_factory.mktemp("demo")
    blocks = PortBlocks.for_lab(LabPorts.for_instance(INSTANCE))
    first, second = blocks.take(), blocks.take()  # TCP only: the tour's phones take the UDP side
    web, smtp = first.tcp
    mailbox = second.tcp[0]
    command = [sys.executable, "-m", "appliance.demo", "run", "--instance", INSTANCE]
    command += ["--state", str(state_dir), "--web-port", str(web), "--smtp-port", str(smtp)]
    command += ["--mailbox-port", str(mailbox), "--listen", DESK]
    process = subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = Output(process)
    try:
        output.wait_ready(READY_BOUND)
        yield RunningDemo(process, state_dir, DemoState.read(state_dir), output)
    finally:
        if process.poll() is None:  # a failed test: stop it as a user would, so nothing is left
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_BOUND)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def toured(demo: RunningDemo) -> list[str]:
    """The whole tour, played once for this module."""
    result = subprocess.run(
        [sys.executable, "-m", "appliance.demo", "tour", "all", "--state", str(demo.state_dir)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOUR_BOUND,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    return lines


def test_tour_sees_every_step(toured: list[str]) -> None:
    """Every step of the callback, forward and missed-call tour reports "seen"."""
    narrated = "\n".join(toured)
    assert "NOT SEEN" not in narrated, narrated
    assert toured[-1] == "tour: every step seen", narrated
    for step in (
        "seen: 200 hears the callback offer",
        "seen: 200 presses 5, the appliance confirms the request",
        "seen: the appliance rings 200 (",
        "seen: 300 rings showing '",
        "seen: 302 rings showing 'Uml. für",
        "seen: a missed-call mail arrives:",
    ):
        assert step in narrated, f"{step!r} missing:\n{narrated}"


def test_mailbox_page_shows_the_missed_call_mail(toured: list[str], demo: RunningDemo, page: Page) -> None:
    """After the missed-call step the demo mailbox lists the mail; opening it shows the
    caller's number in the rendered HTML and the vCard."""
    page.goto(demo.state.mailbox_url)
    rows = page.locator("tr.mail")
    expect(rows.first).to_be_visible()
    mail = rows.filter(has_text="203@demo.example").first
    expect(mail).to_contain_text("+49301234567")
    screenshot(page, "60-demo-mailbox")
    mail.get_by_role("link").click()
    frame = page.frame_locator("iframe[title=mail]")
    expect(frame.locator("body")).to_contain_text("+49301234567")
    screenshot(page, "61-demo-mail")


def desk_register(scenario: str, extension: str, demo: RunningDemo, tmp_path: Path, **values: str) -> str:
    """One REGISTER from the desk address, as a softphone there would send it; sipp's output."""
    script = tmp_path / f"{scenario}.xml"
    script.write_text((SCENARIOS / f"{scenario}.xml").read_text().format(ext=extension, **values))
    block = PortBlocks.for_lab(LabPorts.for_instance(INSTANCE)).take()
    sip = LabPorts.for_instance(INSTANCE).sip
    command = ["sipp", f"{DESK}:{sip}", "-sf", str(script), "-i", DESK, "-p", str(block.sip)]
    command += ["-cp", str(block.control), "-mi", DESK, "-mp", str(block.media), "-m", "1"]
    command += ["-nostdin", "-timeout", "10", "-timeout_error"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (scenario, extension, result.returncode, result.stdout[-1500:])
    return result.stdout


def test_softphone_registers_with_its_printed_password(
    toured: list[str], demo: RunningDemo, tmp_path: Path
) -> None:
    """With --listen, 100 registers from the desk address with the password the demo printed;
    without it, or as 200 (a sipp phone's extension), the PBX refuses."""
    printed = dict(re.findall(r"^  (1\d\d)  password (\S+)$", demo.output.text(), re.MULTILINE))
    assert sorted(printed) == [str(n) for n in range(100, 110)], demo.output.tail()
    desk_register("register_auth", "100", demo, tmp_path, password=printed["100"])
    desk_register("register_refused", "101", demo, tmp_path)
    desk_register("register_refused", "200", demo, tmp_path)


def test_sigterm_leaves_nothing_running(toured: list[str], demo: RunningDemo) -> None:
    """SIGTERM stops the demo with exit 0: no twistd, no Asterisk, no phone left."""
    pids = [demo.state.runner_pid, demo.state.appliance_pid]
    assert processes_of(INSTANCE, pids), "the demo should be running before the signal"
    demo.process.send_signal(signal.SIGTERM)
    code = demo.process.wait(timeout=STOP_BOUND)
    assert code == 0, demo.output.tail()
    assert processes_of(INSTANCE, pids) == []
