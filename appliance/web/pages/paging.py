"""Admin lists of every user, a page at a time: at 10,000 users a click shows
100 rows and reads the store for those, not 10,000 of each."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.directory import Directory, User

PAGE_SIZE = 100


@dataclass(frozen=True)
class UserSlice:
    users: list[User]
    after: str
    """The extension this page starts after ("" on the first page)."""
    next_after: str
    """Where the next page starts; "" when this is the last."""


def user_slice(directory: Directory, after: str, size: int = PAGE_SIZE) -> UserSlice:
    users = directory.users_page(after, size + 1)
    more = len(users) > size
    users = users[:size]
    return UserSlice(users, after, users[-1].extension if more and users else "")
