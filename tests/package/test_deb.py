"""The Debian package, built and run as an admin would (issues 7, 16 and 20).

One scenario, in order: build the .deb offline from ./dev's wheelhouse (and a
second one with a higher version, in parallel; a third, of the same source in
another directory, must come out byte-identical to the first), install it into
a bookworm container booted with a real systemd (systemd-nspawn, loopback-only
network), and let systemd run it under
the unit's full hardening: enabled and active, listening on loopback only, the
page served, one real call through the lab's Asterisk (started in the
container's network) with its missed-call mail to an SMTP sink and the AMI
login, the sandbox's writable directories and ``systemd-analyze security``
exposure, a journal without twistd's timestamps, restart, kill -9 recovery,
upgrade keeping the store, remove, purge; lintian runs meanwhile.
Needs root, ./dev's Debian packages and a Debian mirror; the chroots are
cached in /var/cache/appliance-lab (APPLIANCE_LAB_CACHE moves it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.lab import Lab
from tests.package.container import Container, systemd_base
from tests.package.debtools import PACKAGE, Build, check_build_tools, deb_differences, set_ports
from tests.package.inside import SMTP_PORT, Sipp, SmtpSink, container_lab

VENV = f"/usr/lib/{PACKAGE}/venv"
STATE = f"/var/lib/{PACKAGE}"
RECORDINGS = f"/var/lib/{PACKAGE}-announcements"
"""The admin's own announcements: the service writes them, Asterisk reads them."""
CONFIG = f"/etc/{PACKAGE}/config.ini"
TEMPLATES = f"/etc/{PACKAGE}/xsl"
"""The admin's customised missed-call templates (written by the web page)."""
UNIT = f"/lib/systemd/system/{PACKAGE}.service"
PLUGINS = f"{VENV}/lib/python3.11/site-packages/twisted/plugins"
SERVICE_PYTHON = ("runuser", "-u", PACKAGE, "--", f"{VENV}/bin/python", "-c")
WEB_PORT = 8080
EXTERNAL = "+4930123456"
MAX_EXPOSURE = 2.0

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
WRITE_DIRECTORY = f"""
from appliance.config import load
from appliance.contacts import ContactDirectory
from appliance.directory import Directory, User
from appliance.store import SQLiteStore
store = SQLiteStore(load({CONFIG!r}).store)
Directory(store).put_user(User("201", "Bernd Croft", "u201@example.org", language="en"))
ContactDirectory(store).import_vcf(
    "BEGIN:VCARD\\nVERSION:3.0\\nUID:erika-pkg\\nFN:Erika Mustermann\\n"
    "TEL;TYPE=WORK:030 123456\\nEND:VCARD\\n"
)
store.close()
"""
LISTENING = """
import os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:  # closed meanwhile
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
for table in ("tcp", "tcp6"):
    for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if table == "tcp":
                host = ".".join(str(b) for b in reversed(raw))
            else:
                words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
                host = "[" + ":".join(w[j:j + 4] for w in words for j in (0, 4)) + "]"
            print(f"{host}:{int(port, 16)}")
"""
WRITABLE = """
import os
found = []
def walk(path):
    if os.access(path, os.W_OK):
        found.append(path)
        return
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            walk(entry.path)
for top in os.listdir("/"):
    if top not in ("proc", "sys"):
        walk("/" + top)
print("\\n".join(found))
"""
"""Directories the service may write to, as the service user in the service's mount
namespace (read-only mounts answer EROFS); below a writable one nothing more is listed."""

ALLOWED_WRITABLE = {STATE, TEMPLATES, RECORDINGS, "/tmp", "/var/tmp"}
"""The state, the customised templates, the recorded announcements; the private /tmp
and /var/tmp (PrivateTmp)."""


# Follows a unit's journal from a moment on until systemd logs that it restarted
# the unit on its own ("Scheduled restart job") and then that it started.
FOLLOW_JOURNAL = """
import subprocess, sys
unit, since = sys.argv[1], sys.argv[2]
command = ["journalctl", "-u", unit, "--since", "@" + since, "-f", "-o", "cat"]
journal = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
restarting = False
for line in journal.stdout:
    restarting = restarting or "Scheduled restart job" in line
    if restarting and line.startswith("Started " + unit):
        print(line.strip())
        break
journal.kill()
"""


@dataclass
class Scenario:
    workdir: Path
    first: Path
    second: Path
    second_version: str
    again: Build
    container: Container
    lintian: subprocess.Popen[str]
    lintian_log: Path
    lab: Lab | None = None
    smtp: SmtpSink | None = None
    sipp: Sipp | None = None
    done: set[str] = field(default_factory=set)

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.fail(f"an earlier step ({step}) failed; see its test")

    def systemctl(self, *args: str) -> str:
        return self.container.run("systemctl", *args).strip()

    def main_pid(self) -> int:
        return int(self.systemctl("show", "-p", "MainPID", "--value", PACKAGE))

    def listening(self, pid: int) -> set[str]:
        return set(self.container.run("python3.11", "-c", LISTENING, str(pid)).split())

    def serving(self, not_pid: int = 0) -> int:
        """The unit is active (``Type=notify``: the appliance said READY=1) and its main
        process (other than ``not_pid``) listens on FastAGI and the page; its PID."""
        assert self.lab is not None
        wanted = {f"127.0.0.1:{self.lab.ports.fastagi}", f"127.0.0.1:{WEB_PORT}"}
        _code, state = self.container.run_status("systemctl", "is-active", PACKAGE)
        pid = self.main_pid()
        if state.strip() != "active" or not pid or pid == not_pid or not wanted <= self.listening(pid):
            journal = self.container.run("journalctl", "-u", PACKAGE, "--no-pager", "-n", "60")
            pytest.fail(f"{PACKAGE} not serving ({state.strip()}, pid {pid}):\n{journal}")
        return pid

    def wait_restarted(self, not_pid: int, since: float, timeout: int = 60) -> int:
        """After a crash systemd restarts the unit on its own (RestartSec=2s).  The
        restart's start job ends when the appliance says READY=1 and systemd logs
        "Started": follow the journal from ``since`` to that line, within the bound."""
        self.container.run(
            "timeout", str(timeout), "python3.11", "-c", FOLLOW_JOURNAL, PACKAGE, str(int(since))
        )
        return self.serving(not_pid)

    def http_get(self, path: str) -> tuple[int, str]:
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{WEB_PORT}{path}', timeout=10)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
        )
        status, _, body = self.container.run("python3.11", "-c", code).partition("\n")
        return int(status), body


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    began = time.monotonic()
    check_build_tools()
    workdir = Path(tempfile.mkdtemp(prefix="appliance-package-"))
    builds: list[Build] = []
    container = None
    lintian = None
    scene = None
    try:
        # The same source a third time, copied now, built later while the container runs.
        again = Build(workdir / "again", start=False)
        builds = [Build(workdir / "first"), Build(workdir / "second", version_suffix="+upgradetest1"), again]
        base = systemd_base()
        print(
            f"\npackage test: bookworm + systemd base ready after {time.monotonic() - began:.0f}s", flush=True
        )
        container = Container(base, workdir / "bookworm", workdir / "container.log")
        first = builds[0].wait()
        second = builds[1].wait()
        print(
            f"package test: built {first.name} in {builds[0].seconds:.0f}s and {second.name} "
            f"in {builds[1].seconds:.0f}s (in parallel)",
            flush=True,
        )
        again.start()
        lintian_log = workdir / "lintian.log"
        with open(lintian_log, "w") as output:
            lintian = subprocess.Popen(
                ["lintian", "--fail-on", "none", "--display-info", str(first)],
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        debs = container.path("/srv/debs")
        debs.mkdir()
        for deb in (first, second):
            shutil.copy(deb, debs / deb.name)
        container.download(f"/srv/debs/{first.name}", f"/srv/debs/{second.name}")
        state = container.boot()
        print(
            f"package test: systemd {state} in the container after {container.boot_seconds:.1f}s", flush=True
        )
        scene = Scenario(workdir, first, second, builds[1].version, again, container, lintian, lintian_log)
        yield scene
    finally:
        for build in builds:
            build.kill()
        if lintian is not None and lintian.poll() is None:
            lintian.kill()
            lintian.wait()
        if scene is not None:
            if scene.sipp is not None:
                scene.sipp.kill_all()
            if scene.smtp is not None:
                scene.smtp.stop()
            if scene.lab is not None:
                scene.lab.stop()
        if container is not None:
            container.destroy()
        print(f"\npackage test: {time.monotonic() - began:.0f}s in all; logs in {workdir}", flush=True)
        # Keep the logs, not the sources, packages and container (some 500 MB a run).
        for build_dir in (workdir / "first", workdir / "second", workdir / "again"):
            shutil.rmtree(build_dir / "src", ignore_errors=True)
            for built in build_dir.glob(f"{PACKAGE}_*"):
                built.unlink()


def test_install_enabled_and_active(scenario: Scenario) -> None:
    container = scenario.container
    container.apt("install", f"/srv/debs/{scenario.first.name}")
    # Layout: config conffile with the store under /var/lib, state dir, user.
    config = container.path(CONFIG).read_text()
    assert f"path = {STATE}/store.sqlite3" in config
    assert f"directory = {RECORDINGS}" in config
    assert CONFIG in container.path("/var/lib/dpkg/info/appliance.conffiles").read_text()
    assert container.path(f"/usr/share/{PACKAGE}/asterisk/appliance.conf").is_file()
    assert container.run("stat", "-c", "%U:%G %a", STATE, CONFIG, RECORDINGS).split() == [
        f"{PACKAGE}:{PACKAGE}", "750", f"root:{PACKAGE}", "640", f"{PACKAGE}:{PACKAGE}", "755"
    ]  # fmt: skip
    assert container.path(f"{PLUGINS}/dropin.cache").is_file(), "postinst wrote no Twisted plugin cache"
    # The code with its package data, without the development tools; the licence.
    site = container.path(f"{VENV}/lib/python3.11/site-packages/appliance")
    for shipped in ("web/templates/login.html", "web/static/style.css", "missed/xsl/missed_call.de.xsl"):
        assert (site / shipped).is_file(), f"{shipped} not shipped"
    for left_out in ("lab", "demo", "web/demo.py", "testing.py"):
        assert not (site / left_out).exists(), f"appliance/{left_out} is in the package"
    copyright_file = container.path(f"/usr/share/doc/{PACKAGE}/copyright").read_text()
    assert "License: Expat" in copyright_file and "proprietary" not in copyright_file
    # postinst enabled and started it under the container's systemd; the start job
    # returned once the appliance said READY=1.
    assert scenario.systemctl("is-enabled", PACKAGE) == "enabled"
    assert container.run_status("systemctl", "is-active", PACKAGE)[1].strip() == "active"
    unit = container.path(UNIT).read_text().splitlines()
    for line in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateUsers=yes", f"ReadWritePaths={STATE}", f"User={PACKAGE}"):  # fmt: skip
        assert line in unit, f"{line} missing in {UNIT}"

    # Point it at the lab (started in the container's network) and an SMTP sink, give
    # user 201 a mail address and the caller a contact, then start it again.
    scenario.systemctl("stop", PACKAGE)
    scenario.lab = lab = container_lab(
        container, container.path(f"/usr/share/{PACKAGE}/asterisk/appliance.conf")
    )
    settings: dict[tuple[str, str], int | str] = {
        ("ami", "port"): lab.ports.ami,
        ("ami", "username"): lab.ami_user,
        ("ami", "secret"): lab.ami_secret,
        ("fastagi", "port"): lab.ports.fastagi,
        ("smtp", "port"): SMTP_PORT,
    }
    container.path(CONFIG).write_text(set_ports(config, settings))
    container.run(*SERVICE_PYTHON, WRITE_DIRECTORY)
    scenario.smtp = SmtpSink(container)
    scenario.systemctl("start", PACKAGE)  # returns once the appliance said READY=1
    scenario.serving()
    scenario.done.add("installed")


def test_listens_on_loopback_only(scenario: Scenario) -> None:
    scenario.require("installed")
    assert scenario.lab is not None
    found = scenario.listening(scenario.main_pid())
    print(f"package test: the service listens on {sorted(found)}")
    assert found == {f"127.0.0.1:{scenario.lab.ports.fastagi}", f"127.0.0.1:{WEB_PORT}"}


def test_login_page_served(scenario: Scenario) -> None:
    scenario.require("installed")
    status, body = scenario.http_get("/login")
    assert status == 200, body
    assert "<form" in body and 'name="password"' in body, body[:500]


def test_call_mail_and_ami_under_the_sandbox(scenario: Scenario) -> None:
    """A caller from outside rings 201 and gives up: the call runs through the appliance's
    FastAGI route, its AMI model sees the ringing, and the missed-call mail (rendered from
    the shipped XSL) reaches the SMTP sink."""
    scenario.require("installed")
    lab, smtp = scenario.lab, scenario.smtp
    assert lab is not None and smtp is not None
    connected = lab.cli("manager show connected")
    assert lab.ami_user in connected, f"the appliance is not logged in to AMI:\n{connected}"
    scenario.sipp = sipp = Sipp(scenario.container, lab, scenario.workdir / "sipp")
    # The lab's log outlives runs (other suites share the instance): read only this call's part.
    log_start = lab.logfile.stat().st_size if lab.logfile.exists() else 0
    contact = {"contact": "<sip:201@127.0.0.1:17060>", "expires": 600}
    sipp.finish(sipp.start("201", "register", contact, port=17160))
    ringing = sipp.start("201", "mc_ring", {}, port=17060)
    identity = f"P-Asserted-Identity: <sip:{EXTERNAL}@127.0.0.1>"
    values = {"target": "201", "ring_ms": 3000, "name": "Erika", "identity_header": identity}
    calling = sipp.start("trunk", "mc_call_cancel", values, port=17260)
    sipp.finish(calling)
    sipp.finish(ringing)
    mail = smtp.next_message()
    assert [address.addr_spec for address in mail["To"].addresses] == ["u201@example.org"], str(mail)
    assert str(mail["Subject"]) == "Missed call from Erika Mustermann", mail
    with lab.logfile.open("rb") as log:
        log.seek(log_start)
        agi_log = log.read().decode(errors="replace")
    assert f"appliance: external call from {EXTERNAL} to 201" in agi_log
    assert "appliance unreachable" not in agi_log
    scenario.done.add("called")


def test_sandbox_and_exposure(scenario: Scenario) -> None:
    scenario.require("installed")
    container = scenario.container
    report = container.run("systemd-analyze", "security", "--no-pager", PACKAGE)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)
    assert match, report
    exposure = float(match.group(1))
    pid = scenario.main_pid()
    as_service = ("setpriv", f"--reuid={PACKAGE}", f"--regid={PACKAGE}", "--init-groups")
    writable = container.run(
        "nsenter", "-t", str(pid), "-m", *as_service, "python3.11", "-c", WRITABLE
    ).split()
    print(f"package test: systemd-analyze security exposure {exposure} (at most {MAX_EXPOSURE})")
    print(f"package test: writable for the service: {' '.join(writable)}")
    assert exposure <= MAX_EXPOSURE, report
    assert STATE in writable and RECORDINGS in writable
    assert not [path for path in writable if path == "/run" or path.startswith("/run/")], writable
    assert set(writable) <= ALLOWED_WRITABLE, writable


def test_journal_lines_without_twistd_timestamps(scenario: Scenario) -> None:
    scenario.require("installed")
    journal = scenario.container.run(
        "journalctl", "-u", PACKAGE, "--no-pager", "-o", "cat", "_PID=" + str(scenario.main_pid())
    )
    lines = journal.splitlines()
    assert lines, "the service logged nothing to the journal"
    stamped = [line for line in lines if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line)]
    assert not stamped, stamped[:5]
    assert all(line.startswith(("[", "\t", " ", "Traceback")) for line in lines), lines
    # journald took each line's <N> prefix as its priority: AMI traffic is debug.
    debug = scenario.container.run(
        "journalctl", "-u", PACKAGE, "--no-pager", "-p", "debug..debug", "-o", "cat"
    )
    assert "Sent AMI Login" in debug, debug
    for bad in ("Traceback", "dropin.cache", "Permission denied", "Unable to write"):
        assert bad not in journal, journal
    warnings = scenario.container.run("journalctl", "-u", PACKAGE, "--no-pager", "-p", "warning", "-o", "cat")
    print(f"package test: {len(lines)} journal lines, warnings and worse:\n{warnings}")


def test_restart(scenario: Scenario) -> None:
    scenario.require("installed")
    before = scenario.main_pid()
    scenario.systemctl("restart", PACKAGE)
    after = scenario.serving(not_pid=before)
    assert after != before


def test_kill_9_recovery(scenario: Scenario) -> None:
    scenario.require("installed")
    before = scenario.main_pid()
    killed = time.monotonic()
    since = time.time() - 1  # the container shares the host's clock; earlier starts are skipped
    scenario.container.run("sh", "-c", f"kill -9 {before}")
    scenario.wait_restarted(not_pid=before, since=since)
    print(f"package test: serving again {time.monotonic() - killed:.2f}s after kill -9 (RestartSec=2s)")
    assert scenario.systemctl("is-active", PACKAGE) == "active"
    scenario.done.add("recovered")


def test_upgrade_keeps_store_and_config(scenario: Scenario) -> None:
    scenario.require("recovered")
    container = scenario.container
    scenario.systemctl("stop", PACKAGE)
    container.run(*SERVICE_PYTHON, WRITE_SETTING)
    shipped = container.path(f"{VENV}/lib/python3.11/site-packages/appliance/missed/xsl/missed_call.de.xsl")
    edited = shipped.read_text().replace("Verpasster Anruf", "Anruf verpasst (angepasst)")
    container.path(f"{TEMPLATES}/missed_call.de.xsl").write_text(edited)
    old_cache = container.path(f"{PLUGINS}/dropin.cache").stat().st_mtime
    container.apt("install", f"/srv/debs/{scenario.second.name}")
    installed = container.run("dpkg-query", "-W", "-f=${Version}", PACKAGE)
    assert installed == scenario.second_version
    assert f"port = {SMTP_PORT}" in container.path(CONFIG).read_text(), "the changed config.ini was replaced"
    assert "CC_TIMEOUT 77" in container.run(*SERVICE_PYTHON, READ_SETTING)
    kept = container.path(f"{TEMPLATES}/missed_call.de.xsl").read_text()
    assert kept == edited, "the upgrade changed the customised template"
    cache = container.path(f"{PLUGINS}/dropin.cache")
    assert cache.is_file() and cache.stat().st_mtime >= old_cache
    # postinst started it again, and its start job waited for READY=1.
    scenario.serving()
    scenario.done.add("upgraded")


def test_remove_keeps_state_and_purge_removes_it(scenario: Scenario) -> None:
    scenario.require("upgraded")
    container = scenario.container
    container.apt("remove", PACKAGE)
    assert container.run_status("systemctl", "is-active", PACKAGE)[1].strip() != "active"
    assert container.path(f"{STATE}/store.sqlite3").exists(), "remove deleted the store"
    assert container.path(CONFIG).exists(), "remove deleted the config"
    assert not container.path(f"/usr/lib/{PACKAGE}").exists(), "remove left files in the venv"
    container.apt("purge", PACKAGE)
    assert not container.path(STATE).exists(), "purge left the state"
    assert not container.path(RECORDINGS).exists(), "purge left the recorded announcements"
    assert not container.path(f"/etc/{PACKAGE}").exists(), "purge left the config"
    assert not container.path(UNIT).exists()


def test_two_builds_are_identical(scenario: Scenario) -> None:
    """The same source built twice, in two directories, offline: the same bytes."""
    again = scenario.again.wait()
    print(f"package test: built {again.name} again in {scenario.again.seconds:.0f}s")
    differences = deb_differences(scenario.first, again)
    assert not differences, "the two builds differ:\n" + "\n".join(differences[:40])
    print(f"package test: the two builds are byte-identical ({scenario.first.stat().st_size} bytes)")


def test_lintian_has_no_errors(scenario: Scenario) -> None:
    code = scenario.lintian.wait(timeout=600)
    report = scenario.lintian_log.read_text()
    print(report)
    assert code == 0, f"lintian failed to run ({code}):\n{report}"
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    warnings = [line for line in report.splitlines() if line.startswith("W:")]
    print(f"package test: lintian: {len(errors)} errors, {len(warnings)} warnings")
    assert not errors, "lintian errors:\n" + "\n".join(errors)
