"""The user directory: validation and lookups, over the in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.directory import Directory, DirectoryError, Group, User
from appliance.store import DELETE, InvalidName
from appliance.testing import MemoryStore


@pytest.fixture
def directory() -> Directory:
    d = Directory(MemoryStore())
    d.put_user(User("200", "Anna Berg", "anna@example.com", "de", ("sales",), ("+49301234200",)))
    d.put_user(User("201", "Ben Cole", "", "en"))
    d.put_group(Group("sales", "600", ("201",), "hunt"))
    return d


def test_lookups(directory: Directory) -> None:
    """Owner by primary or further number; group by number; members from both sides."""
    assert directory.owner_of("200").name == "Anna Berg"
    assert directory.owner_of("+49301234200").extension == "200"
    assert directory.owner_of("999") is None
    assert directory.group_by_number("600").strategy == "hunt"
    assert {u.extension for u in directory.members_of("sales")} == {"200", "201"}
    assert directory.is_internal("600") and directory.is_internal("201")
    assert not directory.is_internal("+4930999")


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (User("2", "X"), "extension: '2' is not 2 to 8 digits"),
        (User("200", "  "), "200: name: must not be empty"),
        (User("200", "X", email="nope"), "200: email: 'nope' is not an e-mail address"),
        (User("200", "X", language="fr"), "200: language: 'fr' is not one of de, en"),
        (User("200", "X", groups=("a b",)), "200: groups: 'a b' is not a group name"),
        (User("200", "X", numbers=("12ab",)), "200: numbers: '12ab' is not a phone number"),
    ],
)
def test_bad_user_refused_whole(user: User, message: str) -> None:
    """A bad field refuses the whole record with a message naming it; nothing is stored."""
    directory = Directory(MemoryStore())
    with pytest.raises(DirectoryError, match=message):
        directory.put_user(user)
    assert directory.users() == []


def test_control_characters_stripped_from_names() -> None:
    """CR/LF and other control characters never make it into a stored name."""
    directory = Directory(MemoryStore())
    stored = directory.put_user(User("200", "Eve\r\nBcc: x@y\t"))
    assert stored.name == "EveBcc: x@y"


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (Group("g", "600", (), "random"), "strategy: 'random' is not one of ringall, hunt, cyclic"),
        (Group("g", "600", ("201", "201")), "members: a member is listed twice"),
        (Group("g", "600", ("600",)), "the group's own number cannot be a member"),
        (Group("g", "600", ring_seconds=2), "ring time: 2 is not 5 to 300 seconds"),
        (Group("g", "600", ring_seconds=True), "ring time: True is not 5 to 300 seconds"),
        (Group("g", "600", overflow="voicemail"), "overflow: 'voicemail' is not a number or \"busy\""),
        (Group("g", "600", overflow="600"), "the group cannot overflow to itself"),
    ],
)
def test_bad_group_refused(group: Group, message: str) -> None:
    """A bad group field refuses the whole group with a message naming it."""
    directory = Directory(MemoryStore())
    with pytest.raises(DirectoryError, match=message):
        directory.put_group(group)
    assert directory.groups() == []


def test_group_ring_time_and_overflow_kept() -> None:
    """Ring time and overflow survive the store; old records get the defaults."""
    store = MemoryStore()
    Directory(store).put_group(Group("g", "600", ("201", "200"), "hunt", 15, " +4930123 "))
    store.put("groups", "old", {"name": "old", "number": "601", "members": ["200"]})
    reread = Directory(store)
    assert reread.group("g") == Group("g", "600", ("201", "200"), "hunt", 15, "+4930123")
    assert reread.group("old") == Group("old", "601", ("200",), "ringall", 20, "")


def test_a_group_and_its_other_records_are_stored_together_or_not_at_all() -> None:
    """``also`` rides in the group's transaction: a bad one stores neither, a good one both."""
    store = MemoryStore()
    directory = Directory(store)
    with pytest.raises(InvalidName):
        directory.put_group(Group("g", "600"), also=[("forwards", "", [])])
    assert directory.groups() == []
    directory.put_group(Group("g", "600"), also=[("forwards", "600", [{"kind": "busy", "target": "300"}])])
    assert directory.group("g") == Group("g", "600") and store.get("forwards", "600") is not None
    with pytest.raises(InvalidName):
        directory.delete_group("g", also=[("forwards", "", DELETE)])
    assert directory.group("g") is not None
    directory.delete_group("g", also=[("forwards", "600", DELETE)])
    assert directory.groups() == [] and store.get("forwards", "600") is None


def test_indexes_follow_every_change() -> None:
    """Owner, device, group-number and membership answers follow puts, edits and deletes."""
    store = MemoryStore()
    directory = Directory(store)
    directory.put_user(User("300", "Cara", numbers=("+4930300",), devices=("300-soft",), groups=("ops",)))
    directory.put_group(Group("desk", "700", ("300",)))
    assert directory.owner_of("300-soft").extension == "300"
    assert directory.groups_of("300") == {"ops", "desk"}
    directory.put_user(User("300", "Cara", numbers=("+4930301",), devices=("300-desk",)))
    assert directory.owner_of("+4930300") is None and directory.owner_of("300-soft") is None
    assert directory.owner_of("+4930301").name == "Cara" and directory.owner_of("300-desk").name == "Cara"
    assert directory.groups_of("300") == {"desk"} and directory.members_of("ops") == []
    directory.put_group(Group("desk", "701", ()))
    assert directory.group_by_number("700") is None and directory.group_by_number("701").name == "desk"
    assert directory.members_of("desk") == []
    directory.delete_group("desk")
    directory.delete_user("300")
    assert directory.group_by_number("701") is None and directory.owner_of("300-desk") is None
    assert directory.users() == [] and directory.groups_of("300") == frozenset()


def test_index_rebuilt_from_store_at_start() -> None:
    """A new Directory over a filled store answers like the one that wrote it, and hears
    of writes made through another Directory on the same store."""
    store = MemoryStore()
    writer = Directory(store)
    writer.put_user(User("400", "Dan", devices=("400-b",), groups=("ops",)))
    reader = Directory(store)
    assert reader.owner_of("400-b").name == "Dan" and [u.extension for u in reader.members_of("ops")] == [
        "400"
    ]
    writer.put_group(Group("ops", "800"))
    assert reader.group_by_number("800").name == "ops"


def test_two_users_claiming_one_number() -> None:
    """A shared number belongs to the lower extension; deleting it passes it on."""
    directory = Directory(MemoryStore())
    directory.put_users([User("501", "B", numbers=("+49301",)), User("500", "A", numbers=("+49301",))])
    assert directory.owner_of("+49301").extension == "500"
    directory.delete_user("500")
    assert directory.owner_of("+49301").extension == "501"


def test_bad_device_refused() -> None:
    """Devices are PJSIP endpoint names; anything else is refused with its field named."""
    with pytest.raises(DirectoryError, match="200: devices: 'a b' is not a PJSIP endpoint name"):
        Directory(MemoryStore()).put_user(User("200", "X", devices=("a b",)))


def test_put_users_is_all_or_nothing() -> None:
    """One bad user in a batch stores none of them."""
    directory = Directory(MemoryStore())
    with pytest.raises(DirectoryError):
        directory.put_users([User("200", "Good"), User("2", "Bad")])
    assert directory.users() == []


def test_put_users_in_slices() -> None:
    """Thousands of users are written 200 to a transaction, the clock turning in between;
    a bad one among them stores none."""
    from twisted.internet.task import Clock

    from appliance.slices import SLICE_PAUSE, reactor_cooperator

    store = MemoryStore()
    directory = Directory(store)
    transactions: list[int] = []
    original = store.apply

    def counted(changes: Any) -> Any:
        transactions.append(len(list(changes)))
        return original(changes)

    store.apply = counted  # type: ignore[method-assign]
    clock = Clock()
    users = [User(str(1000 + i), f"U {i}") for i in range(450)]
    done = directory.put_users_in_slices(users, reactor_cooperator(clock))
    while not done.called:
        clock.advance(SLICE_PAUSE)
    assert len(directory) == 450 and len(transactions) == 3
    with pytest.raises(DirectoryError):
        directory.put_users_in_slices([User("3000", "ok"), User("3", "bad")], reactor_cooperator(clock))
    assert directory.user("3000") is None
