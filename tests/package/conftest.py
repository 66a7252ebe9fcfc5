"""Fixtures of the Debian package test (helpers live in ``debtools``)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the package test needs root (debootstrap, chroot, mount)")
