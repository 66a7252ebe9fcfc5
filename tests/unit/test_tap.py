"""``twistd appliance``: the service tree built from config.ini, and start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from appliance import tap
from tests.unit.test_config import shipped, write

REPO = Path(__file__).resolve().parents[2]


def test_service_tree_uses_config(tmp_path: Path) -> None:
    """AMI connects where config.ini says and FastAGI and the web page listen where it says."""
    reactor = MemoryReactorClock()
    config = write(tmp_path, shipped(port="4999"))  # every port key; ami, fastagi, web, smtp alike
    service = tap.build(str(config), reactor)
    service.startService()
    try:
        assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.1", 4999)]
        servers = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        assert servers == [(4999, "127.0.0.1")] * 2  # FastAGI, web
        assert service.settings.get("CC_TIMEOUT") == 60
        assert (tmp_path / "var" / "appliance.sqlite3").exists()
    finally:
        service.stopService()


def test_make_service_bad_config_is_one_line(tmp_path: Path) -> None:
    """makeService turns a config problem into SystemExit with one line."""
    options = tap.Options()
    options.parseOptions(["--config", str(write(tmp_path, shipped(port="x")))])
    with pytest.raises(SystemExit) as caught:
        tap.makeService(options, reactor=MemoryReactorClock())
    message = str(caught.value.code)
    assert message.startswith("appliance: ") and "[ami] port: 'x' is not a port number" in message
    assert "\n" not in message


def test_unwritable_store_is_a_config_error(tmp_path: Path) -> None:
    """A store path that cannot be a file is reported against [store] path."""
    (tmp_path / "plain-file").write_text("")
    config = write(tmp_path, shipped(path="plain-file/store.sqlite3"))
    with pytest.raises(tap.configuration.ConfigError, match=r"\[store\] path: "):
        tap.build(str(config), MemoryReactorClock())


def run_twistd(config: Path) -> subprocess.CompletedProcess[str]:
    """The real ``twistd -n appliance`` on ``config``, run from its folder, until it exits."""
    twistd = Path(sys.executable).with_name("twistd")
    return subprocess.run(
        [str(twistd), "-n", "--pidfile=", "appliance", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        timeout=60,
    )


def test_twistd_refuses_bad_config(tmp_path: Path) -> None:
    """The real ``twistd -n appliance`` exits non-zero with one clear line on stderr."""
    config = write(tmp_path, shipped(language="klingon"))
    result = run_twistd(config)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"appliance: {config}: [appliance] language: 'klingon' is not one of de, en"], (
        result.stderr
    )


@pytest.mark.parametrize("section", ["fastagi", "web"])
def test_taken_port_stops_twistd_with_one_line(tmp_path: Path, section: str) -> None:
    """A port someone else holds: the real twistd exits non-zero with one line naming
    the section, instead of running on with nothing listening."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        ports = {"fastagi": "0", "web": "0", "ami": "1", section: str(taken)}  # AMI: refused, retried
        lines, current = [], ""
        for line in shipped().splitlines():
            if line.startswith("["):
                current = line.strip("[]")
            if current in ports and line.startswith("port ="):
                line = f"port = {ports[current]}"
            lines.append(line)
        config = write(tmp_path, "\n".join(lines) + "\n")
        result = run_twistd(config)
    assert result.returncode != 0
    # Logging has started by then: twistd's log (stdout with -n) carries stderr's line.
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "cannot listen" in line or "Traceback" in line]
    assert len(errors) == 1, output
    assert f"appliance: [{section}]: cannot listen: " in errors[0] and str(taken) in errors[0]
