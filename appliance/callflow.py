"""One call to an internal number as an explicit state machine, pure.

A call moves through these states::

    CHECK ──(nobody can ring)──────────────┐
      │                                    ▼
      └─(Ring)─▶ DIALLING ──dialled()──▶ AFTER ──(next leg: forward,
                   ▲   │                   │      overflow)──▶ CHECK
                   └───┘ next member       └──(nothing follows)──▶ DONE
                   (hunt, cyclic)

- CHECK: the planned leg (`appliance.forwarding.rules.plan`) is checked before
  anything rings: a line that is logged out, on DND or busy (the one busy
  rule, `appliance.busy`) is not rung; a group rings only its members that
  are free, in the order of its strategy (`appliance.groups`).
- DIALLING: a `Ring` is out; `CallFlow.dialled` reports how Dial ended.  A
  hunt or cyclic group rings its next free member until one answers, the
  members are through, or the group's no-answer forward is due.
- AFTER: the leg's forwards (busy, no answer), then a group's overflow ("busy",
  or a number, loop-protected like forwards), decide the next leg; if none,
  the call is DONE.  A leg to an announcement ("office closed") plays it
  (`Announce`) and the call is DONE.  When DONE, the final target may be
  offered (`Offer`), the first line that rang unanswered is told
  (`Unanswered`), and `Finished` carries the `CallOutcome`.

Inputs come in (the first leg, the forwarding context, who can ring right
now, the endpoints of a number, the cyclic cursor, the display, a clock);
outputs go out as a list of commands for the thin driver
(`appliance.dialplan.CallRouter`), which speaks AGI.  Tests feed statuses and
assert the exact outputs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from twisted.internet.interfaces import IReactorTime

from appliance.announcements import name_of
from appliance.busy import Reach
from appliance.directory import Group
from appliance.forwarding.rules import Context, Leg, after, overflow
from appliance.groups import CYCLIC, RINGALL, ring_order

NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
"""What may reach Dial(): anything else could smuggle in options or more targets."""
ENDPOINT = re.compile(r"^[A-Za-z0-9_.+*#-]{1,40}$")
"""A PJSIP endpoint name (a user's further devices are named freely); never ``&,()/``."""

UNANSWERED_STATUSES = frozenset({"NOANSWER", "CANCEL"})
ANNOUNCED = "ANNOUNCED"
"""The status of a call that ended at an announcement."""
OVERFLOW_BUSY = "busy"


class Unreachable(enum.Enum):
    """Why a call did not reach its target."""

    LOGGED_OUT = "logged_out"
    DND = "dnd"
    BUSY = "busy"
    NO_ANSWER = "no_answer"


REACH_UNREACHABLE = {
    Reach.LOGGED_OUT: Unreachable.LOGGED_OUT,
    Reach.DND: Unreachable.DND,
    Reach.BUSY: Unreachable.BUSY,
}

DIAL_STATUS_UNREACHABLE = {
    "BUSY": Unreachable.BUSY,
    "CHANUNAVAIL": Unreachable.LOGGED_OUT,
    "NOANSWER": Unreachable.NO_ANSWER,
}


@dataclass(frozen=True)
class Call:
    """One call as the dialplan handed it to us.  Caller ID is the caller's claim."""

    number: str
    origin: str
    """``internal`` (from a phone) or ``external`` (from the trunk)."""
    caller_num: str
    caller_name: str
    channel: str
    uniqueid: str
    forwarded_from: tuple[str, ...] = ()
    """For the final target of a forwarded call: the numbers it was forwarded from."""
    group: bool = False
    """For the final target: ``number`` is a group's (nobody of it took the call)."""


# -- outputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Ring:
    """Dial ``dial`` for ``seconds``, the phones showing ``caller_name``."""

    dial: str
    seconds: int
    caller_name: str
    watch: str | None = None
    """The line whose call waiting time runs while it rings (one line rung alone)."""


@dataclass(frozen=True)
class CursorMoved:
    """A cyclic group rang ``member`` first: the next call starts after it."""

    group: str
    member: str


@dataclass(frozen=True)
class Unanswered:
    """The first internal line of the call rang and was not answered, or (no line
    rang before it) the group nobody of which took the call (``call.group``)."""

    call: Call


@dataclass(frozen=True)
class Offer:
    """The final target was not reached: what the caller meets is the features' choice."""

    call: Call
    reason: Unreachable


@dataclass(frozen=True)
class Announce:
    """A forward ends the call at an announcement ("office closed"): play ``name``,
    then the call is over."""

    name: str


@dataclass(frozen=True)
class Reject:
    """A group's overflow says busy: the caller hears the busy tone."""


@dataclass(frozen=True)
class CallOutcome:
    """How one call ended, for observers (metrics, tests, tools)."""

    call: Call
    status: str | None
    """Dial's last status (or the reason nothing was dialled)."""
    legs: tuple[tuple[Leg, str | None], ...]
    """Every leg of the call and how it ended, in order."""
    dials: tuple[str, ...]
    """Every Dial target string, in order (a hunt group's members one by one)."""
    offered: Unreachable | None = None
    """Why the final target was not reached, when the call ended so."""

    @property
    def number(self) -> str:
        return self.call.number

    @property
    def origin(self) -> str:
        return self.call.origin


@dataclass(frozen=True)
class Finished:
    outcome: CallOutcome


Output = Ring | CursorMoved | Unanswered | Offer | Announce | Reject | Finished


class State(enum.Enum):
    CHECK = "check"
    DIALLING = "dialling"
    AFTER = "after"
    DONE = "done"


@dataclass(frozen=True)
class Lookups:
    """What the flow asks of the world, as plain functions."""

    reach: Callable[[str], Reach] = lambda _number: Reach.FREE
    """The one busy rule for a line (`appliance.callwaiting.CallWaiting.reach`)."""
    endpoints: Callable[[str], tuple[str, ...]] = lambda number: (number,)
    """The PJSIP endpoints that ring for an internal number (extension point)."""
    last_first: Callable[[str], str | None] = lambda _group: None
    """A cyclic group's member rung first last time (`appliance.groups.GroupCursors`)."""
    display: Callable[[Leg], str | None] = lambda _leg: None
    """The caller name the leg's phones show (forward or group display), None: the caller's own."""


@dataclass
class _GroupRun:
    """A group leg in progress: members still to try, and whether anyone rang."""

    group: Group
    queue: list[str]
    deadline: float | None
    rang: bool = False
    first: bool = True


class CallFlow:
    """The states and transitions of one call."""

    def __init__(
        self,
        call: Call,
        first: Leg,
        context: Context | None,
        lookups: Lookups,
        clock: IReactorTime,
        trunk: str = "trunk",
    ) -> None:
        self.call = call
        self.leg = first
        self.context = context
        self.lookups = lookups
        self.clock = clock
        self.trunk = trunk
        self.state = State.CHECK
        self.legs: list[tuple[Leg, str | None]] = []
        self.dials: list[str] = []
        self.unanswered = ""
        self.unanswered_group = False
        self.group: _GroupRun | None = None

    # -- inputs --------------------------------------------------------------

    def start(self) -> list[Output]:
        """The first commands of the call."""
        self._expect(State.CHECK)
        return self._check()

    def dialled(self, status: str | None, hung_up: bool) -> list[Output]:
        """The `Ring` ended with Dial's ``status``; ``hung_up``: the caller left or the
        conversation is over (Dial returned -1)."""
        self._expect(State.DIALLING)
        leg = self.leg
        destination = leg.destination
        if destination.kind == "line" and status in UNANSWERED_STATUSES and not self.unanswered:
            self.unanswered = destination.number
        if hung_up or status == "ANSWER":
            if destination.kind == "group" and status in UNANSWERED_STATUSES:
                self._group_unanswered()  # the caller gave up while the group rang
            self.state = State.AFTER
            self.legs.append((leg, status))
            return self._done(status, None)
        if self.group is not None:
            if status in UNANSWERED_STATUSES:
                self.group.rang = True
            if self.group.group.strategy != RINGALL:
                ringing = self._next_member()
                if ringing:
                    return ringing
            if self.group.rang:
                self._group_unanswered()
                return self._after("NOANSWER", Unreachable.NO_ANSWER)
            return self._after("BUSY", Unreachable.BUSY)
        return self._after(status, DIAL_STATUS_UNREACHABLE.get(status or ""))

    def _group_unanswered(self) -> None:
        """Nobody of the group took the call: the group (not a member) is the
        caller's "last unanswered number", unless a line rang before it."""
        if not self.unanswered:
            self.unanswered = self.leg.destination.number
            self.unanswered_group = True

    # -- transitions ---------------------------------------------------------

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise RuntimeError(f"call flow is {self.state.value}, not {state.value}")

    def _check(self) -> list[Output]:
        """CHECK: before anything rings."""
        leg = self.leg
        destination = leg.destination
        self.group = None
        if destination.kind == "group":
            return self._check_group()
        if destination.kind == "announcement":
            return self._announce()
        reason = None
        if destination.kind == "line":
            reason = REACH_UNREACHABLE.get(self.lookups.reach(destination.number))
        if leg.skip_dial:
            return self._after("NOANSWER", reason or Unreachable.BUSY)
        if reason is not None:
            return self._after(reason.name, reason)
        if destination.kind == "external":
            dial = self._external(destination.number)
        else:
            dial = self._dial_string(self.lookups.endpoints(destination.number))
        if dial is None:
            return self._after("CHANUNAVAIL", None)
        watch = destination.number if destination.kind == "line" else None
        return [self._ring(dial, leg.ring_seconds, watch)]

    def _announce(self) -> list[Output]:
        """The leg plays an announcement: the call is DONE once it was heard."""
        name = name_of(self.leg.destination.number)
        assert name is not None, "the forwarding rules plan known announcements only"
        self.state = State.AFTER
        self.legs.append((self.leg, ANNOUNCED))
        *told, finished = self._done(ANNOUNCED, None)
        return [*told, Announce(name), finished]

    def _check_group(self) -> list[Output]:
        leg = self.leg
        destination = leg.destination
        # A group without its record (not from the directory) rings all its members.
        group = destination.group or Group(destination.number, destination.number, destination.members)
        last = self.lookups.last_first(group.number) if group.strategy == CYCLIC else None
        order = ring_order(destination.members, group.strategy, last)
        deadline = None
        if leg.noanswer_seconds is not None:
            deadline = self.clock.seconds() + leg.noanswer_seconds
        self.group = _GroupRun(group, list(order), deadline)
        if leg.skip_dial:
            return self._after("NOANSWER", Unreachable.BUSY)
        if group.strategy == RINGALL:
            free = [member for member in order if self._free(member)]
            dial = self._dial_string([e for member in free for e in self.lookups.endpoints(member)])
            if dial is None:
                return self._after("BUSY", Unreachable.BUSY)
            return [self._ring(dial, self._group_seconds(group.ring_seconds))]
        ringing = self._next_member()
        return ringing or self._after("BUSY", Unreachable.BUSY)

    def _next_member(self) -> list[Output]:
        """Ring the next free member of a hunt or cyclic group; nothing when none is
        left (or the group's no-answer forward is due).  The first one rung moves
        the cursor."""
        run = self.group
        assert run is not None
        group = run.group
        while run.queue:
            seconds = self._group_seconds(group.ring_seconds)
            if seconds < 1:
                return []
            member = run.queue.pop(0)
            if not self._free(member):
                continue
            dial = self._dial_string(self.lookups.endpoints(member))
            if dial is None:
                continue
            moved: list[Output] = []
            if run.first and group.strategy == CYCLIC:
                moved.append(CursorMoved(group.number, member))
            run.first = False
            return [*moved, self._ring(dial, seconds)]
        return []

    def _free(self, member: str) -> bool:
        """A group rings only free members: an ACD does not ring a busy agent, even one
        whose call waiting would let a second call ring."""
        return self.lookups.reach(member) is Reach.FREE

    def _group_seconds(self, ring_seconds: int) -> int:
        run = self.group
        if run is None or run.deadline is None:
            return ring_seconds
        return min(ring_seconds, round(run.deadline - self.clock.seconds()))

    def _ring(self, dial: str, seconds: int, watch: str | None = None) -> Ring:
        self.state = State.DIALLING
        self.dials.append(dial)
        shown = self.lookups.display(self.leg) or self.call.caller_name
        return Ring(dial, seconds, shown, watch)

    def _after(self, status: str | None, reason: Unreachable | None) -> list[Output]:
        """AFTER: the leg ended without a conversation; what follows?"""
        self.state = State.AFTER
        leg = self.leg
        self.legs.append((leg, status))
        following = after(leg, status, self.context) if self.context is not None else None
        group = leg.destination.group
        if following is None and group is not None:
            if group.overflow == OVERFLOW_BUSY:
                return self._done(status, None, reject=True)
            if self.context is not None:
                following = overflow(leg, self.context)
        if following is None:
            return self._done(status, reason)
        self.leg = following
        self.state = State.CHECK
        return self._check()

    def _done(self, status: str | None, reason: Unreachable | None, reject: bool = False) -> list[Output]:
        """DONE: tell who rang unanswered; then the busy tone of a group's overflow, or
        the offer for the final target."""
        self.state = State.DONE
        outputs: list[Output] = []
        if self.unanswered:
            told = replace(self.call, number=self.unanswered, group=self.unanswered_group)
            outputs.append(Unanswered(told))
        if reject:
            return [*outputs, Reject(), *self._finish(status, None)]
        destination = self.leg.destination
        offered = reason if destination.kind in ("line", "group") else None
        if offered is not None:
            final = replace(
                self.call,
                number=destination.number,
                forwarded_from=self.leg.chain,
                group=destination.kind == "group",
            )
            outputs.append(Offer(final, offered))
        return outputs + self._finish(status, offered)

    def _finish(self, status: str | None, offered: Unreachable | None) -> list[Output]:
        outcome = CallOutcome(self.call, status, tuple(self.legs), tuple(self.dials), offered)
        return [Finished(outcome)]

    # -- dial strings ----------------------------------------------------------

    def _dial_string(self, endpoints: list[str] | tuple[str, ...]) -> str | None:
        """The Dial() target list; every name in it was validated."""
        unique = list(dict.fromkeys(endpoints))
        if not unique or not all(ENDPOINT.match(e) for e in unique):
            return None
        return "&".join(f"PJSIP/{e}" for e in unique)

    def _external(self, number: str) -> str | None:
        return f"PJSIP/{number}@{self.trunk}" if NUMBER.match(number) else None
