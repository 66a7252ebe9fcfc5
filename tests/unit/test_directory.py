"""The user directory: validation and lookups, over the in-memory store."""

from __future__ import annotations

import pytest

from appliance.directory import Directory, DirectoryError, Group, User
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


def test_bad_group_refused() -> None:
    """A group with an unknown strategy is refused."""
    with pytest.raises(DirectoryError, match="strategy: 'random' is not one of ringall, hunt, cyclic"):
        Directory(MemoryStore()).put_group(Group("g", "600", (), "random"))
