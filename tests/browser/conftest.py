"""Browser tests: the real appliance web service, driven by Debian's headless Chromium.

The appliance is built by `appliance.tap.build` from a temporary config and runs
on the global reactor in a background thread; the tests talk to it only over
HTTP on 127.0.0.1 (a port of the lab instance's reserved range) and, to check what a page did, through
`Running.call`, which runs a function in the reactor thread.  AMI points at a
port nothing listens on, so the AMI link just keeps retrying.  Run this suite
on its own with ``-p no:twisted`` (as ``tests/run.py`` does), since it owns the
reactor.  Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import configparser
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from twisted.internet import reactor as _reactor
from twisted.internet.process import reapAllProcesses
from twisted.internet.task import LoopingCall
from twisted.internet.threads import blockingCallFromThread

from appliance import tap
from appliance.directory import User
from appliance.lab import Lab, LabPorts
from tests.e2e.conftest import appliance_config
from tests.e2e.portblocks import PortBlocks
from tests.e2e.waiting import wait_synced

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "admin-browser-test"
T = TypeVar("T")
reactor: Any = _reactor


def _reserved_tcp_ports() -> Iterator[int]:
    """TCP ports of the lab instance's own range, held for the whole session: a port
    found free by binding port 0 could be taken by another socket before we bind it."""
    blocks = PortBlocks.for_lab(LabPorts.for_instance(os.environ.get("APPLIANCE_TEST_LAB", "test")))
    while True:
        yield from blocks.take().tcp


reserved_port = _reserved_tcp_ports().__next__


@dataclass
class Running:
    """The appliance under test, running in the reactor thread."""

    appliance: tap.Appliance
    url: str
    lab: Lab | None = None
    """The Asterisk lab the appliance talks to, if any."""

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in the reactor thread and return its result."""
        result: T = blockingCallFromThread(reactor, function, *args)
        return result

    def add_user(self, user: User, password: str) -> None:
        def add() -> None:
            self.appliance.directory.put_user(user)
            self.appliance.web.credentials.set_password(user.extension, password)

        self.call(add)


def write_config(directory: Path) -> Path:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(REPO / "config.ini", encoding="utf-8")
    parser["ami"]["port"] = str(reserved_port())  # nothing listens there
    parser["fastagi"]["port"] = str(reserved_port())
    parser["web"]["port"] = str(reserved_port())
    parser["store"]["path"] = str(directory / "appliance.sqlite3")
    path = directory / "config.ini"
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


@pytest.fixture(scope="session")
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if request.config.pluginmanager.has_plugin("twisted") or reactor.running:
        pytest.fail("the browser suite runs the reactor itself: run it with -p no:twisted")
    config = write_config(tmp_path_factory.mktemp("appliance"))
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
    thread.start()
    # Outside the main thread the reactor has no SIGCHLD handler: a sipp that closes its
    # pipes a moment before it exits would never be reaped, and its run never end.
    reactor.callFromThread(LoopingCall(reapAllProcesses).start, 0.2)

    def start() -> tap.Appliance:
        appliance = tap.build(str(config), reactor)
        appliance.startService()
        appliance.web.credentials.set_password("admin", ADMIN_PASSWORD)
        return appliance

    appliance = blockingCallFromThread(reactor, start)
    try:
        yield Running(appliance, f"http://127.0.0.1:{appliance.config.web.port}")
    finally:
        blockingCallFromThread(reactor, appliance.stopService)
        reactor.callFromThread(reactor.stop)
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The real Asterisk lab (instance from ``APPLIANCE_TEST_LAB``, as in ``tests/e2e``)."""
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root for the Asterisk lab (chroot, mount)")
    instance = os.environ.get("APPLIANCE_TEST_LAB", "test")
    lab = Lab(instance=instance, ports=LabPorts.for_instance(instance))
    lab.build()
    lab.stop()
    lab.configure(REPO / "asterisk" / "appliance.conf")
    astdb = lab.root / f"var/lib/appliance-lab/{instance}/astdb.sqlite3"
    if astdb.exists():
        astdb.unlink()  # no registrations left over from an earlier run
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def on_lab(running: Running, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A second appliance in the same reactor, its AMI and FastAGI on the lab, synced with it."""
    directory = tmp_path_factory.mktemp("lab-appliance")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(appliance_config(directory, lab), encoding="utf-8")
    parser["web"]["port"] = str(reserved_port())
    parser["store"]["path"] = str(directory / "store.sqlite3")
    config = directory / "config.ini"
    with open(config, "w", encoding="utf-8") as handle:
        parser.write(handle)

    def start() -> Any:
        appliance = tap.build(str(config), reactor)
        appliance.startService()
        return wait_synced(reactor, appliance)

    appliance = blockingCallFromThread(reactor, start)
    try:
        yield Running(appliance, f"http://127.0.0.1:{appliance.config.web.port}", lab)
    finally:
        blockingCallFromThread(reactor, appliance.stopService)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookies from other tests."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, running: Running, login: str, password: str) -> None:
    page.goto(running.url + "/login")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("button[type=submit]")
