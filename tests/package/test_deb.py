"""The Debian package, built and used as an admin would (issue 7).

One scenario, in order: build the .deb (and a second one with a higher
version, in parallel), install it into a clean minbase bookworm chroot, start
the systemd unit's command line as the unit's user, write a setting, upgrade,
check store, config and plugin cache, remove, purge; lintian runs meanwhile.
Needs root and a Debian mirror; the chroot is cached in
/var/cache/appliance-lab/bookworm (APPLIANCE_LAB_CACHE moves it).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.package.debtools import (
    AMI_PORT,
    FASTAGI_PORT,
    PACKAGE,
    WEB_PORT,
    Build,
    Chroot,
    bookworm_base,
    install_build_tools,
    set_ports,
    unit_command,
)

VENV = f"/usr/lib/{PACKAGE}/venv"
STATE = f"/var/lib/{PACKAGE}"
CONFIG = f"/etc/{PACKAGE}/config.ini"
UNIT = f"/lib/systemd/system/{PACKAGE}.service"
PLUGINS = f"{VENV}/lib/python3.11/site-packages/twisted/plugins"

WRITE_SETTING = f"""
from appliance.config import load
from appliance.settings import CC_TIMEOUT, Settings
from appliance.store import SQLiteStore
store = SQLiteStore(load({CONFIG!r}).store)
Settings(store).set(CC_TIMEOUT, 77)
store.close()
"""
READ_SETTING = f"""
from appliance.config import load
from appliance.settings import CC_TIMEOUT, Settings
from appliance.store import SQLiteStore
store = SQLiteStore(load({CONFIG!r}).store)
print("CC_TIMEOUT", Settings(store).get(CC_TIMEOUT))
store.close()
"""

pytestmark = pytest.mark.usefixtures("as_root")


@dataclass
class Scenario:
    workdir: Path
    first: Path
    second: Path
    second_version: str
    chroot: Chroot
    lintian: subprocess.Popen[str]
    lintian_log: Path
    done: set[str] = field(default_factory=set)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.fail(f"an earlier step ({step}) failed; see its test")

    # -- the service -----------------------------------------------------------

    def start(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """The unit's ExecStart as its User in its WorkingDirectory."""
        user, workdir, command = unit_command(self.chroot.path(UNIT).read_text())
        output = self.workdir / f"twistd-{name}.log"
        process = self.chroot.spawn(user, workdir, command, output)
        self.started.append(process)
        return process, output

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def as_service_user(self, code: str) -> str:
        user, _, _ = unit_command(self.chroot.path(UNIT).read_text())
        return self.chroot.run("setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                               f"{VENV}/bin/python", "-c", code)  # fmt: skip


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"twistd exited ({process.returncode}) before listening on {port}:\n{log.read_text()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            # Nothing announces an open port; what can happen meanwhile is the
            # process exiting, so wait on that, briefly, then look again.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout}s:\n{log.read_text()}")


def check_log_clean(log: Path) -> None:
    text = log.read_text()
    for bad in ("dropin.cache", "Unable to write", "Traceback", "Permission denied"):
        assert bad not in text, f"twistd logged {bad!r}:\n{text}"


def files_below(directory: Path) -> list[str]:
    return [
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith((".pyc", "~"))
    ]


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    began = time.monotonic()
    install_build_tools()
    workdir = Path(tempfile.mkdtemp(prefix="appliance-package-"))
    builds: list[Build] = []
    chroot = None
    lintian = None
    try:
        builds = [Build(workdir / "first"), Build(workdir / "second", version_suffix="+upgradetest1")]
        base = bookworm_base()
        print(f"\npackage test: base chroot ready after {time.monotonic() - began:.0f}s", flush=True)
        first = builds[0].wait()
        second = builds[1].wait()
        print(
            f"package test: built {first.name} in {builds[0].seconds:.0f}s and {second.name} "
            f"in {builds[1].seconds:.0f}s (in parallel)",
            flush=True,
        )
        lintian_log = workdir / "lintian.log"
        with open(lintian_log, "w") as output:
            lintian = subprocess.Popen(
                ["lintian", "--fail-on", "none", "--display-info", str(first)],
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        chroot = Chroot(base, workdir / "bookworm", workdir / "chroot.log")
        for deb in (first, second):
            shutil.copy(deb, chroot.path("/tmp") / deb.name)
        yield Scenario(workdir, first, second, builds[1].version, chroot, lintian, lintian_log)
    finally:
        for build in builds:
            build.kill()
        if lintian is not None and lintian.poll() is None:
            lintian.kill()
            lintian.wait()
        if chroot is not None:
            chroot.destroy()
        print(f"\npackage test: {time.monotonic() - began:.0f}s in all; logs in {workdir}", flush=True)
        # Keep the logs, not the sources and packages (some 100 MB a run).
        for build_dir in (workdir / "first", workdir / "second"):
            shutil.rmtree(build_dir / "src", ignore_errors=True)
            for built in build_dir.glob(f"{PACKAGE}_*"):
                built.unlink()


def test_install_and_start(scenario: Scenario) -> None:
    chroot = scenario.chroot
    chroot.apt("install", f"/tmp/{scenario.first.name}")
    # Layout: config conffile with the store under /var/lib, state dir, user.
    config = chroot.path(CONFIG).read_text()
    assert f"path = {STATE}/store.sqlite3" in config
    assert f"/etc/{PACKAGE}/config.ini" in chroot.path("/var/lib/dpkg/info/appliance.conffiles").read_text()
    assert chroot.path(f"/usr/share/{PACKAGE}/asterisk/appliance.conf").is_file()
    # Data directories whole, found by the code next to the appliance package.
    site = next(chroot.path(VENV).glob("lib/python3*/site-packages"))
    for data in ("web", "xsl", "prompts"):
        source = scenario.workdir / "first/src" / data  # what was built
        if not source.is_dir():
            continue
        installed = chroot.path(f"/usr/share/{PACKAGE}/{data}")
        assert sorted(files_below(installed)) == sorted(files_below(source)), f"{data}/ differs"
        assert os.readlink(site / data).endswith(f"share/{PACKAGE}/{data}")
    state = chroot.path(STATE).stat()
    assert oct(state.st_mode & 0o777) == oct(0o750)
    assert chroot.run("stat", "-c", "%U:%G %a", STATE, CONFIG).split() == [
        f"{PACKAGE}:{PACKAGE}", "750", f"root:{PACKAGE}", "640"
    ]  # fmt: skip
    cache = chroot.path(f"{PLUGINS}/dropin.cache")
    assert cache.is_file(), "postinst did not write the Twisted plugin cache"
    # The unit: the hardening the package promises.
    unit = chroot.path(UNIT).read_text()
    for line in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", f"ReadWritePaths={STATE}", f"User={PACKAGE}"):  # fmt: skip
        assert line in unit.splitlines(), f"{line} missing in {UNIT}"
    # Ports clear of the demo and test labs.
    ports = {("fastagi", "port"): FASTAGI_PORT, ("web", "port"): WEB_PORT, ("ami", "port"): AMI_PORT}
    chroot.path(CONFIG).write_text(set_ports(config, ports))
    process, log = scenario.start("first")
    wait_for_port(FASTAGI_PORT, process, log)
    check_log_clean(log)
    assert process.poll() is None
    assert chroot.path(f"{STATE}/store.sqlite3").exists()
    scenario.done.add("installed")


def test_web_page_answers(scenario: Scenario) -> None:
    scenario.require("installed")
    process = scenario.started[-1]
    log = scenario.workdir / "twistd-first.log"
    wait_for_port(WEB_PORT, process, log)
    # The page itself, after a redirect (to the login page): templates found.
    path = "/"
    for _ in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status not in (301, 302, 303, 307, 308):
            break
        path = urlsplit(response.getheader("Location", "/")).path or "/"
    assert response.status == 200, f"GET {path} answered {response.status}:\n{log.read_text()}"
    assert b"<html" in body.lower() or b"<!doctype" in body.lower()


def test_upgrade_keeps_store_and_config(scenario: Scenario) -> None:
    scenario.require("installed")
    chroot = scenario.chroot
    scenario.stop(scenario.started[-1])
    scenario.as_service_user(WRITE_SETTING)
    old_cache = chroot.path(f"{PLUGINS}/dropin.cache").stat().st_mtime
    chroot.apt("install", f"/tmp/{scenario.second.name}")
    installed = chroot.run("dpkg-query", "-W", "-f=${Version}", PACKAGE)
    assert installed == scenario.second_version
    assert f"port = {FASTAGI_PORT}" in chroot.path(CONFIG).read_text(), "the changed config.ini was replaced"
    assert "CC_TIMEOUT 77" in scenario.as_service_user(READ_SETTING)
    cache = chroot.path(f"{PLUGINS}/dropin.cache")
    assert cache.is_file() and cache.stat().st_mtime >= old_cache
    assert cache.stat().st_mtime >= chroot.path(f"{PLUGINS}/appliance_plugin.py").stat().st_mtime
    process, log = scenario.start("second")
    wait_for_port(FASTAGI_PORT, process, log)
    check_log_clean(log)
    scenario.stop(process)
    scenario.done.add("upgraded")


def test_remove_keeps_state_and_purge_removes_it(scenario: Scenario) -> None:
    scenario.require("upgraded")
    chroot = scenario.chroot
    chroot.apt("remove", PACKAGE)
    assert chroot.path(f"{STATE}/store.sqlite3").exists(), "remove deleted the store"
    assert chroot.path(CONFIG).exists(), "remove deleted the config"
    assert not chroot.path(f"/usr/lib/{PACKAGE}").exists(), "remove left files in the venv"
    chroot.apt("purge", PACKAGE)
    assert not chroot.path(STATE).exists(), "purge left the state"
    assert not chroot.path(f"/etc/{PACKAGE}").exists(), "purge left the config"


def test_lintian_has_no_errors(scenario: Scenario) -> None:
    code = scenario.lintian.wait(timeout=600)
    report = scenario.lintian_log.read_text()
    print(report)
    assert code == 0, f"lintian failed to run ({code}):\n{report}"
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    warnings = [line for line in report.splitlines() if line.startswith("W:")]
    print(f"package test: lintian: {len(errors)} errors, {len(warnings)} warnings")
    assert not errors, "lintian errors:\n" + "\n".join(errors)
