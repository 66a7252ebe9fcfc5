"""A bookworm container booted with systemd as PID 1 (systemd-nspawn), for the package test.

The host's own PID 1 need not be systemd.  nspawn runs in a cgroup (v2) of its
own that the test makes and removes, so the container's ``payload/`` and
``supervisor/`` cgroups land there and not at the host's cgroup root.  The
container has only a loopback network (``--private-network``): whatever apt
needs is downloaded into the shared apt cache before it boots, and the test
runs the lab's Asterisk, sipp and an SMTP server in the container's network
namespace (``nsenter -n``), where the appliance's loopback is.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.package.debtools import BASE_STAMP, CACHE, Chroot, bookworm_base, locked, run, unmount_below

SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus")
"""What the container adds to the minbase chroot to boot."""
SYSTEMD_STAMP = f"{BASE_STAMP} + {' '.join(SYSTEMD_PACKAGES)}"

INSIDE_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


def systemd_base() -> Path:
    """The cached bookworm chroot plus systemd, itself cached beside it."""
    base = bookworm_base()
    root = CACHE / "bookworm-systemd"
    with locked(CACHE / "bookworm-systemd.lock"):
        stamp = root / ".appliance-lab-packages"
        if stamp.exists() and stamp.read_text() == SYSTEMD_STAMP:
            return root
        building = CACHE / "bookworm-systemd.building"
        unmount_below(building)
        shutil.rmtree(building, ignore_errors=True)
        chroot = Chroot(base, building, CACHE / "bookworm-systemd.log")
        chroot.apt("install", "--no-install-recommends", *SYSTEMD_PACKAGES)
        chroot.release()
        (building / "usr/sbin/policy-rc.d").unlink()
        (building / "etc/machine-id").write_text("")  # each boot makes its own
        (building / ".appliance-lab-packages").write_text(SYSTEMD_STAMP)
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
        return root


def cgroup2_mount() -> Path:
    """Where the host mounts the unified (v2) cgroup hierarchy."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2":
                return Path(fields[1])
    raise AssertionError("no cgroup2 hierarchy mounted on this machine (systemd-nspawn needs one)")


def remove_cgroup(directory: Path, timeout: float = 30) -> None:
    """Kill what is left in the cgroup, then rmdir it and every cgroup below, deepest first."""
    if not directory.is_dir():
        return
    (directory / "cgroup.kill").write_text("1")
    events = directory / "cgroup.events"
    deadline = time.monotonic() + timeout
    with open(events) as handle:
        poller = select.poll()
        poller.register(handle, select.POLLPRI)  # the kernel's notice that the file changed
        while "populated 1" in events.read_text():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"processes left in cgroup {directory} after {timeout}s")
            poller.poll(remaining * 1000)
            handle.seek(0)
            handle.read()
    below = sorted((path for path in directory.rglob("*") if path.is_dir()), key=lambda p: len(p.parts))
    for path in [*reversed(below), directory]:
        try:
            path.rmdir()
        except OSError as error:
            raise AssertionError(f"cgroup {path} not removed: {error}") from error


class Container:
    """A throw-away copy of the systemd base, prepared as a chroot, then booted."""

    def __init__(self, base: Path, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.chroot: Chroot | None = Chroot(base, root, log)
        self.name = f"appliance-pkg-{os.getpid()}"
        self.cgroup = cgroup2_mount() / self.name
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def download(self, *debs: str) -> None:
        """Fetch what installing ``debs`` needs (network here, in the chroot, through the
        shared apt cache) into the container's own apt cache."""
        assert self.chroot is not None, "download before boot"
        self.chroot.apt("install", "--download-only", *debs)
        self.chroot.release()
        # All of the shared cache (bookworm packages of the package test only: small).
        for deb in (CACHE / "bookworm-apt-archives").glob("*.deb"):
            shutil.copy(deb, self.path("/var/cache/apt/archives") / deb.name)

    def boot(self, timeout: float = 120) -> str:
        """Boot systemd; return its state once it settled ('running' or 'degraded')."""
        assert self.chroot is not None, "booted twice"
        self.chroot.release()
        self.chroot = None
        self.path("/usr/sbin/policy-rc.d").unlink()
        self.cgroup.mkdir()
        procs = self.cgroup / "cgroup.procs"
        env = {**INSIDE_ENV, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        command = ["systemd-nspawn", "--quiet", "--boot", f"--directory={self.root}",
                   f"--machine={self.name}", "--register=no", "--keep-unit", "--private-network",
                   "--console=pipe"]  # fmt: skip
        started = time.monotonic()
        with open(self.log.with_name("console.log"), "ab") as console:
            self.nspawn = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=lambda: procs.write_text(str(os.getpid())),
            )
        self.leader = self._find_leader(timeout=30)
        state = self.run_status("systemctl", "is-system-running", "--wait", timeout=timeout)[1].strip()
        self.boot_seconds = time.monotonic() - started
        assert state in ("running", "degraded"), f"systemd in the container is {state!r}"
        return state

    def _find_leader(self, timeout: float) -> int:
        """The container's PID 1 as the host sees it, once it is systemd (which marks
        its boot with /run/systemd/system and answers on /run/systemd/private)."""
        assert self.nspawn is not None
        pidfd = os.pidfd_open(self.nspawn.pid)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
                for pid in children.read_text().split() if children.exists() else ():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
                    booted = Path(f"/proc/{pid}/root/run/systemd/private").is_socket()
                    if nspid.split()[-1] == "1" and len(nspid.split()) > 2 and booted:
                        return int(pid)
                # Nothing announces the child; what can happen meanwhile is nspawn
                # failing, so wait on its pidfd, briefly, then look again.
                if select.select([pidfd], [], [], 0.05)[0]:
                    raise AssertionError(f"systemd-nspawn exited: {self.console_tail()}")
        finally:
            os.close(pidfd)
        raise AssertionError(f"the container's PID 1 did not appear in {timeout}s: {self.console_tail()}")

    def console_tail(self) -> str:
        return "\n".join(self.log.with_name("console.log").read_text(errors="replace").splitlines()[-30:])

    # -- commands inside -----------------------------------------------------

    def enter(self, *namespaces: str) -> list[str]:
        """nsenter into the container: all namespaces, or only those given (e.g. '-n')."""
        return ["nsenter", "-t", str(self.leader), *(namespaces or ("-a",)), "--"]

    def run_status(self, *command: str, timeout: float = 120) -> tuple[int, str]:
        """Exit code and output of ``command`` run in the container."""
        result = subprocess.run(
            [*self.enter(), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=INSIDE_ENV,
            timeout=timeout,
        )
        with open(self.log, "a") as handle:
            handle.write(f"# {shlex.join(command)}  (exit {result.returncode})\n{result.stdout}\n")
        return result.returncode, result.stdout

    def run(self, *command: str, timeout: float = 600) -> str:
        """``command`` in the container; fail with its output unless it exits 0."""
        code, output = self.run_status(*command, timeout=timeout)
        if code != 0:
            tail = "\n".join(output.splitlines()[-40:])
            raise AssertionError(f"in the container: {shlex.join(command)} failed ({code}):\n{tail}")
        return output

    def apt(self, *args: str) -> str:
        return self.run("apt-get", "-y", "-o", "Dpkg::Options::=--force-confdef",
                        "-o", "Dpkg::Options::=--force-confold", *args, timeout=900)  # fmt: skip

    def popen_in_network(self, command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """A host program in the container's network namespace (host files, container loopback)."""
        return subprocess.Popen([*self.enter("-n"), *command], **kwargs)  # type: ignore[call-overload]

    def run_in_network(self, command: list[str], timeout: float = 120) -> str:
        return run([*self.enter("-n"), *command], log=self.log, timeout=timeout)

    # -- the end -------------------------------------------------------------

    def destroy(self, timeout: float = 60) -> None:
        """Power off (SIGTERM to nspawn), remove the cgroup and the tree."""
        if self.chroot is not None:
            self.chroot.release()
        if self.nspawn is not None:
            if self.nspawn.poll() is None:
                self.nspawn.send_signal(signal.SIGTERM)
                try:
                    self.nspawn.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                    self.nspawn.wait()
            remove_cgroup(self.cgroup)
            # nspawn leaves this (empty) directory on the host: "we can't allow that".
            propagate = Path("/run/systemd/nspawn/propagate") / self.name
            if propagate.is_dir():
                propagate.rmdir()
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
