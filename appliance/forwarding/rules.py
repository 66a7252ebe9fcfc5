"""Where a call goes: forwards, forward breakthrough, forward display, loops.

Pure: everything the decision depends on comes in (the caller, the forward
records, the numbering plan, the settings as a `Policy`, and who is
unavailable right now).  `plan` answers with the first `Leg` to dial;
`after` answers with the next one once Asterisk reported how a leg ended.

The rules (SPEC section 3, seed 002 and its FAQ):

- An unconditional forward applies before ringing; a busy forward when the
  line is busy, on DND or logged out (known before ringing, or Dial said
  BUSY/CHANUNAVAIL); a no-answer forward after its seconds of ringing.
  Each only for the calls its scope names (all, internal, external).
- Display: the target of an unconditional or busy forward sees
  ``Uml. für <forwarder>: <caller>``; a no-answer forward never changes it
  (it cannot be predicted when the call starts ringing).  In a chain the
  forwarder shown is the first of the chain: the one the call was meant for.
  The forwarder is named by the directory name (seed 002: "Umleitender
  Teilnehmer"), shortened to fit the phone's display ("A. Berger", "Berger"),
  or by number with FWD_DISPLAY_NUMBER.
- Breakthrough: a caller breaks through every forward of a line when one of
  that line's forwards (that applies to this call) points at the caller's
  *primary* internal number (for an external caller: at its caller ID), or
  when the caller is privileged (FWD_BREAKTHROUGH_USERS/GROUPS/CALLERIDS).
  It is checked hop by hop against the original caller, so A→B→C lets C
  through at B but not at A, and a forward to a group grants its members
  nothing.  A blindly transferred call never breaks through as forward
  target: the transferer did not dial the line itself.
- Loops and long chains: a forward to a number the call already passed, or
  beyond FWD_MAX_HOPS forwards, is not followed; the call ends at the last
  valid target, and the reason is logged.
- A forward may end the call at an announcement instead of a number ("office
  closed", `appliance.announcements`): the leg plays it and nothing follows.
- Groups have forwards like users, stored under the group's number: busy when
  every member is busy (`Context.unavailable` of the group's number), no
  answer when the group's ringing ended unanswered (or after the forward's
  seconds of it).  The same loop rules cover a group's overflow (`overflow`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

from twisted.logger import Logger

from appliance.announcements import is_announcement, name_of
from appliance.forwarding.records import BUSY, NOANSWER, UNCONDITIONAL, Forward

if TYPE_CHECKING:
    from appliance.directory import Group

log = Logger()

RING_SECONDS = 60

DestinationKind = Literal["line", "group", "external", "announcement"]


@dataclass(frozen=True)
class Destination:
    """Something a leg dials."""

    kind: DestinationKind
    number: str
    members: tuple[str, ...] = ()
    """For a group: its members in ring order (the group's list, then users naming it)."""
    language: str | None = None
    """The language of the user behind a line, when the directory knows it."""
    group: Group | None = None
    """For a group: its record (name, strategy, ring time, overflow)."""


class Numbering(Protocol):
    """The internal numbering plan (directory users and groups, PBX endpoints)."""

    def internal(self, number: str) -> Destination | None:
        """The line or group ``number`` is, or None when it is not internal."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, established from what cannot be forged where possible."""

    origin: Literal["internal", "external"]
    number: str
    """The caller ID number (for external callers the trunk's P-Asserted-Identity)."""
    name: str = ""
    line: str | None = None
    """An internal caller's primary internal number: its PJSIP endpoint, not its caller ID."""
    groups: frozenset[str] = frozenset()
    blind_transfer: bool = False


@dataclass(frozen=True)
class Policy:
    """The FWD_ settings at the moment the call is routed."""

    display: bool = True
    display_number: bool = False
    """Name the forwarder by number instead of the directory name."""
    display_width: int = 32
    """Characters the phones' display shows."""
    max_hops: int = 5
    breakthrough_users: frozenset[str] = frozenset()
    breakthrough_groups: frozenset[str] = frozenset()
    breakthrough_callerids: frozenset[str] = frozenset()
    """In the canonical form ``normalize`` makes."""
    normalize: Callable[[str], str] = field(default=str, compare=False)
    """External numbers in one form (E.164), so ``0170…`` and ``+49170…`` are one caller."""


Reason = Literal["direct", "forwarded", "breakthrough", "loop", "max_hops", "overflow"]


@dataclass(frozen=True)
class Leg:
    """One Dial of the call, and what may follow it."""

    destination: Destination
    ring_seconds: int = RING_SECONDS
    display_for: str | None = None
    """Show ``Uml. für <display_for>: <caller>``; None keeps the caller's own name."""
    on_busy: str | None = None
    on_noanswer: str | None = None
    chain: tuple[str, ...] = ()
    """The numbers this call was forwarded from, in order."""
    reason: Reason = "direct"
    skip_dial: bool = field(default=False)
    """The line is unavailable and has a no-answer forward: go on without ringing."""
    noanswer_seconds: int | None = None
    """Seconds of ringing after which the no-answer forward applies (None: none set)."""


@dataclass(frozen=True)
class Context:
    """Everything `plan` consults besides the number."""

    caller: Caller
    forwards: Callable[[str], Sequence[Forward]]
    numbering: Numbering
    policy: Policy
    unavailable: Callable[[str], bool]
    """Busy, on DND or logged out right now (known before ringing)."""


def privileged(caller: Caller, policy: Policy) -> bool:
    """Configured users, groups and external caller IDs break every forward."""
    if caller.origin == "internal":
        return caller.line in policy.breakthrough_users or bool(caller.groups & policy.breakthrough_groups)
    return bool(caller.number) and policy.normalize(caller.number) in policy.breakthrough_callerids


def breaks_through(caller: Caller, forwards: Sequence[Forward], policy: Policy) -> bool:
    """May ``caller`` reach the line whose applicable ``forwards`` these are?"""
    if privileged(caller, policy):
        return True
    if caller.blind_transfer:
        return False
    if caller.origin == "internal":
        me = caller.line
        return me is not None and me != "" and any(forward.target == me for forward in forwards)
    me = policy.normalize(caller.number) if caller.number else ""
    return me != "" and any(policy.normalize(forward.target) == me for forward in forwards)


def _target(number: str, ctx: Context) -> Destination | None:
    if is_announcement(number):
        return Destination("announcement", number) if name_of(number) is not None else None
    internal = ctx.numbering.internal(number)
    if internal is not None:
        return internal
    if number.lstrip("+").isdigit() and len(number.lstrip("+")) >= 3:
        return Destination("external", number)
    return None


def _applicable(number: str, ctx: Context) -> dict[str, Forward]:
    """At most one forward per kind: a scope-specific one wins over ``all``."""
    found: dict[str, Forward] = {}
    for forward in ctx.forwards(number):
        if not forward.applies_to(ctx.caller.origin):
            continue
        if forward.kind not in found or found[forward.kind].scope == "all":
            found[forward.kind] = forward
    return found


LoopReason = Literal["loop", "max_hops", "invalid"]


def _follow(number: str, target: str, chain: tuple[str, ...], ctx: Context) -> LoopReason | None:
    """Why the forward ``number``→``target`` is not followed, or None to follow it."""
    destination = _target(target, ctx)
    if destination is None:
        log.warn(
            "forward of {number} to {target}: not a dialable target; ignored",
            number=number,
            target=target,
        )
        return "invalid"
    if destination.number in chain or destination.number == number:
        log.warn(
            "forward loop: {path} -> {target}; the call ends at {number}",
            path=" -> ".join((*chain, number)),
            target=target,
            number=number,
        )
        return "loop"
    if len(chain) >= ctx.policy.max_hops:
        log.warn(
            "forward chain {path} -> {target} longer than FWD_MAX_HOPS={hops}; the call ends at {number}",
            path=" -> ".join((*chain, number)),
            target=target,
            hops=ctx.policy.max_hops,
            number=number,
        )
        return "max_hops"
    return None


def plan(
    number: str,
    ctx: Context,
    chain: tuple[str, ...] = (),
    display_for: str | None = None,
    overflow: bool = False,
) -> Leg:
    """The leg that rings ``number`` or whatever its forwards send the call to."""
    reason: Reason = "overflow" if overflow else "forwarded" if chain else "direct"
    while True:
        destination = _target(number, ctx) if chain else ctx.numbering.internal(number)
        if destination is None:
            destination = Destination("line", number)
        number = destination.number
        leg = Leg(destination, chain=chain, display_for=display_for, reason=reason)
        if destination.kind in ("external", "announcement"):
            return leg
        forwards = _applicable(number, ctx)
        if not forwards:
            return leg
        if breaks_through(ctx.caller, list(forwards.values()), ctx.policy):
            log.info(
                "{caller} breaks through the forwards of {number}",
                caller=ctx.caller.line or ctx.caller.number,
                number=number,
            )
            return replace(leg, reason="breakthrough")
        busy = forwards.get(BUSY)
        now = forwards.get(UNCONDITIONAL) or (busy if busy and ctx.unavailable(number) else None)
        if now is not None:
            why = _follow(number, now.target, chain, ctx)
            if why is None:
                display_for = display_for or number
                chain = (*chain, number)
                number = now.target
                reason = "forwarded"
                continue
            if why == "loop" or why == "max_hops":
                return replace(leg, reason=why)
        noanswer = forwards.get(NOANSWER)
        return replace(
            leg,
            ring_seconds=noanswer.seconds if noanswer else RING_SECONDS,
            noanswer_seconds=noanswer.seconds if noanswer else None,
            on_busy=busy.target if busy else None,
            on_noanswer=noanswer.target if noanswer else None,
            skip_dial=noanswer is not None and ctx.unavailable(number),
        )


BUSY_STATUSES = frozenset({"BUSY", "CHANUNAVAIL", "CONGESTION"})


def after(leg: Leg, status: str | None, ctx: Context) -> Leg | None:
    """The next leg once ``leg`` ended with Dial's ``status``, or None: the call is done."""
    number = leg.destination.number
    if leg.skip_dial:
        status = "NOANSWER"
    if status in BUSY_STATUSES and leg.on_busy:
        target, display_for = leg.on_busy, leg.display_for or number
    elif status == "NOANSWER" and leg.on_noanswer:
        target, display_for = leg.on_noanswer, None
    else:
        return None
    if _follow(number, target, leg.chain, ctx) is not None:
        return None
    return plan(target, ctx, chain=(*leg.chain, number), display_for=display_for)


def overflow(leg: Leg, ctx: Context) -> Leg | None:
    """The leg a group's overflow number sends the call to once nobody took it,
    or None (no overflow number, or following it would loop)."""
    group = leg.destination.group
    target = group.overflow if group is not None else ""
    if not target or not target.lstrip("+").isdigit():
        return None
    number = leg.destination.number
    if _follow(number, target, leg.chain, ctx) is not None:
        return None
    return plan(target, ctx, chain=(*leg.chain, number), overflow=True)


# -- forward display ---------------------------------------------------------

DISPLAY_PREFIX = {"de": "Uml. für", "en": "Fwd for"}
UNKNOWN_CALLER = {"de": "Unbekannt", "en": "Unknown"}
DISPLAY_MAX = 48
"""SIP allows more, but phone displays show 20-30 characters; the caller comes last."""
MIN_CALLER = 8
"""Characters of the caller kept visible when even the shortest forwarder form is too long."""


def printable(text: str) -> str:
    """Caller names are attacker-controlled: no control or formatting characters."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "CZ" or ch == " ").strip()


def forwarder_forms(name: str, number: str) -> tuple[str, ...]:
    """How to name the forwarder, longest first: "Anna Berger", "A. Berger", "Berger";
    the number when the directory has no name."""
    words = printable(name).split()
    if not words:
        return (number,)
    forms = [" ".join(words)]
    if len(words) > 1:
        forms += [f"{words[0][0]}. {words[-1]}", words[-1]]
    return tuple(dict.fromkeys(forms))


def display_text(
    language: str,
    forwarder: str | Sequence[str],
    caller_name: str,
    caller_number: str,
    width: int = DISPLAY_MAX,
) -> str:
    """``Uml. für Anna Berger: Erika`` (de) or ``Fwd for Anna Berger: Erika`` (en), with the
    first forwarder form that fits ``width``; if none does, the shortest, cut so that
    the caller stays readable."""
    prefix = DISPLAY_PREFIX.get(language, DISPLAY_PREFIX["en"])
    caller = printable(caller_name) or printable(caller_number) or UNKNOWN_CALLER.get(language, "Unknown")
    forms = (forwarder,) if isinstance(forwarder, str) else tuple(forwarder)
    for form in forms:
        text = f"{prefix} {form}: {caller}"
        if len(text) <= width:
            return text
    form = forms[-1]
    room = width - len(prefix) - len(" : ") - len(caller)
    if room < 3:  # the caller alone is long: keep its first MIN_CALLER characters
        room = width - len(prefix) - len(" : ") - MIN_CALLER
    if len(form) > room:
        form = form[: max(room - 1, 1)] + "."
    return f"{prefix} {form}: {caller}"[:width]


def group_text(
    language: str, group: str, caller_name: str, caller_number: str, width: int = DISPLAY_MAX
) -> str:
    """``Vertrieb: Erika`` — a group call shows the group first; a long group name is
    cut so that the caller stays readable."""
    caller = printable(caller_name) or printable(caller_number) or UNKNOWN_CALLER.get(language, "Unknown")
    name = printable(group)
    room = width - len(": ") - min(len(caller), width // 2)
    if len(name) > room:
        name = name[: max(room - 1, 1)] + "."
    return f"{name}: {caller}"[:width]
