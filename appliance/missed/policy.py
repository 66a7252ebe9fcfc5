"""Who gets a journal entry and who gets a mail for one finished call (SPEC §2, seed 001).

A pure function over facts: the finished call reduced to users
(`MissedCall`), the settings (`Rules`), and what the store knows (journal
history, last logins, who subscribed).  No I/O, no clock.

Decisions, in this order:

1. Participants are *users* whose phone rang (a user whose phones rang several
   times in one call — parallel ringing, group, hunt, forwarding — is one
   participant, first ring counting for the order, the time any of their phones
   rang as ring time).  Those
   who did not answer themselves get a journal entry, whatever the mail
   settings: the journal exists for users without e-mail, too.
2. Mail: nobody if a third party answered (pickup, another group member) unless
   ``MC_MAIL_IF_PICKED_UP``; nobody if a call-level exception applies (internal
   caller, suppressed number, no contact, number on the exclusion list).
3. ``MC_RECIPIENTS`` picks none / the first / the last / all of the
   non-answering participants, in order of ringing; then each picked one is
   dropped for the per-user exceptions (rang under 2 s, repeated call on the
   same day, repeated call since the last login) and unless they subscribed
   (an e-mail address and opted in).  Picking comes first: with ``first``, if
   the first participant opted out nobody else gets the mail instead.

One user never gets two mails for one call, because participants are users.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SHORT_RING_SECONDS = 2.0


@dataclass(frozen=True)
class Participant:
    user: str
    """The user's primary extension."""
    first_ring: float
    ring_seconds: float
    answered: bool = False


@dataclass(frozen=True)
class MissedCall:
    """The facts of one finished call the policy needs."""

    linkedid: str
    time: float
    caller_key: str
    """The caller's number in canonical form ("" when suppressed)."""
    internal: bool
    suppressed: bool
    resolved: bool
    """A contact (or internal user) was found for the caller."""
    participants: tuple[Participant, ...]
    answered_by: str | None = None
    """Endpoint or user who took the call, if anyone did."""


@dataclass(frozen=True)
class Rules:
    recipients: str = "all"
    mail_if_picked_up: bool = False
    exclude_internal: bool = False
    exclude_suppressed: bool = False
    exclude_unresolved: bool = False
    exclude_repeat_same_day: bool = False
    exclude_repeat_until_login: bool = False
    exclude_short_ring: bool = False
    exclude_numbers: frozenset[str] = frozenset()
    """Canonical numbers."""

    @classmethod
    def from_settings(cls, get: Callable[[str], object], normalize: Callable[[str], str]) -> Rules:
        numbers = get("MC_EXCLUDE_NUMBERS")
        return cls(
            recipients=str(get("MC_RECIPIENTS")),
            mail_if_picked_up=bool(get("MC_MAIL_IF_PICKED_UP")),
            exclude_internal=bool(get("MC_EXCLUDE_INTERNAL")),
            exclude_suppressed=bool(get("MC_EXCLUDE_SUPPRESSED")),
            exclude_unresolved=bool(get("MC_EXCLUDE_UNRESOLVED")),
            exclude_repeat_same_day=bool(get("MC_EXCLUDE_REPEAT_SAME_DAY")),
            exclude_repeat_until_login=bool(get("MC_EXCLUDE_REPEAT_UNTIL_LOGIN")),
            exclude_short_ring=bool(get("MC_EXCLUDE_SHORT_RING")),
            exclude_numbers=frozenset(normalize(n) for n in numbers or ()),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class Earlier:
    """One earlier journal entry of a user, as far as the policy cares."""

    time: float
    caller_key: str


@dataclass(frozen=True)
class Decision:
    journal: tuple[str, ...]
    """Users who missed the call, in order of ringing."""
    mail: tuple[str, ...]
    """Users who get a mail."""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """Why a missed participant gets no mail."""


def _local_day(when: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(when).date()


def decide(
    call: MissedCall,
    rules: Rules,
    *,
    history: Mapping[str, Sequence[Earlier]] | None = None,
    last_login: Mapping[str, float] | None = None,
    subscribers: Iterable[str] = (),
    day: Callable[[float], datetime.date] = _local_day,
) -> Decision:
    history = history or {}
    last_login = last_login or {}
    subscribed = set(subscribers)
    missed = [p for p in call.participants if not p.answered]
    journal = tuple(p.user for p in missed)
    reasons: dict[str, str] = {}

    def none(reason: str) -> Decision:
        return Decision(journal, (), dict.fromkeys(journal, reason))

    if not missed:
        return Decision((), ())
    if call.answered_by is not None and not rules.mail_if_picked_up:
        return none("answered by a third party")
    if rules.exclude_internal and call.internal:
        return none("internal caller")
    if rules.exclude_suppressed and call.suppressed:
        return none("suppressed number")
    if rules.exclude_unresolved and not call.resolved:
        return none("no contact")
    if call.caller_key and call.caller_key in rules.exclude_numbers:
        return none("number on the exclusion list")

    if rules.recipients == "first":
        picked = missed[:1]
    elif rules.recipients == "last":
        picked = missed[-1:]
    elif rules.recipients == "all":
        picked = missed
    else:
        picked = []
    for p in missed:
        if p not in picked:
            reasons[p.user] = f"recipients: {rules.recipients}"

    mail = []
    for p in picked:
        earlier = [e for e in history.get(p.user, ()) if call.caller_key and e.caller_key == call.caller_key]
        if rules.exclude_short_ring and p.ring_seconds < SHORT_RING_SECONDS:
            reasons[p.user] = "rang less than 2 seconds"
        elif rules.exclude_repeat_same_day and any(day(e.time) == day(call.time) for e in earlier):
            reasons[p.user] = "repeated call on the same day"
        elif rules.exclude_repeat_until_login and any(
            e.time > last_login.get(p.user, float("-inf")) for e in earlier
        ):
            reasons[p.user] = "repeated call, not logged in since"
        elif p.user not in subscribed:
            reasons[p.user] = "no e-mail or opted out"
        else:
            mail.append(p.user)
    return Decision(journal, tuple(mail), reasons)


def participants_by_user(
    legs: Iterable[tuple[str, float, float, bool]], owner: Callable[[str], str | None]
) -> tuple[Participant, ...]:
    """(endpoint, ring start, ring seconds, answered) per rung leg → one participant per
    user, ordered by first ring; legs of phones without an owner are left out.  A user's
    ring time is the time any of their phones rang: two devices ringing together for
    10 s are 10 s, one after the other 20 s."""
    merged: dict[str, Participant] = {}
    rang_until: dict[str, float] = {}
    for endpoint, start, seconds, answered in sorted(legs, key=lambda leg: leg[1]):
        user = owner(endpoint)
        if user is None:
            continue
        known = merged.get(user)
        end = start + seconds
        if known is None:
            merged[user] = Participant(user, start, seconds, answered)
        else:
            added = max(0.0, end - max(start, rang_until[user]))
            merged[user] = Participant(
                user, known.first_ring, known.ring_seconds + added, known.answered or answered
            )
        rang_until[user] = max(end, rang_until.get(user, end))
    return tuple(merged.values())
