"""The user directory: who owns which line, their mail address, language and
groups.  Every feature resolves people through it.

Users live in store namespace ``users`` (key: the primary internal number),
groups in ``groups`` (key: the group name).  Records are validated before they
are stored, so a bad one is refused whole with a message naming the field.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.store import IKeyValueStore

USERS = "users"
GROUPS = "groups"

EXTENSION = re.compile(r"^[0-9]{2,8}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
EXTERNAL_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
LANGUAGES = ("de", "en")
STRATEGIES = ("ringall", "hunt", "cyclic")


class DirectoryError(ValueError):
    """A user or group record that cannot be stored, and why."""


@dataclass(frozen=True)
class User:
    extension: str
    """The primary internal number; also the PJSIP endpoint name."""
    name: str
    email: str = ""
    language: str = "de"
    groups: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    """Further numbers (e.g. external DIDs) that belong to this user's line."""

    def validated(self) -> User:
        if not EXTENSION.match(self.extension):
            raise DirectoryError(f"extension: {self.extension!r} is not 2 to 8 digits")
        name = _clean(self.name)
        if not name:
            raise DirectoryError(f"{self.extension}: name: must not be empty")
        if self.email and not EMAIL.match(self.email):
            raise DirectoryError(f"{self.extension}: email: {self.email!r} is not an e-mail address")
        if self.language not in LANGUAGES:
            raise DirectoryError(f"{self.extension}: language: {self.language!r} is not one of de, en")
        for group in self.groups:
            if not GROUP_NAME.match(group):
                raise DirectoryError(f"{self.extension}: groups: {group!r} is not a group name")
        for number in self.numbers:
            if not (EXTENSION.match(number) or EXTERNAL_NUMBER.match(number)):
                raise DirectoryError(f"{self.extension}: numbers: {number!r} is not a phone number")
        return User(self.extension, name, self.email, self.language, tuple(self.groups), tuple(self.numbers))


@dataclass(frozen=True)
class Group:
    name: str
    number: str
    """The internal number that rings the group."""
    members: tuple[str, ...] = field(default_factory=tuple)
    strategy: str = "ringall"

    def validated(self) -> Group:
        if not GROUP_NAME.match(self.name):
            raise DirectoryError(f"group name: {self.name!r} is not 1 to 32 letters, digits, - or _")
        if not EXTENSION.match(self.number):
            raise DirectoryError(f"group {self.name}: number: {self.number!r} is not 2 to 8 digits")
        for member in self.members:
            if not EXTENSION.match(member):
                raise DirectoryError(f"group {self.name}: members: {member!r} is not an extension")
        if self.strategy not in STRATEGIES:
            raise DirectoryError(
                f"group {self.name}: strategy: {self.strategy!r} is not one of " + ", ".join(STRATEGIES)
            )
        return Group(self.name, self.number, tuple(self.members), self.strategy)


def _clean(text: str) -> str:
    """Names come from admins and imports; control characters never belong in them."""
    return "".join(ch for ch in str(text) if ch.isprintable()).strip()


def _user(record: Any) -> User | None:
    try:
        return User(
            extension=record["extension"],
            name=record["name"],
            email=record.get("email", ""),
            language=record.get("language", "de"),
            groups=tuple(record.get("groups", ())),
            numbers=tuple(record.get("numbers", ())),
        )
    except (KeyError, TypeError, AttributeError):
        return None


def _group(record: Any) -> Group | None:
    try:
        return Group(
            record["name"],
            record["number"],
            tuple(record.get("members", ())),
            record.get("strategy", "ringall"),
        )
    except (KeyError, TypeError, AttributeError):
        return None


class Directory:
    """Users and groups over the store."""

    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store

    def user(self, extension: str) -> User | None:
        return _user(self.store.get(USERS, extension))

    def users(self) -> list[User]:
        return [user for _, record in self.store.items(USERS) if (user := _user(record))]

    def put_user(self, user: User) -> User:
        user = user.validated()
        self.store.put(USERS, user.extension, asdict(user))
        return user

    def delete_user(self, extension: str) -> None:
        self.store.delete(USERS, extension)

    def group(self, name: str) -> Group | None:
        return _group(self.store.get(GROUPS, name))

    def groups(self) -> list[Group]:
        return [group for _, record in self.store.items(GROUPS) if (group := _group(record))]

    def put_group(self, group: Group) -> Group:
        group = group.validated()
        self.store.put(GROUPS, group.name, asdict(group))
        return group

    def delete_group(self, name: str) -> None:
        self.store.delete(GROUPS, name)

    def group_by_number(self, number: str) -> Group | None:
        return next((g for g in self.groups() if g.number == number), None)

    def owner_of(self, number: str) -> User | None:
        """The user whose line ``number`` is (primary or further number)."""
        direct = self.user(number)
        if direct is not None:
            return direct
        return next((u for u in self.users() if number in u.numbers), None)

    def is_internal(self, number: str) -> bool:
        return self.owner_of(number) is not None or self.group_by_number(number) is not None

    def members_of(self, group: str) -> list[User]:
        """Users in a group: named in the group record or naming it themselves."""
        record = self.group(group)
        listed = set(record.members) if record else set()
        return [u for u in self.users() if u.extension in listed or group in u.groups]
