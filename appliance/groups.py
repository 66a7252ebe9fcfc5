"""Group strategies: in which order a group call rings its members, and the
cyclic group's cursor.

- ``ringall``: every member at once, for the group's ring time;
- ``hunt``: one member after another in the group's order, each its ring time;
- ``cyclic``: as hunt, but starting after the member who was rung first on
  the group's previous call (round robin), so calls spread over the members.

The cursor ("who was rung first last time") lives in store namespace
``group_cursor``, keyed by the group's number, so it survives restarts.
`ring_order` is pure; `GroupCursors` is the store side.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.store import IKeyValueStore

NAMESPACE = "group_cursor"

RINGALL = "ringall"
HUNT = "hunt"
CYCLIC = "cyclic"


def ring_order(members: Sequence[str], strategy: str, last_first: str | None = None) -> tuple[str, ...]:
    """The members in the order the strategy rings them (all at once for ringall)."""
    order = tuple(members)
    if strategy == CYCLIC and last_first in order:
        start = order.index(last_first) + 1
        order = order[start:] + order[:start]
    return order


class GroupCursors:
    """The cyclic groups' cursors in the store."""

    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store

    def last_first(self, group_number: str) -> str | None:
        """The member rung first on the group's previous call, if known."""
        value = self.store.get(NAMESPACE, group_number)
        return value if isinstance(value, str) else None

    def rung_first(self, group_number: str, member: str) -> None:
        self.store.put(NAMESPACE, group_number, member)
