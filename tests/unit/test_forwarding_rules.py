"""The pure forwarding decision: forwards, breakthrough, display, loops (seed 002 FAQ)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from appliance.forwarding.records import Forward
from appliance.forwarding.rules import (
    Caller,
    Context,
    Destination,
    Leg,
    Policy,
    after,
    display_text,
    forwarder_forms,
    plan,
)
from appliance.numbers import NumberPlan


@dataclass
class Plan:
    """A small numbering plan: lines 100-399, group 600 (members 301, 302), 310 is a
    further number of line 300."""

    groups: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"600": ("301", "302")})
    further: dict[str, str] = field(default_factory=lambda: {"310": "300"})

    def internal(self, number: str) -> Destination | None:
        if number in self.groups:
            return Destination("group", number, self.groups[number])
        if number in self.further:
            return Destination("line", self.further[number], language="de")
        if number.isdigit() and 100 <= int(number) <= 399:
            return Destination("line", number, language="en" if number.startswith("1") else "de")
        return None


def internal(line: str, groups: Sequence[str] = (), blind: bool = False) -> Caller:
    return Caller("internal", line, f"Lab {line}", line=line, groups=frozenset(groups), blind_transfer=blind)


def external(number: str) -> Caller:
    return Caller("external", number, "")


U, B, N = "unconditional", "busy", "noanswer"


def ctx(
    caller: Caller,
    forwards: dict[str, list[Forward]],
    busy: Sequence[str] = (),
    policy: Policy | None = None,
) -> Context:
    return Context(
        caller=caller,
        forwards=lambda number: forwards.get(number, []),
        numbering=Plan(),
        policy=policy or Policy(),
        unavailable=lambda number: number in busy,
    )


def where(leg: Leg) -> tuple[str, str | None, str]:
    return leg.destination.number, leg.display_for, leg.reason


FAQ_CASES = [
    # (what, caller, called number, forwards, policy, expected (dialled, display for, reason))
    (
        "unconditional forward goes to the target with display",
        internal("100"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(),
        ("300", "200", "forwarded"),
    ),
    (
        "the forward target itself breaks through (attended transfer back)",
        internal("300"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(),
        ("200", None, "breakthrough"),
    ),
    (
        "a blindly transferred call is still forwarded, even on the target's channel",
        internal("300", blind=True),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(),
        ("300", "200", "forwarded"),
    ),
    (
        "FAQ 1: a forward to a group gives the members no breakthrough",
        internal("301"),
        "200",
        {"200": [Forward(U, "600")]},
        Policy(),
        ("600", "200", "forwarded"),
    ),
    (
        "FAQ 2: A->B->C: C breaks through at B, not at A",
        internal("300"),
        "100",
        {"100": [Forward(U, "200")], "200": [Forward(U, "300")]},
        Policy(),
        ("200", "100", "breakthrough"),
    ),
    (
        "FAQ 2: A->B->C: B breaks through at A",
        internal("200"),
        "100",
        {"100": [Forward(U, "200")], "200": [Forward(U, "300")]},
        Policy(),
        ("100", None, "breakthrough"),
    ),
    (
        "FAQ 2: A->B->C: a third caller ends at C, display names A",
        internal("150"),
        "100",
        {"100": [Forward(U, "200")], "200": [Forward(U, "300")]},
        Policy(),
        ("300", "100", "forwarded"),
    ),
    (
        "FAQ 3: a forward to a further number of the caller grants nothing",
        internal("300"),
        "200",
        {"200": [Forward(U, "310")]},
        Policy(),
        ("300", "200", "forwarded"),
    ),
    (
        "configured user breaks every forward",
        internal("101"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(breakthrough_users=frozenset({"101"})),
        ("200", None, "breakthrough"),
    ),
    (
        "member of a configured group breaks every forward",
        internal("102", groups=["reception"]),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(breakthrough_groups=frozenset({"reception"})),
        ("200", None, "breakthrough"),
    ),
    (
        "configured external caller ID breaks every forward",
        external("+4930123456"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(breakthrough_callerids=frozenset({"+4930123456"})),
        ("200", None, "breakthrough"),
    ),
    (
        "an external caller who is the external forward target breaks through",
        external("01701234567"),
        "200",
        {"200": [Forward(U, "01701234567")]},
        Policy(),
        ("200", None, "breakthrough"),
    ),
    (
        "a configured caller ID in another spelling breaks every forward",
        external("+49 170 1234567"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(breakthrough_callerids=frozenset({"+491701234567"}), normalize=NumberPlan().normalize),
        ("200", None, "breakthrough"),
    ),
    (
        "an external forward target in another spelling than the caller ID breaks through",
        external("+491701234567"),
        "200",
        {"200": [Forward(U, "0170 1234567")]},
        Policy(normalize=NumberPlan().normalize),
        ("200", None, "breakthrough"),
    ),
    (
        "a configured caller ID does not make an internal caller privileged",
        internal("105"),
        "200",
        {"200": [Forward(U, "300")]},
        Policy(breakthrough_callerids=frozenset({"105"})),
        ("300", "200", "forwarded"),
    ),
    (
        "internal-only forward ignores an external call",
        external("+4930999"),
        "200",
        {"200": [Forward(U, "300", scope="internal")]},
        Policy(),
        ("200", None, "direct"),
    ),
    (
        "external-only forward takes an external call",
        external("+4930999"),
        "200",
        {"200": [Forward(U, "300", scope="external")]},
        Policy(),
        ("300", "200", "forwarded"),
    ),
    (
        "a scope-specific forward wins over the all-calls one",
        internal("100"),
        "200",
        {"200": [Forward(U, "300"), Forward(U, "301", scope="internal")]},
        Policy(),
        ("301", "200", "forwarded"),
    ),
    (
        "a disabled forward does nothing",
        internal("100"),
        "200",
        {"200": [Forward(U, "300", enabled=False)]},
        Policy(),
        ("200", None, "direct"),
    ),
    (
        "loop A->B->A ends at B",
        internal("100"),
        "200",
        {"200": [Forward(U, "300")], "300": [Forward(U, "200")]},
        Policy(),
        ("300", "200", "loop"),
    ),
    (
        "longer cycle A->B->C->A ends at C",
        internal("100"),
        "200",
        {"200": [Forward(U, "300")], "300": [Forward(U, "301")], "301": [Forward(U, "200")]},
        Policy(),
        ("301", "200", "loop"),
    ),
    (
        "a loop through a further number is a loop too",
        internal("100"),
        "300",
        {"300": [Forward(U, "200")], "200": [Forward(U, "310")]},
        Policy(),
        ("200", "300", "loop"),
    ),
    (
        "chains are bounded by FWD_MAX_HOPS",
        internal("100"),
        "200",
        {"200": [Forward(U, "201")], "201": [Forward(U, "202")], "202": [Forward(U, "203")]},
        Policy(max_hops=2),
        ("202", "200", "max_hops"),
    ),
    (
        "a call to a group number rings the group",
        internal("100"),
        "600",
        {},
        Policy(),
        ("600", None, "direct"),
    ),
    (
        "an external forward target is dialled out",
        internal("100"),
        "200",
        {"200": [Forward(U, "01701234567")]},
        Policy(),
        ("01701234567", "200", "forwarded"),
    ),
]


@pytest.mark.parametrize(
    ("caller", "called", "forwards", "policy", "expected"),
    [case[1:] for case in FAQ_CASES],
    ids=[case[0] for case in FAQ_CASES],
)
def test_first_leg(
    caller: Caller, called: str, forwards: dict[str, list[Forward]], policy: Policy, expected: tuple
) -> None:
    """Each rule of SPEC section 3 and the seed's FAQ gives the expected first leg."""
    assert where(plan(called, ctx(caller, forwards, policy=policy))) == expected


def test_busy_forward_only_when_busy() -> None:
    """A busy forward applies before ringing only when the line is unavailable."""
    forwards = {"200": [Forward(B, "300")]}
    idle = plan("200", ctx(internal("100"), forwards))
    assert (where(idle), idle.on_busy) == (("200", None, "direct"), "300")
    busy = plan("200", ctx(internal("100"), forwards, busy=["200"]))
    assert where(busy) == ("300", "200", "forwarded")


def test_busy_found_by_dial_forwards_with_display() -> None:
    """Dial says BUSY or CHANUNAVAIL: the busy target rings with the display."""
    context = ctx(internal("100"), {"200": [Forward(B, "300")]})
    for status in ("BUSY", "CHANUNAVAIL"):
        following = after(plan("200", context), status, context)
        assert following is not None and where(following) == ("300", "200", "forwarded")
        assert following.chain == ("200",)
    assert after(plan("200", context), "ANSWER", context) is None
    assert after(plan("200", context), "NOANSWER", context) is None


def test_noanswer_forward_has_no_display() -> None:
    """No answer: ring N seconds, then the target without forward display."""
    context = ctx(internal("100"), {"200": [Forward(N, "300", seconds=7)]})
    first = plan("200", context)
    assert (first.destination.number, first.ring_seconds, first.on_noanswer) == ("200", 7, "300")
    following = after(first, "NOANSWER", context)
    assert following is not None and where(following) == ("300", None, "forwarded")


def test_noanswer_then_unconditional_shows_second_forwarder() -> None:
    """After a no-answer hop, an unconditional forward of the next line shows that line."""
    forwards = {"200": [Forward(N, "300")], "300": [Forward(U, "301")]}
    context = ctx(internal("100"), forwards)
    following = after(plan("200", context), "NOANSWER", context)
    assert following is not None and where(following) == ("301", "300", "forwarded")
    assert following.chain == ("200", "300")


def test_noanswer_skips_ringing_an_unavailable_line() -> None:
    """A logged-out line with a no-answer forward goes on to the target at once."""
    context = ctx(internal("100"), {"200": [Forward(N, "300")]}, busy=["200"])
    first = plan("200", context)
    assert first.skip_dial
    following = after(first, None, context)
    assert following is not None and where(following) == ("300", None, "forwarded")


def test_noanswer_loop_stops() -> None:
    """A->B on no answer, B->A on no answer: after B the call ends."""
    forwards = {"200": [Forward(N, "300")], "300": [Forward(N, "200")]}
    context = ctx(internal("100"), forwards)
    second = after(plan("200", context), "NOANSWER", context)
    assert second is not None and second.destination.number == "300"
    assert after(second, "NOANSWER", context) is None


def test_breakthrough_ignores_every_forward_of_the_line() -> None:
    """The forward target breaks through and no busy or no-answer forward follows."""
    forwards = {"200": [Forward(U, "300"), Forward(N, "301"), Forward(B, "302")]}
    leg = plan("200", ctx(internal("300"), forwards))
    assert (leg.reason, leg.on_busy, leg.on_noanswer, leg.ring_seconds) == ("breakthrough", None, None, 60)


def test_busy_target_of_unconditional_forward_follows_its_busy_forward() -> None:
    """A->B unconditional, B busy with a busy forward to C: C rings, display names A."""
    forwards = {"200": [Forward(U, "300")], "300": [Forward(B, "301")]}
    leg = plan("200", ctx(internal("100"), forwards, busy=["300"]))
    assert where(leg) == ("301", "200", "forwarded")


@pytest.mark.parametrize(
    ("language", "name", "number", "expected"),
    [
        ("de", "Lab 100", "100", "Uml. für 200: Lab 100"),
        ("en", "Lab 100", "100", "Fwd for 200: Lab 100"),
        ("de", "", "+4930123", "Uml. für 200: +4930123"),
        ("en", "", "", "Fwd for 200: Unknown"),
        ("de", "Evil\r\nVia: x\x00", "1", "Uml. für 200: EvilVia: x"),
        ("de", "A" * 80, "1", "Uml. für 200: " + "A" * 34),
    ],
)
def test_display_text(language: str, name: str, number: str, expected: str) -> None:
    """The display names the forwarder and the caller, without control characters, bounded."""
    assert display_text(language, "200", name, number) == expected


def test_forwarder_forms_from_the_directory_name() -> None:
    """Full name, initial and surname, surname; the number when there is no name."""
    assert forwarder_forms("Anna  Berger", "200") == ("Anna Berger", "A. Berger", "Berger")
    assert forwarder_forms("Sekretariat", "200") == ("Sekretariat",)
    assert forwarder_forms("\x00 ", "200") == ("200",)


@pytest.mark.parametrize(
    ("width", "caller", "expected"),
    [
        (40, "Erika", "Uml. für Annabella Bergmann: Erika"),
        (32, "Erika", "Uml. für A. Bergmann: Erika"),
        (24, "Erika", "Uml. für Bergmann: Erika"),
        (20, "Erika", "Uml. für Ber.: Erika"),
        (32, "Erika Mustermann-Schulze", "Uml. für Bergmann: Erika Musterm"),
    ],
)
def test_display_shortens_the_forwarder_to_fit(width: int, caller: str, expected: str) -> None:
    """The first form of the forwarder's name that fits the display's width is shown;
    if none fits, the shortest is cut so that the caller stays readable."""
    forms = forwarder_forms("Annabella Bergmann", "200")
    text = display_text("de", forms, caller, "1", width)
    assert text == expected and len(text) <= width
