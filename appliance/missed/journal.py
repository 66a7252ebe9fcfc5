"""The missed-call journal per user, in store namespace ``journal``.

One key per user (the primary extension) holding that user's entries, newest
first, at most ``JOURNAL_MAX_ENTRIES`` and none older than
``JOURNAL_RETENTION_DAYS``.  The journal is configured apart from mail (seed
001): a user without e-mail, or who opted out, still has one, and switching
the journal off changes no mail.  Writes are returned as store changes so the
notifier commits the journal and the outbox in one transaction.

The mail exceptions "repeated call on the same day / until logged in again"
do not read the journal (which may be off, short or pruned): namespace
``callers`` keeps, per user, the last time each caller's call was missed,
pruned to what those exceptions can still need.

Also here: per-user mail opt-in (namespace ``mail_optin``, ``true``/``false``;
absent means opted in — a user who entered an e-mail address wants the mail
unless they say otherwise) and the last time a user's phone logged in
(namespace ``logins``), for the "repeated call until the user logs in again"
exception: a web login, the phone registering again, or marking the journal
seen, whichever comes first.
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
CALLERS = "callers"
MAX_ENTRIES = 500
DAY = 86400.0
MAX_CALLERS = 2000
"""Callers remembered per user for the repeat exceptions (the most recent kept)."""


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
        """Per user, the last missed call of each caller (all the repeat exceptions need)."""
        found: dict[str, list[Earlier]] = {}
        for user in users:
            record = self.store.get(CALLERS, user, {})
            items = record.items() if isinstance(record, dict) else ()
            found[user] = [Earlier(float(t), key) for key, t in items if isinstance(t, int | float)]
        return found

    def additions(
        self,
        new: Mapping[str, Entry],
        *,
        now: float | None = None,
        keep_days: int | None = None,
        max_entries: int = MAX_ENTRIES,
    ) -> list[tuple[str, str, Any]]:
        """Store changes adding one entry per user (an entry id already there is kept),
        dropping entries beyond ``max_entries`` or older than ``keep_days``."""
        changes = []
        oldest = float("-inf") if now is None or keep_days is None else now - keep_days * DAY
        for user, entry in new.items():
            old = self.entries(user)
            if any(e.id == entry.id for e in old):
                continue
            merged = sorted([entry, *old], key=lambda e: e.time, reverse=True)
            kept = [e for e in merged if e.time >= oldest][:max_entries]
            changes.append((JOURNAL, user, [asdict(e) for e in kept]))
        return changes

    def caller_additions(
        self, users: Iterable[str], caller_key: str, when: float, now: float
    ) -> list[tuple[str, str, Any]]:
        """Store changes remembering that ``users`` missed a call from ``caller_key``;
        forgets callers no repeat exception can still match (before yesterday and
        before the user's last login)."""
        if not caller_key:
            return []
        users = list(users)
        logins = self.last_logins(users)
        changes = []
        for user in users:
            record = self.store.get(CALLERS, user, {})
            known = dict(record) if isinstance(record, dict) else {}
            known[caller_key] = max(when, float(known.get(caller_key, when)))
            horizon = min(now - 2 * DAY, logins.get(user, float("-inf")))
            recent = sorted(
                ((key, t) for key, t in known.items() if isinstance(t, int | float) and t >= horizon),
                key=lambda item: item[1],
                reverse=True,
            )[:MAX_CALLERS]
            changes.append((CALLERS, user, dict(recent)))
        return changes

    def prune(self, now: float, keep_days: int, max_entries: int) -> int:
        """Drop entries older than ``keep_days`` or beyond ``max_entries``; how many went."""
        oldest = now - keep_days * DAY
        changes: list[tuple[str, str, Any]] = []
        dropped = 0
        for user, _ in self.store.items(JOURNAL):
            entries = self.entries(user)
            kept = [e for e in entries if e.time >= oldest][:max_entries]
            if len(kept) != len(entries):
                dropped += len(entries) - len(kept)
                changes.append((JOURNAL, user, [asdict(e) for e in kept]))
        if changes:
            self.store.apply(changes)
        return dropped

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
