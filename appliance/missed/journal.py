"""The missed-call journal per user, in store namespace ``journal``.

One key per user (the primary extension) holding that user's entries, newest
first, at most `MAX_ENTRIES`.  The journal is independent of mail: a user
without e-mail, or who opted out, still has one.  Writes are returned as store
changes so the notifier commits the journal and the outbox in one transaction.

Also here: per-user mail opt-in (namespace ``mail_optin``, ``true``/``false``;
absent means opted in — a user who entered an e-mail address wants the mail
unless they say otherwise) and the last time a user's phone logged in
(namespace ``logins``), for the "repeated call until the user logs in again"
exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from appliance.missed.policy import Earlier
from appliance.store import IKeyValueStore

JOURNAL = "journal"
OPTIN = "mail_optin"
LOGINS = "logins"
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Entry:
    id: str
    """``<linkedid>``: unique per user."""
    time: float
    caller_num: str
    caller_name: str
    caller_key: str
    ring_seconds: float
    answered_by: str | None = None
    mailed: bool = False
    seen: bool = False


def _entry(record: Any) -> Entry | None:
    try:
        return Entry(**record)
    except TypeError:
        return None


class Journal:
    def __init__(self, store: IKeyValueStore) -> None:
        self.store = store

    def entries(self, user: str) -> list[Entry]:
        """Newest first."""
        records = self.store.get(JOURNAL, user, [])
        return [e for r in records if (e := _entry(r))] if isinstance(records, list) else []

    def history(self, users: Iterable[str]) -> dict[str, list[Earlier]]:
        return {u: [Earlier(e.time, e.caller_key) for e in self.entries(u)] for u in users}

    def additions(self, new: Mapping[str, Entry]) -> list[tuple[str, str, Any]]:
        """Store changes adding one entry per user (an entry id already there is kept)."""
        changes = []
        for user, entry in new.items():
            old = self.entries(user)
            if any(e.id == entry.id for e in old):
                continue
            merged = sorted([entry, *old], key=lambda e: e.time, reverse=True)[:MAX_ENTRIES]
            changes.append((JOURNAL, user, [asdict(e) for e in merged]))
        return changes

    def mark_seen(self, user: str, ids: Sequence[str] | None = None) -> int:
        """Mark the given entries (all when ``ids`` is None) seen; returns how many changed."""
        entries = self.entries(user)
        changed = 0
        updated = []
        for e in entries:
            if not e.seen and (ids is None or e.id in ids):
                e = Entry(**{**asdict(e), "seen": True})
                changed += 1
            updated.append(e)
        if changed:
            self.store.put(JOURNAL, user, [asdict(e) for e in updated])
        return changed

    def unseen(self, user: str) -> int:
        return sum(1 for e in self.entries(user) if not e.seen)

    # -- opt-in and logins --------------------------------------------------

    def opted_in(self, user: str) -> bool:
        return self.store.get(OPTIN, user, True) is not False

    def set_opt_in(self, user: str, wanted: bool) -> None:
        self.store.put(OPTIN, user, bool(wanted))

    def last_logins(self, users: Iterable[str]) -> dict[str, float]:
        found = {u: self.store.get(LOGINS, u) for u in users}
        return {u: float(t) for u, t in found.items() if isinstance(t, int | float)}

    def logged_in(self, user: str, when: float) -> None:
        self.store.put(LOGINS, user, when)
