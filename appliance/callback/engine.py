"""The callback engine: a pure state machine over all open callback requests.

Inputs are method calls (a request, a cancellation, a presence change from the
PBX model, the outcome of a recall, a resync) and the injected clock; outputs
go to one `IRecallOutputs` collaborator (originate a recall, save or remove a
request), so tests can assert the exact list of outputs.  Nothing here touches
a socket or reads the wall clock.

Each request is in one of three states::

    WAITING ──target free, requester free, due──▶ RINGING ──requester answered──▶ CONNECTING
       ▲                                             │                              │
       └──────requester busy / no answer (retry)─────┘◀──target busy / no answer─────┘
                                                                  target answered or
                                                                  requester gave up ──▶ done

Rules: one recall at a time per target and per requester; requests for one
target are served first come, first served (a requester who is not free keeps
its place and the next one is served); a request expires ``timeout`` seconds
after it was made; a busy or unanswering requester is retried after
``retry_delay(attempts)`` seconds, at most ``max_attempts`` times.

A request may name a group (seed 003: call centres, queues): it is made when
every member was busy, and it is due when a member is free.  The recall rings
the requester, then the member that became free first; each member serves one
recall at a time, so several requesters of one group are served in request
order, one free member each.  A member who is free but did not answer is passed
over until it is seen in a call again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from appliance.pbx import Presence

log = Logger()

MAX_PER_REQUESTER = 5
"""Open requests one requester may hold (a phone cannot flood the queue)."""
MAX_PER_TARGET = 20
MAX_ATTEMPTS = 5
"""Recalls that the requester did not take before the request is dropped."""
RECALL_GUARD_SECONDS = 120.0
"""A recall whose outcome never arrives (AMI link lost) is given up after its
ring time plus this long, and the request waits again."""
LOST_RETRY_SECONDS = 30.0
"""A recall lost with the PBX link is tried again on the next resync, or after
this long if no resync comes first."""


class State(enum.Enum):
    WAITING = "waiting"
    RINGING = "ringing"
    """The recall rings at the requester."""
    CONNECTING = "connecting"
    """The requester answered; the target is dialled (or talking)."""


class Kind(enum.Enum):
    BUSY = "busy"
    """Call completion on busy / logged out / DND: recall as soon as the target is free."""
    CCNR = "ccnr"
    """Call completion on no reply: recall after the target's next call ends."""


class Outcome(enum.Enum):
    """The answer to a new request."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """The requester already waits for this target; the request keeps its place."""
    LIMIT = "limit"
    INVALID = "invalid"


class RecallResult(enum.Enum):
    """How one recall went, as the Asterisk side reports it."""

    REQUESTER_ANSWERED = "requester_answered"
    REQUESTER_BUSY = "requester_busy"
    REQUESTER_NO_ANSWER = "requester_no_answer"
    FAILED = "failed"
    TARGET_ANSWERED = "target_answered"
    TARGET_UNREACHABLE = "target_unreachable"
    """The target was busy again or did not answer: the request waits again."""
    REQUESTER_HUNG_UP = "requester_hung_up"
    """The requester answered and hung up before the target answered: done."""
    NOTIFIED = "notified"
    """The requester wanted a mail instead of a recall, and got it: done."""
    LOST = "lost"
    """The recall never reached Asterisk (AMI link down, Asterisk shutting down):
    nobody's fault, so the attempt does not count; tried again on the next resync."""


@dataclass(frozen=True)
class Request:
    """One open callback request; ``id`` is ``<requester>:<target>``."""

    requester: str
    target: str
    created: float
    kind: Kind = Kind.BUSY
    origin: str = "internal"
    """``internal``: the requester is an extension; ``external``: a number on the trunk."""
    state: State = State.WAITING
    attempts: int = 0
    not_before: float = 0.0
    armed: bool = True
    """CCNR requests arm when the target is seen in a call."""
    state_since: float = 0.0
    lost: bool = False
    """The last recall was lost with the PBX link: the next resync retries at once."""
    group: bool = False
    """``target`` is a group's number: any of its members may take the recall."""
    member: str = ""
    """For a group: the member the current recall dials (RINGING, CONNECTING)."""
    passed: str = ""
    """For a group: the member that was free and did not answer the last recall;
    not dialled again until it has been in a call."""

    @property
    def id(self) -> str:
        return request_id(self.requester, self.target)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Request | None:
        try:
            return cls(
                requester=str(data["requester"]),
                target=str(data["target"]),
                created=float(data["created"]),
                kind=Kind(data.get("kind", "busy")),
                origin=str(data.get("origin", "internal")),
                state=State(data.get("state", "waiting")),
                attempts=int(data.get("attempts", 0)),
                not_before=float(data.get("not_before", 0.0)),
                armed=bool(data.get("armed", True)),
                state_since=float(data.get("state_since", 0.0)),
                lost=bool(data.get("lost", False)),
                group=bool(data.get("group", False)),
                member=str(data.get("member", "")),
                passed=str(data.get("passed", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def request_id(requester: str, target: str) -> str:
    return f"{requester}:{target}"


@dataclass(frozen=True)
class Recall:
    """What to originate: ring ``requester`` ``wait_seconds``, then dial ``target``."""

    request_id: str
    requester: str
    target: str
    origin: str
    attempt: int
    wait_seconds: int
    group: str = ""
    """For a group request: the group's number (``target`` is the member dialled)."""


@dataclass(frozen=True)
class EngineSettings:
    """The live settings the engine obeys (read on every decision)."""

    enabled: bool = True
    timeout_seconds: float = 3600.0
    wait_seconds: int = 20


class IRecallOutputs(Interface):
    """Where the engine's decisions go."""

    def originate(recall: Recall) -> None:  # noqa: N805
        """Ring the requester; report back with `CallbackEngine.recall_result`."""

    def saved(request: Request) -> None:  # noqa: N805
        """Store the request (new or changed) durably."""

    def removed(request: Request, why: str) -> None:  # noqa: N805
        """Forget the request: ``done``, ``notified``, ``expired``, ``cancelled``, ``attempts``."""


def default_retry_delay(attempts: int) -> float:
    """30 s after the first unanswered recall, then 60, 120 … at most 5 minutes."""
    return float(min(30 * 2 ** max(attempts - 1, 0), 300))


PresenceOf = Callable[[str], Presence]

MembersOf = Callable[[str], Sequence[str]]
"""The members of the group whose number this is, in order; empty for anything else."""


def no_groups(_number: str) -> Sequence[str]:
    return ()


class CallbackEngine:
    """All open requests and the rules above; time from ``clock``."""

    def __init__(
        self,
        clock: IReactorTime,
        outputs: IRecallOutputs,
        presence: PresenceOf,
        settings: Callable[[], EngineSettings] = EngineSettings,
        retry_delay: Callable[[int], float] = default_retry_delay,
        max_per_requester: int = MAX_PER_REQUESTER,
        max_per_target: int = MAX_PER_TARGET,
        max_attempts: int = MAX_ATTEMPTS,
        members: MembersOf = no_groups,
        callee_presence: PresenceOf | None = None,
    ) -> None:
        self.clock = clock
        self.members = members
        self.outputs = outputs
        self.presence = presence
        self.callee_presence = callee_presence or presence
        """A target's line as a recall sees it: free once its calls are ending
        (it is dialled only after the requester answers); requesters by `presence`."""
        self.settings = settings
        self.retry_delay = retry_delay
        self.max_per_requester = max_per_requester
        self.max_per_target = max_per_target
        self.max_attempts = max_attempts
        self._requests: dict[str, Request] = {}
        self._order: dict[str, int] = {}
        self._next = 0
        self._timer: IDelayedCall | None = None
        self._free_since: dict[str, float] = {}
        """When a line was last seen becoming free (which group member was first)."""

    # -- queries ---------------------------------------------------------------

    def pending(self, requester: str | None = None, target: str | None = None) -> list[Request]:
        """Open requests, oldest first (the order they are served in)."""
        found = [
            r
            for r in self._requests.values()
            if (requester is None or r.requester == requester) and (target is None or r.target == target)
        ]
        return sorted(found, key=lambda r: (r.created, self._order[r.id]))

    def get(self, rid: str) -> Request | None:
        return self._requests.get(rid)

    # -- inputs ----------------------------------------------------------------

    def load(self, requests: Iterable[Request]) -> None:
        """Take requests back from the store after a restart: a recall that was
        under way when the appliance stopped is lost, so those wait again."""
        now = self.clock.seconds()
        for request in sorted(requests, key=lambda r: r.created):
            if request.state is not State.WAITING:
                request = replace(request, state=State.WAITING, state_since=now, member="")
                self.outputs.saved(request)
            self._add(request)
        self.check()

    def request(
        self, requester: str, target: str, kind: Kind = Kind.BUSY, origin: str = "internal"
    ) -> Outcome:
        if not requester or not target or requester == target:
            return Outcome.INVALID
        rid = request_id(requester, target)
        if rid in self._requests:
            return Outcome.DUPLICATE
        if len(self.pending(requester=requester)) >= self.max_per_requester:
            return Outcome.LIMIT
        if len(self.pending(target=target)) >= self.max_per_target:
            return Outcome.LIMIT
        members = self.members(target)
        group = bool(members)
        if group and all(member == requester for member in members):
            return Outcome.INVALID
        if group:
            kind = Kind.BUSY  # a group is served by whichever member is free next
        now = self.clock.seconds()
        armed = kind is Kind.BUSY or self.presence(target) is not Presence.IDLE
        request = Request(requester, target, now, kind, origin, armed=armed, state_since=now, group=group)
        self._add(request)
        self.outputs.saved(request)
        self.check()
        return Outcome.ACCEPTED

    def cancel(self, requester: str, target: str | None = None) -> list[Request]:
        """Cancel the requester's request for ``target``, or all of theirs."""
        gone = self.pending(requester=requester, target=target)
        for request in gone:
            self._remove(request, "cancelled")
        self.check()
        return gone

    def cancel_id(self, rid: str) -> bool:
        request = self._requests.get(rid)
        if request is None:
            return False
        self._remove(request, "cancelled")
        self.check()
        return True

    def presence_changed(self, name: str, old: Presence, new: Presence) -> None:
        """The PBX model saw ``name`` change; arm CCNR requests, serve free targets."""
        if new is Presence.BUSY:
            for request in self.pending(target=name):
                if not request.armed:
                    self._update(replace(request, armed=True))
            for request in list(self._requests.values()):
                if request.passed == name:
                    self._update(replace(request, passed=""))
        if new is not Presence.IDLE:
            self._free_since.pop(name, None)
        elif old is not Presence.IDLE:
            self._free_since[name] = self.clock.seconds()
            self.check()

    def calls_ending(self, name: str) -> None:
        """Every call on ``name``'s lines is ending (our call route let it go):
        as a target it is free now, before Asterisk's device state says so."""
        if self.callee_presence(name) is Presence.IDLE:
            self._free_since.setdefault(name, self.clock.seconds())
            self.check()

    def resynced(self) -> None:
        """The PBX model was rebuilt (AMI reconnect, Asterisk restart): recheck all.
        A connected recall whose requester is no longer in a call ended unseen; a
        recall ringing at an internal requester whose line is not ringing died with
        the old Asterisk, and one lost with the link is due again at once."""
        now = self.clock.seconds()
        for request in self.pending():
            in_call = self.presence(request.requester) in (Presence.BUSY, Presence.RINGING)
            if request.state is State.CONNECTING and not in_call:
                self._remove(request, "done")
            elif request.state is State.RINGING and request.origin == "internal" and not in_call:
                log.info("recall {rid} vanished with the PBX link; waiting again", rid=request.id)
                self._update(
                    replace(request, state=State.WAITING, state_since=now, not_before=0.0, member="")
                )
            elif request.lost:
                self._update(replace(request, not_before=0.0, lost=False))
        self.check()

    def recall_result(self, rid: str, attempt: int, result: RecallResult) -> None:
        request = self._requests.get(rid)
        if request is None or request.attempts != attempt:
            log.info("stale recall result {result} for {rid}", result=result.value, rid=rid)
            return
        now = self.clock.seconds()
        if result is RecallResult.REQUESTER_ANSWERED:
            if request.state is State.RINGING:
                self._update(replace(request, state=State.CONNECTING, state_since=now))
        elif result in (RecallResult.TARGET_ANSWERED, RecallResult.REQUESTER_HUNG_UP):
            self._remove(request, "done")
        elif result is RecallResult.NOTIFIED:
            self._remove(request, "notified")
        elif result is RecallResult.LOST:
            self._update(
                replace(
                    request,
                    state=State.WAITING,
                    state_since=now,
                    attempts=attempt - 1,
                    not_before=now + LOST_RETRY_SECONDS,
                    lost=True,
                    member="",
                )
            )
        elif result is RecallResult.TARGET_UNREACHABLE:
            # Not the requester's fault: keep the place, no retry delay.  A target
            # that is free but did not answer is away: wait for its next call (for a
            # group: another member, or this one after its next call).
            away = self.presence(request.member or request.target) is Presence.IDLE
            self._update(
                replace(
                    request,
                    state=State.WAITING,
                    state_since=now,
                    attempts=attempt - 1,
                    armed=request.group or not away,
                    member="",
                    passed=request.member if request.group and away else "",
                )
            )
        elif request.attempts >= self.max_attempts:
            self._remove(request, "attempts")
        else:
            delay = self.retry_delay(request.attempts)
            self._update(
                replace(request, state=State.WAITING, state_since=now, not_before=now + delay, member="")
            )
        self.check()

    # -- the rules -------------------------------------------------------------

    def check(self) -> None:
        """Expire what is old, give up lost recalls, start every recall now due."""
        now = self.clock.seconds()
        settings = self.settings()
        for request in self.pending():
            if now >= request.created + settings.timeout_seconds and request.state is State.WAITING:
                self._remove(request, "expired")
            elif request.state is not State.WAITING and now >= self._guard_deadline(request, settings):
                log.warn("recall {rid} got no outcome; waiting again", rid=request.id)
                self._update(replace(request, state=State.WAITING, state_since=now, member=""))
        if settings.enabled:
            for request, callee in self._due(now):
                self._start(request, callee, settings, now)
        self._schedule(now, settings)

    def _guard_deadline(self, request: Request, settings: EngineSettings) -> float:
        if request.state is State.CONNECTING:
            return float("inf")  # the conversation may last; its end reports back
        return request.state_since + settings.wait_seconds + RECALL_GUARD_SECONDS

    def _due(self, now: float) -> list[tuple[Request, str]]:
        """The requests to recall now, oldest first, each with the line it dials."""
        recalling = [r for r in self._requests.values() if r.state is not State.WAITING]
        busy_targets = {r.member or r.target for r in recalling}
        busy_requesters = {r.requester for r in recalling}
        due = []
        for request in self.pending():
            if request.state is not State.WAITING or not request.armed or now < request.not_before:
                continue
            if request.target in busy_targets or request.requester in busy_requesters:
                continue
            callee = self._callee(request, busy_targets)
            if callee is None:
                continue
            if request.origin == "internal" and self.presence(request.requester) is not Presence.IDLE:
                continue
            busy_targets.add(callee)
            busy_requesters.add(request.requester)
            due.append((request, callee))
        return due

    def _callee(self, request: Request, taken: set[str]) -> str | None:
        """The line a recall would dial now: the target when it is free; for a
        group, the free member (not another recall's, not the requester) that
        became free first."""
        if not request.group:
            return request.target if self.callee_presence(request.target) is Presence.IDLE else None
        free = [
            member
            for member in self.members(request.target)
            if member not in taken
            and member not in (request.requester, request.passed)
            and self.callee_presence(member) is Presence.IDLE
        ]
        return min(free, key=lambda m: self._free_since.get(m, float("-inf")), default=None)

    def _start(self, request: Request, callee: str, settings: EngineSettings, now: float) -> None:
        started = replace(
            request,
            state=State.RINGING,
            state_since=now,
            attempts=request.attempts + 1,
            member=callee if request.group else "",
        )
        self._requests[started.id] = started
        # The recall first, then its record: the requester hears it a store write sooner.
        self.outputs.originate(
            Recall(
                started.id,
                started.requester,
                callee,
                started.origin,
                started.attempts,
                settings.wait_seconds,
                group=started.target if started.group else "",
            )
        )
        self.outputs.saved(started)

    def _schedule(self, now: float, settings: EngineSettings) -> None:
        """One timer for the next moment something happens without an event."""
        moments = []
        for request in self._requests.values():
            if request.state is State.WAITING:
                moments.append(request.created + settings.timeout_seconds)
                if request.not_before > now:
                    moments.append(request.not_before)
            else:
                moments.append(self._guard_deadline(request, settings))
        when = min((m for m in moments if m != float("inf")), default=None)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if when is not None:
            self._timer = self.clock.callLater(max(when - now, 0.0), self.check)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- bookkeeping -----------------------------------------------------------

    def _add(self, request: Request) -> None:
        self._requests[request.id] = request
        self._order[request.id] = self._next
        self._next += 1

    def _update(self, request: Request) -> None:
        self._requests[request.id] = request
        self.outputs.saved(request)

    def _remove(self, request: Request, why: str) -> None:
        self._requests.pop(request.id, None)
        self._order.pop(request.id, None)
        log.info(
            "callback {requester} -> {target}: {why}",
            requester=request.requester,
            target=request.target,
            why=why,
        )
        self.outputs.removed(request, why)
