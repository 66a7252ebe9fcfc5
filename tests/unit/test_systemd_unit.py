"""The shipped systemd unit: enough descriptors, and restart limits that cannot loop tightly."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "debian" / "appliance.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def seconds(value: str) -> float:
    value = value.strip()
    for suffix, factor in (("min", 60.0), ("ms", 0.001), ("s", 1.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_limit_nofile_is_far_above_the_default() -> None:
    """The process may hold many more than 1,024 descriptors."""
    assert int(unit()["Service"]["LimitNOFILE"]) >= 65536


def test_restart_limit_stops_a_start_up_loop() -> None:
    """A process that fails at every start is restarted at most StartLimitBurst times
    within StartLimitIntervalSec, and that window is longer than the burst of restarts
    takes, so systemd gives up instead of restarting for ever."""
    parsed = unit()
    burst = int(parsed["Unit"]["StartLimitBurst"])
    interval = seconds(parsed["Unit"]["StartLimitIntervalSec"])
    pause = seconds(parsed["Service"]["RestartSec"])
    assert parsed["Service"]["Restart"] == "on-failure"
    assert burst * pause < interval
    assert 1 <= burst <= 10


def test_unit_verifies_where_systemd_analyze_exists() -> None:
    """systemd-analyze finds no unknown keys (run where it is installed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the package test verifies it in its chroot
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    unknown = [line for line in result.stderr.splitlines() if "Unknown key" in line]
    assert unknown == []
