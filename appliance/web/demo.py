"""Known web logins for the demo lab only: ``admin``/``admin``, and each demo user
with their extension as password.  Never used by the installed appliance.
"""

from __future__ import annotations

from pathlib import Path

from argon2 import PasswordHasher

from appliance import config as configuration
from appliance.directory import Directory, User
from appliance.store import IKeyValueStore, SQLiteStore
from appliance.web.auth import ADMIN, Credentials

DEMO_EXTENSIONS = [f"{hundred}{unit:02d}" for hundred in (1, 2, 3) for unit in range(10)]
"""The lab's phones: 100-109, 200-209, 300-309."""


def seed(store: IKeyValueStore, hasher: PasswordHasher | None = None) -> None:
    """Add what is missing; a name, language or password changed on the page stays."""
    directory = Directory(store)
    credentials = Credentials(store, hasher)
    if not credentials.has_password(ADMIN):
        credentials.set_password(ADMIN, "admin")
    for extension in DEMO_EXTENSIONS:
        if directory.user(extension) is None:
            language = "en" if extension.startswith("2") else "de"
            email = f"{extension}@demo.example"  # the demo's mailbox takes every address
            directory.put_user(User(extension, f"Demo {extension}", email, language=language))
        if not credentials.has_password(extension):
            credentials.set_password(extension, extension)


def seed_config(config_path: Path) -> None:
    config = configuration.load(config_path)
    config.store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SQLiteStore(config.store)
    try:
        seed(store)
    finally:
        store.close()
