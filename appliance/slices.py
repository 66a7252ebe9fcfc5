"""Long jobs on the reactor thread in slices: a `Cooperator` that works about
10 ms, then gives calls, AMI events and pages their turn."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Cooperator

SLICE_PAUSE = 0.002
"""Seconds the reactor gets between two slices of a long job."""


def reactor_cooperator(clock: Any) -> Cooperator:
    return Cooperator(scheduler=lambda run: clock.callLater(SLICE_PAUSE, run))
