"""SQLiteStore keeps every acknowledged write, and batches whole, when its process is killed."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

from appliance.store import SQLiteStore

HERE = Path(__file__).resolve().parent
WRITER = HERE / "crash_writer.py"
ROUNDS = 30
MAX_ACKS = 60
MAX_STATEMENTS = 400
ROUND_TIMEOUT = 30.0  # seconds; a hung child is killed and fails the round (a bound, not a speed check)


def load_writer() -> ModuleType:
    """The child's own value functions, so parent and child cannot disagree on what was written."""
    spec = importlib.util.spec_from_file_location("crash_writer", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = load_writer()


class Acknowledged:
    """What the children confirmed: those writes must survive."""

    def __init__(self) -> None:
        self.puts: set[int] = set()
        self.batches: set[int] = set()

    def record(self, line: str) -> None:
        kind, number = line.split()
        (self.batches if kind == "apply" else self.puts).add(int(number))


def run_and_kill(
    path: Path, start: int, acknowledged: Acknowledged, acks: int | None = None, statements: int | None = None
) -> None:
    """Start a writer; SIGKILL it after reading ``acks`` acknowledgements, or let it
    SIGKILL itself after ``statements`` SQL statements."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])
    )
    extra = [] if statements is None else [str(statements)]
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(start), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(ROUND_TIMEOUT, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        if acks is None:
            for line in child.stdout:
                acknowledged.record(line)
        else:
            for _ in range(acks):
                line = child.stdout.readline()
                assert line, f"writer ended early: {child.wait()} {child.communicate()[1]}"
                acknowledged.record(line)
            os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    finally:
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL


def check(path: Path, acknowledged: Acknowledged) -> None:
    """The file is intact, acknowledged writes are all there, and no batch is partial."""
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    store = SQLiteStore(path)
    try:
        singles = dict(store.items("single"))
        for i in acknowledged.puts:
            assert singles[f"{i:08d}"] == writer.single_value(i)
        for key, value in singles.items():
            assert value == writer.single_value(int(key))

        present: dict[int, dict[str, object]] = {}
        for key, value in store.items("batch"):
            present.setdefault(int(key.split("-")[0]), {})[key] = value
        assert acknowledged.batches <= present.keys()
        for i, entries in present.items():
            expected = {
                key: value for namespace, key, value in writer.batch_changes(i) if namespace == "batch"
            }
            assert entries == expected, f"batch {i} is partial or damaged"
        assert store.get("meta", "last_batch") == max(present, default=None)
    finally:
        store.close()


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Across many SIGKILLs at random points, every acknowledged put and batch survives intact."""
    rng = random.Random(20240607)
    path = tmp_path / "store.sqlite3"
    acknowledged = Acknowledged()
    for round_ in range(ROUNDS):
        start = round_ * writer.LIMIT
        if round_ % 2:
            run_and_kill(path, start, acknowledged, statements=rng.randint(1, MAX_STATEMENTS))
        else:
            run_and_kill(path, start, acknowledged, acks=rng.randint(0, MAX_ACKS))
        check(path, acknowledged)
    assert len(acknowledged.puts) + len(acknowledged.batches) > ROUNDS
