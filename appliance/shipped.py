"""Where the files the package ships beside its code are: package data, found with
importlib.resources, so a wheel, a strict editable install and the .deb all find them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped_directory(package: str, name: str) -> Path:
    """The data directory ``name`` inside ``package``, as a directory on disk."""
    found = files(package) / name
    if not isinstance(found, Path) or not found.is_dir():
        raise FileNotFoundError(f"{package}: no shipped directory {name!r} (package data missing?)")
    return found


def web_root() -> Path:
    """The page's jinja2 ``templates/`` and ``static/`` files."""
    return shipped_directory("appliance", "web")


def xsl_directory() -> Path:
    """The shipped missed-call mail templates, ``missed_call.<lang>.xsl``."""
    return shipped_directory("appliance.missed", "xsl")
