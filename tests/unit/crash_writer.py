"""Child process of test_store_crash: writes to a SQLiteStore until it is killed.

Usage: crash_writer.py PATH START [STATEMENTS].  Write number ``i`` (from
START on) is a ``put`` of one key or, every third write, an ``apply`` of a
whole batch.  After each write returns, one acknowledgement line ``put I`` or
``apply I`` goes to stdout: the parent may rely on every acknowledged write
being durable.

A kill from the parent lands shortly after an acknowledgement, early in the
next write.  With STATEMENTS the writer instead kills itself right after that
many SQL statements, so that kills also land between the statements of one
transaction (where a non-atomic batch would show).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from appliance.store import SQLiteStore

BATCH_SIZE = 4
LIMIT = 1000  # writes per run; the parent kills long before


def is_batch(i: int) -> bool:
    return i % 3 == 2


def single_value(i: int) -> dict[str, Any]:
    """Sizes vary up to a few pages, so torn multi-page writes would show."""
    return {"i": i, "text": "Rückruf " + "x" * (i * 397 % 9000)}


def batch_changes(i: int) -> list[tuple[str, str, Any]]:
    """Keys that must appear together or not at all, plus a counter in another namespace."""
    changes: list[tuple[str, str, Any]] = [
        ("batch", f"{i:08d}-{j}", {"i": i, "j": j, "pad": "y" * (i * 131 % 5000)}) for j in range(BATCH_SIZE)
    ]
    changes.append(("meta", "last_batch", i))
    return changes


def kill_after(statements: int) -> None:
    """SIGKILL this process when the given number of SQLite statements has run."""
    remaining = statements

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal remaining
        if event == "c_return" and getattr(arg, "__name__", "") == "execute":
            remaining -= 1
            if remaining <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(profile)


def main(path: str, start: int) -> None:
    store = SQLiteStore(path)
    for i in range(start, start + LIMIT):
        if is_batch(i):
            store.apply(batch_changes(i))
            print(f"apply {i}", flush=True)
        else:
            store.put("single", f"{i:08d}", single_value(i))
            print(f"put {i}", flush=True)
    store.close()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        kill_after(int(sys.argv[3]))
    main(sys.argv[1], int(sys.argv[2]))
