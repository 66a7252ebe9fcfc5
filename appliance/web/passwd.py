"""Set a web password: ``python -m appliance.web.passwd [--config config.ini] LOGIN``.

How an admin gets in on a fresh install: run this on the appliance as root
with ``admin`` as the login.  LOGIN is ``admin`` or a user's extension (the
user must be in the directory).  The password is asked twice on a terminal,
or read as the first line of standard input, so scripts can pipe it in.  The
appliance may keep running; its sessions for LOGIN end.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from twisted.internet.task import Clock

from appliance import config as configuration
from appliance.directory import Directory
from appliance.store import SQLiteStore, StoreError
from appliance.web.auth import ADMIN, Credentials, PasswordProblem, Sessions, check_new_password


def read_password(stdin: TextIO) -> str:
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise PasswordProblem("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


def set_password(store: SQLiteStore, login: str, password: str) -> None:
    """Check and store ``password`` for ``login``, ending their sessions."""
    if login != ADMIN and Directory(store).user(login) is None:
        raise PasswordProblem(f"{login!r} is neither {ADMIN!r} nor the extension of a user in the directory")
    Credentials(store).set_password(login, check_new_password(password))
    Sessions(store, Clock()).end_all(login)


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.web.passwd", description="Set a web password.")
    parser.add_argument("--config", "-c", default="/etc/appliance/config.ini", help="config.ini")
    parser.add_argument("login", help="admin, or a user's extension")
    options = parser.parse_args(argv)
    try:
        config = configuration.load(options.config)
        store = SQLiteStore(config.store)
    except (configuration.ConfigError, StoreError) as error:
        print(f"passwd: {error}", file=sys.stderr)
        return 1
    try:
        set_password(store, options.login, read_password(stdin))
    except PasswordProblem as problem:
        print(f"passwd: {options.login}: {problem}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"passwd: password of {options.login} set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
