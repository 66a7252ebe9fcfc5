"""Real address-book servers on loopback for the contact tests: Radicale (CardDAV,
from PyPI) and OpenLDAP's slapd (Debian).  Each runs in a temporary directory on
a port of the lab instance's reserved range (`tests.e2e.portblocks`), is ready
when it says so on its log, and is stopped by process id."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from appliance.lab import LabPorts
from tests.e2e.portblocks import PortBlock, PortBlocks

READY_SECONDS = 30.0


def port_blocks() -> PortBlocks:
    """The reserved test ports of this run's lab instance (``APPLIANCE_TEST_LAB``)."""
    return PortBlocks.for_lab(LabPorts.for_instance(os.environ.get("APPLIANCE_TEST_LAB", "test")))


def _wait_for_line(process: subprocess.Popen[bytes], marker: str, what: str) -> subprocess.Popen[bytes]:
    """Read the server's log until ``marker`` appears (the server is listening), bounded;
    then hand the log to a ``cat`` that keeps draining it (a full pipe would stop the
    server).  Returns that drain process."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_SECONDS
    seen = b""
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(timeout=left):
            process.kill()
            raise RuntimeError(f"{what} did not start:\n" + seen.decode(errors="replace")[-2000:])
        chunk = os.read(fd, 65536)
        if not chunk:
            process.kill()
            raise RuntimeError(f"{what} exited:\n" + seen.decode(errors="replace")[-2000:])
        seen += chunk
    selector.close()
    return subprocess.Popen(["cat"], stdin=process.stderr, stdout=subprocess.DEVNULL)


class _Server:
    """A server process in a temporary directory on a port block of its own."""

    dir: Path
    block: PortBlock
    process: subprocess.Popen[bytes]
    _drain: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._drain.wait(10)
        port_blocks().release(self.block)
        shutil.rmtree(self.dir, ignore_errors=True)


class Radicale(_Server):
    """A CardDAV server with one user and one address book."""

    def __init__(self, user: str = "office", password: str = "dav-secret") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="radicale-"))
        self.block = port_blocks().take()
        self.port = self.block.tcp[0]
        self.user, self.password = user, password
        (self.dir / "users").write_text(f"{user}:{password}\n")
        (self.dir / "config").write_text(
            f"[server]\nhosts = 127.0.0.1:{self.port}\n"
            f"[auth]\ntype = htpasswd\nhtpasswd_filename = {self.dir / 'users'}\n"
            "htpasswd_encryption = plain\n"
            f"[storage]\nfilesystem_folder = {self.dir / 'collections'}\n"
            "[rights]\ntype = owner_only\n[logging]\nlevel = info\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(self.dir / "config")],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        self._drain = _wait_for_line(self.process, "Listening on", "radicale")
        self.url = f"http://127.0.0.1:{self.port}/{user}/book/"
        body = (
            '<?xml version="1.0"?><d:mkcol xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
            "<d:set><d:prop><d:resourcetype><d:collection/><c:addressbook/></d:resourcetype>"
            "</d:prop></d:set></d:mkcol>"
        )
        self._request("MKCOL", self.url, body.encode(), "application/xml")

    def _request(self, method: str, url: str, body: bytes | None = None, kind: str = "") -> int:
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", "Basic " + _basic(self.user, self.password))
        if kind:
            request.add_header("Content-Type", kind)
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def put(self, name: str, vcard: str) -> None:
        self._request("PUT", self.url + name, vcard.encode(), "text/vcard")

    def delete(self, name: str) -> None:
        self._request("DELETE", self.url + name)


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


SCHEMAS = ("core", "cosine", "inetorgperson")


class Slapd(_Server):
    """OpenLDAP with one database ``dc=example,dc=org`` and an admin who may write."""

    base = "dc=example,dc=org"
    admin = "cn=admin,dc=example,dc=org"
    password = "ldap-secret"

    def __init__(self) -> None:
        binary = shutil.which("slapd") or "/usr/sbin/slapd"
        if not Path(binary).exists():
            raise RuntimeError("slapd is not installed (./dev setup installs Debian's slapd)")
        self.dir = Path(tempfile.mkdtemp(prefix="slapd-"))
        (self.dir / "db").mkdir()
        self.block = port_blocks().take()
        self.port = self.block.tcp[0]
        includes = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
        (self.dir / "slapd.conf").write_text(
            f"{includes}pidfile {self.dir / 'slapd.pid'}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f'database mdb\nsuffix "{self.base}"\nrootdn "{self.admin}"\nrootpw {self.password}\n'
            f"directory {self.dir / 'db'}\nmaxsize 10485760\n"
        )
        self.uri = f"ldap://127.0.0.1:{self.port}"
        # Debug level 8 logs the daemon loop: "listen=" is written once the socket
        # accepts ("slapd starting" comes before listen()).
        self.process = subprocess.Popen(
            [binary, "-f", str(self.dir / "slapd.conf"), "-h", self.uri + "/", "-d", "264"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        self._drain = _wait_for_line(self.process, "daemon: epoll: listen=", "slapd")
        self.add(self.base, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        self.add(f"ou=people,{self.base}", ["organizationalUnit"], {"ou": "people"})

    def add(self, dn: str, classes: list[str], attributes: dict[str, object]) -> None:
        import ldap3

        connection = ldap3.Connection(ldap3.Server(self.uri), self.admin, self.password, auto_bind=True)
        try:
            if not connection.add(dn, classes, attributes):
                raise RuntimeError(f"slapd refused {dn}: {connection.result}")
        finally:
            connection.unbind()

    def person(self, uid: str, name: str, **attributes: object) -> None:
        self.add(
            f"uid={uid},ou=people,{self.base}",
            ["inetOrgPerson"],
            {"cn": name, "sn": name.split()[-1], "uid": uid, **attributes},
        )
