"""The whole suite, as ``./dev test`` runs it: lint, types, unit, browser, end-to-end.

Unit tests run without the reactor; end-to-end tests run under pytest-twisted
against the real Asterisk lab.  Any step failing fails the run, and so does a
pytest run that collected no tests (exit 5).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
CHECKED = [path for path in ("appliance", "twisted", "tests", "bench") if Path(path).exists()]


def step(name: str, command: list[str]) -> int:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command)
    print(f"=== {name}: exit {code} in {time.monotonic() - started:.1f}s", flush=True)
    if code == 5:
        print(f"=== {name}: no tests were collected; that is a failure", flush=True)
    return code


def main(argv: list[str]) -> int:
    if argv:
        return step("pytest", [PY, "-m", "pytest", *argv])
    failed = []
    for name, command in [
        ("ruff", [PY, "-m", "ruff", "check", *CHECKED]),
        ("format", [PY, "-m", "ruff", "format", "--check", *CHECKED]),
        ("mypy", [PY, "-m", "mypy", "appliance", "twisted/plugins", "tests", "bench"]),
        ("unit", [PY, "-m", "pytest", "-p", "no:twisted", "tests/unit"]),
        # Real headless Chromium against the real web service; owns the reactor.
        ("browser", [PY, "-m", "pytest", "-p", "no:twisted", "tests/browser"]),
        ("end-to-end", [PY, "-m", "pytest", "tests/e2e"]),
        ("package", [PY, "-m", "pytest", "tests/package"]),
    ]:
        if step(name, command) != 0:
            failed.append(name)
    print("\n=== failed: " + ", ".join(failed) if failed else "\n=== all steps passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
