"""End-to-end fixtures: the real Asterisk lab, sipp phones, the appliance in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    globalLogPublisher,
)
from zope.interface import provider

from appliance import tap
from appliance.lab import Lab, LabPorts
from tests.e2e.phones import Phone
from tests.e2e.waiting import clear_aborts, wait_synced

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test reports what the appliance logged and what Asterisk wrote
    meanwhile: a failure seen once in CI can then be read, not only rerun."""
    report = yield
    if report.failed and call.when == "call":
        lines = item.stash.get(_APPLIANCE_LOG, None)
        if lines is not None:
            report.sections.append(("appliance log", "".join(lines[-300:])))
        asterisk = item.stash.get(_ASTERISK_LOG, None)
        if asterisk is not None:
            path, start = asterisk
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    written = f.read()[-60000:].decode("utf-8", "replace")
            except OSError as e:
                written = f"({path}: {e})"
            report.sections.append(("asterisk log", written))
    return report


_APPLIANCE_LOG = pytest.StashKey[list[str]]()
_ASTERISK_LOG = pytest.StashKey[tuple[Path, int]]()


@pytest.fixture(autouse=True)
def _keep_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect the appliance's log events and mark Asterisk's log for this test."""
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_level") is LogLevel.debug:
            return  # one line per AMI action sent: it would push the calls out of the tail
        text = formatEventAsClassicLogText(event)
        if text:
            lines.append(text)

    request.node.stash[_APPLIANCE_LOG] = lines
    if "lab" in request.fixturenames:
        lab_: Lab = request.getfixturevalue("lab")
        try:
            size = lab_.logfile.stat().st_size
        except OSError:
            size = 0
        request.node.stash[_ASTERISK_LOG] = (lab_.logfile, size)
    globalLogPublisher.addObserver(observe)
    yield
    globalLogPublisher.removeObserver(observe)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One Asterisk for the whole run, with a fresh configuration and database."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end suite needs root for the Asterisk lab (chroot, mount)")
    instance = os.environ.get("APPLIANCE_TEST_LAB", "test")  # test1..test9 to run suites side by side
    lab = Lab(instance=instance, ports=LabPorts.for_instance(instance))
    lab.build()
    lab.stop()
    lab.configure(REPO / "asterisk" / "appliance.conf")
    astdb = lab.root / f"var/lib/appliance-lab/{instance}/astdb.sqlite3"
    if astdb.exists():
        astdb.unlink()  # no registrations left over from an earlier run
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture
def reactor():
    return _reactor


def appliance_config(tmp_path: Path, lab: Lab) -> Path:
    p = lab.ports
    recordings, played_from = lab.recordings
    path = tmp_path / "config.ini"
    path.write_text(
        f"""\
[ami]
host = {p.host}
port = {p.ami}
username = {lab.ami_user}
secret = {lab.ami_secret}
[fastagi]
bind = {p.host}
port = {p.fastagi}
[web]
bind = 127.0.0.1
port = 0
[smtp]
host = 127.0.0.1
port = 2525
starttls = off
sender = appliance@localhost
[store]
path = store.sqlite3
[missed]
templates = xsl
[announcements]
directory = {recordings}
played_from = {played_from}
[appliance]
language = de
"""
    )
    return path


@pytest.fixture
def appliance(tmp_path: Path, lab: Lab, reactor):
    """The appliance running in this process, connected and synced with the lab."""
    service = tap.build(str(appliance_config(tmp_path, lab)), reactor)
    service.startService()
    pytest_twisted.blockon(wait_synced(reactor, service))
    yield service
    pytest_twisted.blockon(service.stopService())


@pytest.fixture
def routed(appliance):
    """Every call the appliance's route finishes during the test (`CallOutcome`), in
    order, as the ``on_finished`` extension point tells them."""
    seen: list[object] = []
    unsubscribe = appliance.call_extensions.on_finished(seen.append)
    yield seen
    unsubscribe()


@pytest.fixture
def recalls(appliance, reactor):
    """(when, recall) of every recall the appliance starts during the test, as the
    callback feature's ``on_recall`` tells them."""
    seen: list[tuple[float, object]] = []
    undo = appliance.callbacks.on_recall(lambda recall: seen.append((reactor.seconds(), recall)))
    yield seen
    undo()


@pytest.fixture
def phones(lab: Lab, reactor):
    """``phones("200")`` gives a sipp phone for that extension; all killed afterwards."""
    made: list[Phone] = []
    clear_aborts()

    def make(extension: str) -> Phone:
        phone = Phone(reactor, lab.ports, extension)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()
    clear_aborts()
