"""Admin lists of every user (and every group), a page at a time: at 10,000
users a click shows 100 rows and reads the store for those, not 10,000 of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from appliance.directory import Directory, Group, User

PAGE_SIZE = 100

T = TypeVar("T")


@dataclass(frozen=True)
class UserSlice:
    users: list[User]
    after: str
    """The extension this page starts after ("" on the first page)."""
    next_after: str
    """Where the next page starts; "" when this is the last."""


@dataclass(frozen=True)
class GroupSlice:
    groups: list[Group]
    after: str
    """The group name this page starts after ("" on the first page)."""
    next_after: str
    """Where the next page starts; "" when this is the last."""


def _cut(rows: list[T], size: int, key: Callable[[T], str]) -> tuple[list[T], str]:
    """``rows`` fetched one beyond ``size``: the page, and where the next one starts."""
    more = len(rows) > size
    rows = rows[:size]
    return rows, key(rows[-1]) if more and rows else ""


def user_slice(directory: Directory, after: str, size: int = PAGE_SIZE) -> UserSlice:
    users, next_after = _cut(directory.users_page(after, size + 1), size, lambda user: user.extension)
    return UserSlice(users, after, next_after)


def group_slice(directory: Directory, after: str, size: int = PAGE_SIZE) -> GroupSlice:
    groups, next_after = _cut(directory.groups_page(after, size + 1), size, lambda group: group.name)
    return GroupSlice(groups, after, next_after)
