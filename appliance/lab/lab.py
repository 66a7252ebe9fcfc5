"""Build, configure, start and stop the Asterisk lab.

Plain blocking code on purpose: it is a tool run from the command line and
from test fixtures, never inside the appliance's reactor.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.lab import asteriskconf

PACKAGES = ("asterisk", "asterisk-core-sounds-en-gsm")
"""What the chroot holds; changing it rebuilds the cached chroot."""

DEFAULT_CACHE = Path(os.environ.get("APPLIANCE_LAB_CACHE", "/var/cache/appliance-lab"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class LabError(Exception):
    """The lab could not be built, started or reached."""


@dataclass(frozen=True)
class LabPorts:
    """Where one lab instance listens; all on one loopback address."""

    host: str = "127.0.0.1"
    sip: int = 5060
    ami: int = 5038
    fastagi: int = 4573
    rtp_start: int = 20000
    rtp_end: int = 20999
    tools_start: int = 12000
    tools_end: int = 12599
    """The ports the instance's test tools take (sipp phones, mail sinks, web servers):
    below the kernel's ephemeral range (32768 up on Debian), so no other process's
    outgoing socket can take one between choosing it and binding it."""

    @classmethod
    def for_instance(cls, name: str) -> LabPorts:
        """The demo keeps the well-known ports; ``test`` and ``test1``..``test9``
        move clear of them and of each other, so suites can run side by side."""
        if name == "demo":
            return cls()
        match = re.fullmatch(r"test([1-9]?)", name)
        if not match:
            raise LabError(f"unknown lab instance {name!r} (demo, test, test1..test9)")
        n = int(match.group(1) or 0)
        return cls(
            sip=15060 + 100 * n,
            ami=15038 + 100 * n,
            fastagi=14573 + 100 * n,
            rtp_start=21000 + 1000 * n,
            rtp_end=21999 + 1000 * n,
            tools_start=6000 + 600 * n,
            tools_end=6599 + 600 * n,
        )


@dataclass
class Lab:
    """One Asterisk instance in the shared chroot."""

    instance: str = "demo"
    ports: LabPorts = field(default_factory=LabPorts)
    cache: Path = DEFAULT_CACHE
    extensions: Sequence[str] = asteriskconf.DEMO_EXTENSIONS
    ami_user: str = "appliance"
    ami_secret: str = "lab-secret"
    desk: asteriskconf.DeskPhones | None = None
    """Real SIP phones on another address (``./dev demo --listen``), or none."""
    command_prefix: Sequence[str] = ()
    """Put before every Asterisk command, e.g. ``nsenter -t PID -n --`` to run the
    lab in another network namespace (the package test's container)."""

    @property
    def root(self) -> Path:
        return self.cache / "sid"

    @property
    def confdir(self) -> str:
        """The instance's config directory as Asterisk sees it inside the chroot."""
        return f"/etc/appliance-lab/{self.instance}"

    @property
    def rundir(self) -> str:
        return f"/run/appliance-lab/{self.instance}"

    @property
    def logfile(self) -> Path:
        return self.root / f"var/log/appliance-lab/{self.instance}/messages"

    @property
    def recordings(self) -> tuple[Path, str]:
        """Where an appliance on this lab writes its recorded announcements, and the same
        directory as Asterisk in the chroot sees it (config.ini ``[announcements]``)."""
        inside = f"/var/lib/appliance-lab/{self.instance}/recordings"
        return self.root / inside.lstrip("/"), inside

    # -- building -----------------------------------------------------------

    def build(self, mirror: str | None = None) -> bool:
        """Create the chroot once; later calls find it cached.  True if built now."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with _locked(self.cache / "build.lock"):
            stamp = self.root / ".appliance-lab-packages"
            wanted = " ".join(PACKAGES)
            if stamp.exists() and stamp.read_text() == wanted:
                return False
            if not shutil.which("debootstrap"):
                raise LabError("debootstrap is not installed (apt-get install debootstrap)")
            tmp = self.cache / "sid.building"
            _unmount_below(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            command = [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "sid",
                str(tmp),
                mirror or debian_mirror(),
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
                raise LabError(f"debootstrap failed ({result.returncode}):\n{tail}")
            (tmp / ".appliance-lab-packages").write_text(wanted)
            _unmount_below(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            tmp.rename(self.root)
            return True

    # -- configuration ------------------------------------------------------

    def configure(self, dialplan_include: Path) -> None:
        """Write this instance's Asterisk configuration into the chroot."""
        etc = self.root / self.confdir.lstrip("/")
        etc.mkdir(parents=True, exist_ok=True)
        files = asteriskconf.render(
            confdir=self.confdir,
            instance=self.instance,
            ports=self.ports,
            extensions=self.extensions,
            ami_user=self.ami_user,
            ami_secret=self.ami_secret,
            desk=self.desk,
        )
        for name, text in files.items():
            (etc / name).write_text(text)
        shutil.copyfile(dialplan_include, etc / "appliance.conf")
        from appliance import prompts  # the appliance's announcements, de and en

        prompts.build(self.root / "usr/share/asterisk/sounds")
        for sub in ("run", "var/log", "var/lib", "var/spool", "var/cache"):
            (self.root / sub / "appliance-lab" / self.instance).mkdir(parents=True, exist_ok=True)

    # -- running ------------------------------------------------------------

    def _asterisk(self, *args: str) -> list[str]:
        asterisk = ["chroot", str(self.root), "/usr/sbin/asterisk", "-C", f"{self.confdir}/asterisk.conf"]
        return [*self.command_prefix, *asterisk, *args]

    def is_running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def pid(self) -> int | None:
        pidfile = self.root / self.rundir.lstrip("/") / "asterisk.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 60.0) -> None:
        """Start Asterisk (it daemonises) and return once it is fully booted."""
        if self.is_running():
            return
        self._mount_proc()
        sock = self.root / self.rundir.lstrip("/") / "asterisk.ctl"
        if sock.exists():
            sock.unlink()
        result = subprocess.run(self._asterisk("-n"), capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"asterisk did not start: {result.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(f"asterisk not ready after {timeout:.0f}s; see {self.logfile}")
            if sock.exists():
                try:
                    booted = subprocess.run(
                        self._asterisk("-rx", "core waitfullybooted"),
                        capture_output=True,
                        text=True,
                        timeout=remaining,
                    )
                except subprocess.TimeoutExpired:
                    continue
                if booted.returncode == 0 and "fully booted" in booted.stdout:
                    return
            time.sleep(0.1)  # polling a socket file that has no event to wait on

    def stop(self, timeout: float = 30.0) -> None:
        """Stop Asterisk gracefully, then by force."""
        pid = self.pid()
        if pid is None or not self.is_running():
            return
        subprocess.run(self._asterisk("-rx", "core stop now"), capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.is_running():
            os.kill(pid, 9)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, command: str) -> str:
        """Run one Asterisk CLI command and return its output."""
        result = subprocess.run(self._asterisk("-rx", command), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise LabError(f"CLI {command!r} failed: {result.stderr.strip()}")
        return result.stdout

    def _mount_proc(self) -> None:
        proc = self.root / "proc"
        if not os.path.ismount(proc):
            subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)

    def describe(self) -> str:
        p = self.ports
        state = "running" if self.is_running() else "stopped"
        return (
            f"lab {self.instance}: asterisk {state} (chroot {self.root})\n"
            f"  SIP (PJSIP/UDP)  {p.host}:{p.sip}  extensions "
            f"{self.extensions[0]}..{self.extensions[-1]}, trunk 'trunk'\n"
            f"  AMI              {p.host}:{p.ami}  user {self.ami_user} secret {self.ami_secret}\n"
            f"  FastAGI expected {p.host}:{p.fastagi}\n"
            f"  log              {self.logfile}"
            + (
                ""
                if self.desk is None
                else f"\n  desk phones      {self.desk.address}:{p.sip}  extensions "
                f"{', '.join(self.desk.passwords)} (with passwords)"
            )
        )


def debian_mirror() -> str:
    """The mirror this machine's apt uses, so the lab reaches what apt reaches."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if source.suffix == ".sources" and words[:1] == ["URIs:"] and len(words) > 1:
                if "security" not in words[1]:
                    return words[1]
            elif words[:1] == ["deb"]:
                for word in words[1:]:
                    if word.startswith("http") and "security" not in word:
                        return word
    return DEFAULT_MIRROR


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _unmount_below(root: Path) -> None:
    """Never delete a chroot with /proc still mounted in it."""
    proc = root / "proc"
    if os.path.ismount(proc):
        subprocess.run(["umount", "-l", str(proc)], check=False)
