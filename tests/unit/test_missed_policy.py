"""The missed-call notification policy (SPEC §2, seed 001), table-driven."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from appliance.missed.policy import (
    Earlier,
    MissedCall,
    Participant,
    Rules,
    decide,
    participants_by_user,
)

T = datetime.datetime(2026, 11, 23, 10, 0).timestamp()
DAY = 86400.0

GROUP = (
    Participant("200", T + 0.0, 10.0),
    Participant("201", T + 0.1, 10.0),
    Participant("202", T + 0.2, 10.0),
)


def call(**changes: object) -> MissedCall:
    base = MissedCall(
        linkedid="c1",
        time=T,
        caller_key="+4930123456",
        internal=False,
        suppressed=False,
        resolved=True,
        participants=GROUP,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


ALL = ("200", "201", "202")

CASES = [
    # (what, call, rules, expected mail)
    ("all non-answering participants", call(), Rules(recipients="all"), ALL),
    ("only the first", call(), Rules(recipients="first"), ("200",)),
    ("only the last", call(), Rules(recipients="last"), ("202",)),
    ("nobody", call(), Rules(recipients="none"), ()),
    (
        "answered by a group member: no mail by default",
        call(participants=(GROUP[0], replace(GROUP[1], answered=True), GROUP[2]), answered_by="201"),
        Rules(),
        (),
    ),
    (
        "answered by a group member: the others with the option on",
        call(participants=(GROUP[0], replace(GROUP[1], answered=True), GROUP[2]), answered_by="201"),
        Rules(mail_if_picked_up=True),
        ("200", "202"),
    ),
    ("picked up by a third party: none", call(answered_by="301"), Rules(), ()),
    ("picked up by a third party: option on", call(answered_by="301"), Rules(mail_if_picked_up=True), ALL),
    ("internal caller, switch off", call(internal=True), Rules(), ALL),
    ("internal caller, switch on", call(internal=True), Rules(exclude_internal=True), ()),
    ("suppressed, switch off", call(suppressed=True, caller_key=""), Rules(), ALL),
    ("suppressed, switch on", call(suppressed=True, caller_key=""), Rules(exclude_suppressed=True), ()),
    ("unresolved, switch off", call(resolved=False), Rules(), ALL),
    ("unresolved, switch on", call(resolved=False), Rules(exclude_unresolved=True), ()),
    ("door phone listed", call(caller_key="+49301"), Rules(exclude_numbers=frozenset({"+49301"})), ()),
    ("another number listed", call(), Rules(exclude_numbers=frozenset({"+49301"})), ALL),
    (
        "short ring, switch on: only those who rang 2 s or more",
        call(participants=(replace(GROUP[0], ring_seconds=1.9), GROUP[1])),
        Rules(exclude_short_ring=True),
        ("201",),
    ),
    (
        "short ring, switch off",
        call(participants=(replace(GROUP[0], ring_seconds=1.9),)),
        Rules(),
        ("200",),
    ),
    (
        "first picked before exceptions: the first rang briefly, nobody gets it",
        call(participants=(replace(GROUP[0], ring_seconds=0.5), GROUP[1])),
        Rules(recipients="first", exclude_short_ring=True),
        (),
    ),
]


@pytest.mark.parametrize(("what", "facts", "rules", "expected"), CASES, ids=[c[0] for c in CASES])
def test_recipients_and_exceptions(
    what: str, facts: MissedCall, rules: Rules, expected: tuple[str, ...]
) -> None:
    """Each row: the users that get a mail for this call under these rules."""
    assert decide(facts, rules, subscribers=ALL).mail == expected


def test_journal_independent_of_mail() -> None:
    """Every non-answering participant gets a journal entry even when no mail goes out."""
    facts = call(participants=(GROUP[0], replace(GROUP[1], answered=True)), answered_by="201", internal=True)
    decision = decide(facts, Rules(recipients="none", exclude_internal=True), subscribers=())
    assert decision.journal == ("200",)
    assert decision.mail == ()


def test_unsubscribed_users_get_no_mail() -> None:
    """A picked participant without e-mail or opted out is skipped, with a reason."""
    decision = decide(call(), Rules(), subscribers=("201",))
    assert decision.mail == ("201",)
    assert decision.reasons["200"] == "no e-mail or opted out"


CALLER = "+4930123456"
SAME_DAY = Rules(exclude_repeat_same_day=True)
UNTIL_LOGIN = Rules(exclude_repeat_until_login=True)
REPEATS = [
    # (what, earlier entries of 200, last login of 200, rules, mailed)
    ("same day repeat, switch on", [Earlier(T - 3600, CALLER)], None, SAME_DAY, False),
    ("yesterday's call, same-day switch", [Earlier(T - DAY, CALLER)], None, SAME_DAY, True),
    ("same day, other caller", [Earlier(T - 60, "+4940999")], None, SAME_DAY, True),
    ("same day repeat, switch off", [Earlier(T - 60, CALLER)], None, Rules(), True),
    ("repeat, not logged in since", [Earlier(T - 5 * DAY, CALLER)], T - 6 * DAY, UNTIL_LOGIN, False),
    ("repeat, never logged in", [Earlier(T - 5 * DAY, CALLER)], None, UNTIL_LOGIN, False),
    ("repeat, logged in since", [Earlier(T - 5 * DAY, CALLER)], T - DAY, UNTIL_LOGIN, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "earlier", "login", "rules", "mailed"), REPEATS, ids=[r[0] for r in REPEATS]
)
def test_repeated_calls(
    what: str, earlier: list[Earlier], login: float | None, rules: Rules, mailed: bool
) -> None:
    """Each row: whether 200 gets a mail given its journal history and last login."""
    facts = call(participants=GROUP[:1])
    decision = decide(
        facts,
        rules,
        history={"200": earlier},
        last_login={} if login is None else {"200": login},
        subscribers=ALL,
    )
    assert (decision.mail == ("200",)) is mailed


def test_suppressed_caller_is_never_a_repeat() -> None:
    """Two withheld numbers are not "the same caller"."""
    facts = call(participants=GROUP[:1], caller_key="", suppressed=True)
    decision = decide(facts, SAME_DAY, history={"200": [Earlier(T - 60, "")]}, subscribers=ALL)
    assert decision.mail == ("200",)


def test_one_user_ringing_several_times_is_one_participant() -> None:
    """Hunt group and forwarding: a user whose phones rang twice is one participant,
    ordered by the first ring, with the ring times added up; unowned phones drop out."""
    owners = {"200": "200", "2001": "200", "201": "201"}
    legs = [
        ("201", T + 5, 3.0, False),
        ("200", T, 4.0, False),
        ("2001", T + 9, 2.0, False),
        ("999", T, 1.0, False),
    ]
    result = participants_by_user(legs, owners.get)
    assert result == (Participant("200", T, 6.0, False), Participant("201", T + 5, 3.0, False))
    assert decide(call(participants=result), Rules(), subscribers=ALL).mail == ("200", "201")


def test_rules_from_settings_normalises_the_exclusion_list() -> None:
    """MC_EXCLUDE_NUMBERS entries are compared in canonical form."""
    values = {
        "MC_RECIPIENTS": "last",
        "MC_MAIL_IF_PICKED_UP": True,
        "MC_EXCLUDE_NUMBERS": ["030 1234", "101"],
    }
    rules = Rules.from_settings(
        lambda name: values.get(name, False), lambda n: n.replace(" ", "").replace("030", "+4930")
    )
    assert rules.recipients == "last" and rules.mail_if_picked_up
    assert rules.exclude_numbers == frozenset({"+49301234", "101"})
