"""The user directory: who owns which line, their mail address, language and
groups.  Every feature resolves people through it.

Users live in store namespace ``users`` (key: the primary internal number),
groups in ``groups`` (key: the group name).  Records are validated before they
are stored, so a bad one is refused whole with a message naming the field.

Calls ask the directory several times each, so it answers from memory: every
record and the indexes (line owner by number and device, group by number,
members by group) are read once at start and then kept current by the store's
change notification, so no call, AMI event or page walks a whole namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator

from appliance.numbers import EXTENSION, EXTERNAL_NUMBER
from appliance.observers import Observers
from appliance.settingkinds import Text
from appliance.store import DELETE, Change, IKeyValueStore, StoreChange

USERS = "users"
GROUPS = "groups"

GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
LANGUAGES = ("de", "en")
USER_BATCH = 200
"""Users per transaction in large writes: ~20 ms each."""
STRATEGIES = ("ringall", "hunt", "cyclic")
GROUP_RING_SECONDS = 20
GROUP_RING_MIN, GROUP_RING_MAX = 5, 300
OVERFLOW_BUSY = "busy"


class DirectoryError(ValueError):
    """A user or group record that cannot be stored, and why."""


@dataclass(frozen=True)
class NumberClash:
    """A number a write would give to a user and a group, or to two groups: a call to it
    could reach only one of them, so it is refused."""

    who: str
    """The user's extension or the group's name being written."""
    field: str
    """The form field it is in: ``extension``, ``numbers``, ``devices`` (a user) or ``number``."""
    text: Text
    """Why, in both languages, for the page beside that field."""


class NumberClashError(DirectoryError):
    """`NumberClash` as the error a write raises."""

    def __init__(self, clash: NumberClash) -> None:
        super().__init__(f"{clash.who}: {clash.text.en}")
        self.clash = clash


USER_NUMBER_LABELS = {
    "extension": Text("Extension", "Rufnummer"),
    "numbers": Text("Further numbers", "Weitere Rufnummern"),
    "devices": Text("Further devices", "Weitere Geräte"),
}
"""A user's fields that hold numbers a call may reach, with their labels on the page."""


@dataclass(frozen=True)
class User:
    extension: str
    """The primary internal number; also the PJSIP endpoint name."""
    name: str
    email: str = ""
    language: str = ""
    """Chosen by the user or admin; "" = none chosen, the appliance's settings decide."""
    groups: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    """Further numbers (e.g. external DIDs) that belong to this user's line."""
    devices: tuple[str, ...] = ()
    """Further PJSIP endpoints of this user (desk phone, softphone)."""
    from_pbx: bool = False
    """Created from an Asterisk endpoint rather than by the admin."""
    vanished: bool = False
    """Created from an endpoint that Asterisk no longer has (kept, flagged)."""

    def validated(self) -> User:
        if not EXTENSION.match(self.extension):
            raise DirectoryError(f"extension: {self.extension!r} is not 2 to 8 digits")
        name = _clean(self.name)
        if not name:
            raise DirectoryError(f"{self.extension}: name: must not be empty")
        if self.email and not EMAIL.match(self.email):
            raise DirectoryError(f"{self.extension}: email: {self.email!r} is not an e-mail address")
        if self.language and self.language not in LANGUAGES:
            raise DirectoryError(f"{self.extension}: language: {self.language!r} is not one of de, en")
        for group in self.groups:
            if not GROUP_NAME.match(group):
                raise DirectoryError(f"{self.extension}: groups: {group!r} is not a group name")
        for number in self.numbers:
            if not (EXTENSION.match(number) or EXTERNAL_NUMBER.match(number)):
                raise DirectoryError(f"{self.extension}: numbers: {number!r} is not a phone number")
        for device in self.devices:
            if not DEVICE.match(device):
                raise DirectoryError(f"{self.extension}: devices: {device!r} is not a PJSIP endpoint name")
        return replace(
            self,
            name=name,
            groups=tuple(self.groups),
            numbers=tuple(self.numbers),
            devices=tuple(self.devices),
        )


@dataclass(frozen=True)
class Group:
    name: str
    """Also what members see of a group call ("Vertrieb: <caller>")."""
    number: str
    """The internal number that rings the group."""
    members: tuple[str, ...] = field(default_factory=tuple)
    """Extensions in ring order (hunt rings them in this order)."""
    strategy: str = "ringall"
    ring_seconds: int = GROUP_RING_SECONDS
    """Ring time per member (hunt, cyclic), or of the whole group (ringall)."""
    overflow: str = ""
    """Where a call goes that nobody took: "" nowhere (unanswered), "busy", or a
    number (a user, another group's number, an external number)."""

    def validated(self) -> Group:
        if not GROUP_NAME.match(self.name):
            raise DirectoryError(f"group name: {self.name!r} is not 1 to 32 letters, digits, - or _")
        if not EXTENSION.match(self.number):
            raise DirectoryError(f"group {self.name}: number: {self.number!r} is not 2 to 8 digits")
        for member in self.members:
            if not EXTENSION.match(member):
                raise DirectoryError(f"group {self.name}: members: {member!r} is not an extension")
        if len(set(self.members)) != len(self.members):
            raise DirectoryError(f"group {self.name}: members: a member is listed twice")
        if self.number in self.members:
            raise DirectoryError(f"group {self.name}: members: the group's own number cannot be a member")
        if self.strategy not in STRATEGIES:
            raise DirectoryError(
                f"group {self.name}: strategy: {self.strategy!r} is not one of " + ", ".join(STRATEGIES)
            )
        if (
            not isinstance(self.ring_seconds, int)
            or isinstance(self.ring_seconds, bool)
            or not GROUP_RING_MIN <= self.ring_seconds <= GROUP_RING_MAX
        ):
            raise DirectoryError(
                f"group {self.name}: ring time: {self.ring_seconds!r} is not "
                f"{GROUP_RING_MIN} to {GROUP_RING_MAX} seconds"
            )
        overflow = self.overflow.strip()
        if overflow and overflow != OVERFLOW_BUSY:
            if not (EXTENSION.match(overflow) or EXTERNAL_NUMBER.match(overflow)):
                raise DirectoryError(
                    f'group {self.name}: overflow: {overflow!r} is not a number or "{OVERFLOW_BUSY}"'
                )
            if overflow == self.number:
                raise DirectoryError(f"group {self.name}: overflow: the group cannot overflow to itself")
        return Group(self.name, self.number, tuple(self.members), self.strategy, self.ring_seconds, overflow)


def _clean(text: str) -> str:
    """Names come from admins and imports; control characters never belong in them."""
    return "".join(ch for ch in str(text) if ch.isprintable()).strip()


def _user(record: Any) -> User | None:
    try:
        return User(
            extension=record["extension"],
            name=record["name"],
            email=record.get("email", ""),
            language=record.get("language", ""),
            groups=tuple(record.get("groups", ())),
            numbers=tuple(record.get("numbers", ())),
            devices=tuple(record.get("devices", ())),
            from_pbx=bool(record.get("from_pbx", False)),
            vanished=bool(record.get("vanished", False)),
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
            record.get("ring_seconds", GROUP_RING_SECONDS),
            record.get("overflow", ""),
        )
    except (KeyError, TypeError, AttributeError):
        return None


class Directory:
    """Users and groups over the store, answered from memory."""

    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store
        self._users: dict[str, User] = {}
        self._groups: dict[str, Group] = {}
        self._claims: dict[str, set[str]] = {}
        """Number or device -> extensions of the users claiming it."""
        self._group_numbers: dict[str, set[str]] = {}
        self._members: dict[str, set[str]] = {}
        """Group name -> extensions (listed in the group or naming it)."""
        self._member_of: dict[str, set[str]] = {}
        """Extension -> group names: the reverse of ``_members``."""
        self._listeners: Observers[[]] = Observers("directory")
        self._unsubscribe = store.subscribe(self._changed)
        for key, record in store.items(USERS):
            if (user := _user(record)) is not None and user.extension == key:
                self._add_user(user)
        for key, record in store.items(GROUPS):
            if (group := _group(record)) is not None and group.name == key:
                self._add_group(group)

    # -- the indexes ----------------------------------------------------------

    def _changed(self, change: Change) -> None:
        if change.namespace == USERS:
            if (old := self._users.get(change.key)) is not None:
                self._remove_user(old)
            if change.new is not DELETE and (user := _user(change.new)) and user.extension == change.key:
                self._add_user(user)
        elif change.namespace == GROUPS:
            if (group := self._groups.get(change.key)) is not None:
                self._remove_group(group)
            if change.new is not DELETE and (new := _group(change.new)) and new.name == change.key:
                self._add_group(new)
        else:
            return
        self._listeners.notify()

    def on_change(self, listener: Callable[[], object]) -> None:
        """``listener()`` after every change of a user or group (caches that depend on them)."""
        self._listeners.subscribe(listener)

    def _add_user(self, user: User) -> None:
        self._users[user.extension] = user
        for number in {user.extension, *user.numbers, *user.devices}:
            self._claims.setdefault(number, set()).add(user.extension)
        for group in user.groups:
            self._link(group, user.extension)

    def _remove_user(self, user: User) -> None:
        del self._users[user.extension]
        for number in {user.extension, *user.numbers, *user.devices}:
            _discard(self._claims, number, user.extension)
        for group in user.groups:
            listed = self._groups.get(group)
            if listed is None or user.extension not in listed.members:
                self._unlink(group, user.extension)

    def _add_group(self, group: Group) -> None:
        self._groups[group.name] = group
        self._group_numbers.setdefault(group.number, set()).add(group.name)
        for member in group.members:
            self._link(group.name, member)

    def _remove_group(self, group: Group) -> None:
        del self._groups[group.name]
        _discard(self._group_numbers, group.number, group.name)
        for member in group.members:
            user = self._users.get(member)
            if user is None or group.name not in user.groups:
                self._unlink(group.name, member)

    def _link(self, group: str, extension: str) -> None:
        self._members.setdefault(group, set()).add(extension)
        self._member_of.setdefault(extension, set()).add(group)

    def _unlink(self, group: str, extension: str) -> None:
        _discard(self._members, group, extension)
        _discard(self._member_of, extension, group)

    # -- users ------------------------------------------------------------------

    def user(self, extension: str) -> User | None:
        return self._users.get(extension)

    def users(self) -> list[User]:
        """All users by extension (for pages that list them; not for calls)."""
        return [self._users[key] for key in sorted(self._users)]

    def users_page(self, after: str = "", limit: int = 100) -> list[User]:
        """Up to ``limit`` users whose extension sorts after ``after`` (for the users page)."""
        return [self._users[key] for key in sorted(key for key in self._users if key > after)[:limit]]

    def __len__(self) -> int:
        return len(self._users)

    def put_user(self, user: User) -> User:
        user = user.validated()
        self._check_users([user])
        self.store.put(USERS, user.extension, asdict(user))
        return user

    def put_users(self, users: list[User]) -> list[User]:
        """Store many users in one transaction: all of them, or (on a bad one) none."""
        checked = [user.validated() for user in users]
        self._check_users(checked)
        self._write(checked)
        return checked

    def _write(self, users: list[User]) -> None:
        self.store.apply([(USERS, user.extension, asdict(user)) for user in users])

    def device_problem(self, users: list[User]) -> tuple[str, str] | None:
        """(extension, why) if storing ``users`` would give an endpoint two owners: a
        device that is another user's extension or another user's device.  One phone,
        one person: calls, presence, journal and callbacks rely on it."""
        batch = {user.extension: user for user in users}

        def owners(endpoint: str) -> set[str]:
            """Users (after the write) naming ``endpoint`` as one of their devices."""
            stored = {
                e
                for e in self._claims.get(endpoint, ())
                if e not in batch and endpoint in self._users[e].devices
            }
            return stored | {u.extension for u in users if endpoint in u.devices and endpoint != u.extension}

        for user in users:
            stored = self._users.get(user.extension)
            # Only what this write adds is checked: a conflict stored before the check
            # existed must not block saving something else of that user.
            for device in user.devices:
                if device == user.extension or (stored is not None and device in stored.devices):
                    continue
                if device in batch or device in self._users:
                    return user.extension, (
                        f"{user.extension}: devices: {device!r} is the extension of user {device} "
                        "(delete that user first, or name another endpoint)"
                    )
                others = sorted(owners(device) - {user.extension})
                if others:
                    return (
                        user.extension,
                        f"{user.extension}: devices: {device!r} is a device of user {others[0]}",
                    )
            named_by = sorted(owners(user.extension) - {user.extension}) if stored is None else []
            if named_by:
                return user.extension, f"{user.extension}: extension: it is a device of user {named_by[0]}"
        return None

    def _check_users(self, users: list[User]) -> None:
        problem = self.device_problem(users)
        if problem is not None:
            raise DirectoryError(problem[1])
        clash = self.user_number_clash(users)
        if clash is not None:
            raise NumberClashError(clash)

    # -- one number, one destination -------------------------------------------

    def user_number_clash(self, users: Iterable[User]) -> NumberClash | None:
        """The first number that storing ``users`` would give a user although it is a
        group's number (`user_number_clashes`)."""
        return next(self.user_number_clashes(users), None)

    def user_number_clashes(self, users: Iterable[User]) -> Iterator[NumberClash]:
        """Each field of ``users`` that would give a user a group's number, first
        number of the field only.  Only what the write adds is checked, as for devices:
        a clash stored before the rule existed must not block saving something else."""
        for user in users:
            stored = self._users.get(user.extension)
            had = set() if stored is None else {stored.extension, *stored.numbers, *stored.devices}
            fields = {"extension": (user.extension,), "numbers": user.numbers, "devices": user.devices}
            for name, values in fields.items():
                label = USER_NUMBER_LABELS[name]
                clashing = ((n, g) for n in values if n not in had and (g := self.group_by_number(n)))
                first = next(clashing, None)
                if first is not None:
                    number, group = first
                    yield NumberClash(
                        user.extension,
                        name,
                        Text(
                            f"{label.en}: {number} is the number of group {group.name}.",
                            f"{label.de}: {number} ist die Rufnummer der Gruppe {group.name}.",
                        ),
                    )

    def group_number_clash(self, group: Group) -> NumberClash | None:
        """Why ``group`` may not have its number: a user's extension, further number or
        device, or another group's number.  A group keeping its stored number passes."""
        stored = self._groups.get(group.name)
        if stored is not None and stored.number == group.number:
            return None
        number = group.number
        owner = self.owner_of(number)
        if owner is not None:
            return NumberClash(
                group.name,
                "number",
                Text(
                    f"Number: {number} is a number of user {owner.extension} ({owner.name}).",
                    f"Rufnummer: {number} ist eine Rufnummer von Benutzer {owner.extension} ({owner.name}).",
                ),
            )
        other = self.group_by_number(number)
        if other is not None and other.name != group.name:
            return NumberClash(
                group.name,
                "number",
                Text(
                    f"Number: {number} is the number of group {other.name} already.",
                    f"Rufnummer: {number} ist schon die Rufnummer der Gruppe {other.name}.",
                ),
            )
        return None

    def put_users_in_slices(self, users: list[User], cooperator: Cooperator) -> Deferred[list[User]]:
        """`put_users` for thousands: every user is checked first (a bad one stores
        none), then they are written `USER_BATCH` to a transaction, the reactor running
        in between."""
        checked = [user.validated() for user in users]
        self._check_users(checked)

        def steps() -> Iterator[None]:
            for start in range(0, len(checked), USER_BATCH):
                self._write(checked[start : start + USER_BATCH])
                yield None

        return cooperator.coiterate(steps()).addCallback(lambda _: checked)

    def delete_user(self, extension: str) -> None:
        self.store.delete(USERS, extension)

    def owner_of(self, number: str) -> User | None:
        """The user whose line ``number`` is: primary or further number, or device."""
        direct = self._users.get(number)
        if direct is not None:
            return direct
        claims = self._claims.get(number)
        return self._users[min(claims)] if claims else None

    def is_internal(self, number: str) -> bool:
        return self.owner_of(number) is not None or self.group_by_number(number) is not None

    # -- groups -----------------------------------------------------------------

    def group(self, name: str) -> Group | None:
        return self._groups.get(name)

    def groups(self) -> list[Group]:
        return [self._groups[key] for key in sorted(self._groups)]

    def groups_page(self, after: str = "", limit: int = 100) -> list[Group]:
        """Up to ``limit`` groups whose name sorts after ``after`` (for the groups page)."""
        return [self._groups[key] for key in sorted(key for key in self._groups if key > after)[:limit]]

    def put_group(self, group: Group, also: Iterable[StoreChange] = ()) -> Group:
        """Store ``group``, and ``also`` (e.g. its forwards following a new number) in
        the same transaction: all of it, or nothing."""
        group = group.validated()
        clash = self.group_number_clash(group)
        if clash is not None:
            raise NumberClashError(clash)
        self.store.apply([(GROUPS, group.name, asdict(group)), *also])
        return group

    def delete_group(self, name: str, also: Iterable[StoreChange] = ()) -> None:
        """Remove the group, and ``also`` (its forwards) in the same transaction."""
        self.store.apply([(GROUPS, name, DELETE), *also])

    def group_numbers(self) -> AbstractSet[str]:
        """Every group's number, as a live view (membership without a walk)."""
        return self._group_numbers.keys()

    def group_by_number(self, number: str) -> Group | None:
        names = self._group_numbers.get(number)
        return self._groups[min(names)] if names else None

    def members_of(self, group: str) -> list[User]:
        """Users in a group: named in the group record or naming it themselves."""
        return [self._users[e] for e in sorted(self._members.get(group, ())) if e in self._users]

    def groups_of(self, extension: str) -> frozenset[str]:
        """The groups a user is in, by either side of the membership."""
        return frozenset(self._member_of.get(extension, ()))


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
