"""Helpers of the Debian package test: build the .deb, a cached bookworm chroot.

Plain blocking code (subprocess), like ``appliance.lab``: the package test
drives dpkg-buildpackage, debootstrap, apt and twistd from outside.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.lab.lab import debian_mirror

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "appliance"

CACHE = Path(os.environ.get("APPLIANCE_LAB_CACHE", "/var/cache/appliance-lab"))
BASE_PACKAGES = ()
"""Extra packages in the cached base chroot; none: the .deb must pull its own."""
BASE_STAMP = "bookworm minbase " + " ".join(BASE_PACKAGES)

BUILD_TOOLS = (
    "build-essential",
    "dpkg-dev",
    "debhelper",
    "strip-nondeterminism",
    "lintian",
    "debootstrap",
    "python3.11-venv",
    "systemd-container",
)
"""Debian packages the test needs on the build machine (the build-deps among them);
./dev installs them (its DEBIAN_PACKAGES)."""


def run(command: list[str], *, log: Path | None = None, timeout: float = 600, **kwargs: object) -> str:
    """Run ``command``; on failure raise with the tail of its output."""
    result = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, **kwargs
    )  # type: ignore[call-overload]
    if log is not None:
        with open(log, "a") as handle:
            handle.write(f"$ {shlex.join(command)}\n{result.stdout}\n")
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise AssertionError(f"{shlex.join(command)} failed ({result.returncode}):\n{tail}")
    return str(result.stdout)


def check_build_tools() -> None:
    missing = [
        package
        for package in BUILD_TOOLS
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
    ]
    assert not missing, f"not installed: {' '.join(missing)} (./dev installs them)"


# -- building the .deb ---------------------------------------------------------


def copy_source(destination: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = Path(os.fsdecode(raw))
        source = REPO / relative
        if not source.is_file() or relative.parts[0] in (".git",):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def changelog_version(source: Path) -> str:
    first = (source / "debian/changelog").read_text().splitlines()[0]
    match = re.match(r"\S+ \(([^)]+)\)", first)
    assert match, f"debian/changelog: cannot read the version from {first!r}"
    return match.group(1)


def bump_version(source: Path, suffix: str) -> str:
    """Prepend a changelog entry with a higher version; return it."""
    changelog = source / "debian/changelog"
    old = changelog.read_text()
    first = old.splitlines()[0]
    version = changelog_version(source) + suffix
    entry = (
        f"{PACKAGE} ({version}) {first.split(')', 1)[1].split(';')[0].strip()}; urgency=medium\n\n"
        "  * Rebuilt by the package test to exercise an upgrade.\n\n"
        f" -- Package Test <test@example.org>  {time.strftime(CHANGELOG_DATE, time.gmtime())}\n\n"
    )
    changelog.write_text(entry + old)
    return version


CHANGELOG_DATE = "%a, %d %b %Y %H:%M:%S +0000"


WHEELHOUSE = CACHE / "wheelhouse"
"""The wheels ./dev fetched (./dev wheelhouse); the build installs from here only."""


class Build:
    """``dpkg-buildpackage -us -uc -b`` of a source copy, running in the background,
    offline: in a network namespace of its own, with nothing but the wheelhouse."""

    def __init__(self, workdir: Path, version_suffix: str = "", *, start: bool = True) -> None:
        """Copy the source now; build now, or on `start` (the copy stays as it was)."""
        self.workdir = workdir
        self.source = copy_source(workdir / "src")
        self.version = (
            bump_version(self.source, version_suffix) if version_suffix else changelog_version(self.source)
        )
        self.log = workdir / "build.log"
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        assert (WHEELHOUSE / ".stamp").is_file(), f"no wheelhouse in {WHEELHOUSE} (./dev wheelhouse)"
        env = {**os.environ, "APPLIANCE_WHEELHOUSE": str(WHEELHOUSE)}
        self.started = time.monotonic()
        with open(self.log, "w") as output:
            self.process = subprocess.Popen(
                ["unshare", "--net", "dpkg-buildpackage", "-us", "-uc", "-b"],
                cwd=self.source,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float = 900) -> Path:
        assert self.process is not None, "the build was never started"
        code = self.process.wait(timeout=timeout)
        tail = "\n".join(self.log.read_text().splitlines()[-40:])
        assert code == 0, f"dpkg-buildpackage failed ({code}) in {self.source}:\n{tail}"
        debs = list(self.workdir.glob(f"{PACKAGE}_{self.version}_*.deb"))
        assert len(debs) == 1, f"expected one {PACKAGE}_{self.version}_*.deb in {self.workdir}: {debs}"
        self.seconds = time.monotonic() - self.started
        return debs[0]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def deb_members(deb: Path) -> dict[str, str]:
    """Every member of the .deb's control and data archives: metadata and content hash."""
    members = {}
    for part in ("--ctrl-tarfile", "--fsys-tarfile"):
        stream = subprocess.run(["dpkg-deb", part, str(deb)], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
            for member in archive:
                content = archive.extractfile(member) if member.isfile() else None
                digest = hashlib.sha256(content.read()).hexdigest()[:16] if content else member.linkname
                members[f"{part[2:6]}:{member.name}"] = (
                    f"{member.mode:o} {member.uname}:{member.gname} {member.mtime} {member.size} {digest}"
                )
    return members


def deb_differences(first: Path, second: Path) -> list[str]:
    """How two .debs differ, member by member (empty when they are the same bytes)."""
    if first.read_bytes() == second.read_bytes():
        return []
    one, other = deb_members(first), deb_members(second)
    found = [
        f"{name}: {one.get(name, 'missing')} | {other.get(name, 'missing')}"
        for name in sorted(one.keys() | other.keys())
        if one.get(name) != other.get(name)
    ]
    return found or ["the members are the same; the ar or tar framing differs"]


# -- the bookworm chroot ---------------------------------------------------------


@contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def bookworm_base() -> Path:
    """A clean minbase bookworm chroot, built once and cached (like the lab's sid)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / "bookworm"
    with locked(CACHE / "bookworm.lock"):
        stamp = root / ".appliance-lab-packages"
        if stamp.exists() and stamp.read_text() == BASE_STAMP:
            return root
        building = CACHE / "bookworm.building"
        unmount_below(building)
        shutil.rmtree(building, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase"]
        if BASE_PACKAGES:
            command.append("--include=" + ",".join(BASE_PACKAGES))
        run([*command, "bookworm", str(building), debian_mirror()], timeout=1200)
        # The same apt settings as this machine (e.g. a frozen mirror's dates),
        # package lists fetched once here, and host name resolution.
        for conf in Path("/etc/apt/apt.conf.d").glob("99*"):
            shutil.copy(conf, building / "etc/apt/apt.conf.d" / conf.name)
        shutil.copy("/etc/resolv.conf", building / "etc/resolv.conf")
        run(["chroot", str(building), "apt-get", "update", "-qq"], timeout=600)
        stamp_file = building / ".appliance-lab-packages"
        stamp_file.write_text(BASE_STAMP)
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
        return root


def mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(prefix) or point == prefix.rstrip("/"):
                found.append(point)
    return found


def unmount_below(root: Path) -> None:
    if not root.exists():
        return
    for point in sorted(mounts_below(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def processes_in(root: Path) -> list[int]:
    """Processes whose root directory is ``root`` (started in the chroot)."""
    wanted = str(root.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Chroot:
    """A throw-away copy of the cached base, with /proc and a shared apt cache."""

    def __init__(self, base: Path, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        run(["cp", "-a", str(base), str(root)])
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        archives = CACHE / "bookworm-apt-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "proc", "proc", str(root / "proc")])
        run(["mount", "--bind", str(archives), str(root / "var/cache/apt/archives")])
        # No daemons from maintainer scripts (there is no init in a chroot).
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def run(self, *command: str, timeout: float = 600) -> str:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND": "noninteractive",
            "LANG": "C.UTF-8",
            "HOME": "/root",
        }
        return run(["chroot", str(self.root), *command], log=self.log, timeout=timeout, env=env)

    def apt(self, *args: str) -> str:
        # The apt cache is shared by every chroot of every run on this machine.
        with locked(CACHE / "bookworm-apt-archives.lock"):
            return self.run(
                "apt-get",
                "-y",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                *args,
                timeout=900,
            )

    def kill_all(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            pids = processes_in(self.root)
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            wait_gone(pids, timeout=10)

    def release(self) -> None:
        """Kill what runs in it and unmount; keep the tree."""
        self.kill_all()
        unmount_below(self.root)
        left = mounts_below(self.root)
        if left:
            raise AssertionError(f"still mounted below {self.root}: {left}")

    def destroy(self) -> None:
        """Release it, and delete it only when nothing is mounted."""
        self.release()
        shutil.rmtree(self.root, ignore_errors=True)


def set_ports(config_text: str, ports: dict[tuple[str, str], int | str]) -> str:
    """``config.ini`` with ``[section] key`` set, comments kept."""
    section = ""
    lines = []
    done = set()
    for line in config_text.splitlines():
        header = re.match(r"\s*\[([^]]+)\]", line)
        if header:
            section = header.group(1)
        key = re.match(r"\s*([A-Za-z_]+)\s*=", line)
        if key and (section, key.group(1)) in ports:
            line = f"{key.group(1)} = {ports[section, key.group(1)]}"
            done.add((section, key.group(1)))
        lines.append(line)
    assert done == set(ports), f"config.ini lacks {set(ports) - done}"
    return "\n".join(lines) + "\n"


def wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until every process in ``pids`` has exited, on their pidfds, with a bound."""
    poller = select.poll()
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds[fd] = pid
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while fds and (remaining := deadline - time.monotonic()) > 0:
            for fd, _event in poller.poll(remaining * 1000):
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
    finally:
        for fd in fds:
            os.close(fd)
