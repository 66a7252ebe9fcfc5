"""What ships is what runs (issue 16): the wheel, and a strict editable install,
each in a fresh virtualenv outside the checkout, run ``twistd appliance``, serve
``/login`` and render a missed-call mail from the shipped XSL.

Both venvs install offline from the wheelhouse ./dev prepared (the same wheels
the .deb is built from), so they hold exactly the declared runtime dependencies.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.package.debtools import WHEELHOUSE, copy_source, run

RENDER_MAIL = """
from appliance.missed.render import Notice, Renderer
mail = Renderer().render(Notice("+4930123456", "Erika", False, 1.7e9, "Bernd Croft", "201", 4.0), "en")
print(mail.subject)
print(mail.html)
"""
WHERE = (
    "import appliance, twisted.plugins.appliance_plugin as p; print(appliance.__file__); print(p.__file__)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_venv(path: Path) -> Path:
    """A venv of Debian's python3.11 (as the .deb's) with only the wheelhouse to install from."""
    run(["/usr/bin/python3.11", "-m", "venv", str(path)])
    return path / "bin/python"


def pip_offline(python: Path, *args: str) -> str:
    return run([str(python), "-m", "pip", "--disable-pip-version-check", "install", "--no-index",
                "--find-links", str(WHEELHOUSE), *args], timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (WHEELHOUSE / ".stamp").is_file(), f"no wheelhouse in {WHEELHOUSE} (./dev wheelhouse)"
    return copy_source(tmp_path_factory.mktemp("source"))


def serve_and_render(python: Path, workdir: Path, source: Path) -> None:
    """twistd appliance from ``python``'s venv, run in ``workdir``: /login answers, a mail renders,
    and the code came from the venv (or, editable, from ``source``), never from this checkout."""
    repo = Path(__file__).resolve().parents[2]
    where = run([str(python), "-c", WHERE], cwd=workdir).split()
    assert all(not Path(path).is_relative_to(repo) for path in where), where
    web = free_port()
    config = workdir / "config.ini"
    config.write_text(
        f"[ami]\nhost = 127.0.0.1\nport = {free_port()}\nusername = appliance\nsecret = s\n"
        f"[fastagi]\nbind = 127.0.0.1\nport = {free_port()}\n[web]\nbind = 127.0.0.1\nport = {web}\n"
        "[smtp]\nhost = 127.0.0.1\nport = 25\nstarttls = off\nsender = appliance@localhost\n"
        "[store]\npath = store.sqlite3\n[appliance]\nlanguage = en\n"
    )
    log = workdir / "twistd.log"
    twistd = [str(python.parent / "twistd"), "--nodaemon", "--pidfile=",
              "--logger=appliance.journal.observer", "appliance", "--config", str(config)]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(twistd, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(web, process, log)
        connection = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
        connection.request("GET", "/login")
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status == 200, f"GET /login: {response.status}\n{log.read_text()}"
        assert 'name="password"' in body and "style" in body, body[:500]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()
    subject, html = run([str(python), "-c", RENDER_MAIL], cwd=workdir).split("\n", 1)
    assert subject == "Missed call from Erika"
    assert "<title>Missed call</title>" in html and "Bernd Croft (201)" in html, html


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


def test_wheel_in_a_fresh_venv_serves_and_renders(source: Path, tmp_path: Path) -> None:
    builder = fresh_venv(tmp_path / "builder")
    pip_offline(builder, "-r", str(source / "debian/build-tools.lock"))
    dist = tmp_path / "dist"
    run([str(builder), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(dist), str(source)], timeout=300)  # fmt: skip
    [wheel] = dist.glob("appliance-*.whl")
    python = fresh_venv(tmp_path / "venv")
    pip_offline(python, str(wheel))
    installed = run([str(python), "-m", "pip", "list", "--format=freeze"]).split()
    names = {line.split("==")[0].lower() for line in installed}
    assert not names & {"pytest", "aiosmtpd", "radicale"}, "a test tool was installed as a runtime dependency"
    assert "werkzeug" in names
    serve_and_render(python, tmp_path, source)


def test_strict_editable_install_serves_and_renders(source: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    pip_offline(python, "-r", str(source / "debian/build-tools.lock"))
    pip_offline(
        python, "--no-build-isolation", "-e", str(source), "--config-settings", "editable_mode=strict"
    )
    serve_and_render(python, tmp_path, source)
