"""Forwarding wired to the appliance: the directory, the settings (read on every
call, so a saved change applies to the next call), the PBX model, and the
feature codes that set and clear forwards from a phone.

Feature codes (``<target>`` an internal, group or external number):

======================  ==========  ==========  ==========
forward                 all calls   internal    external
======================  ==========  ==========  ==========
unconditional, set      ``*21<t>``  ``*22<t>``  ``*23<t>``
on busy, set            ``*67<t>``  ``*68<t>``  ``*69<t>``
on no answer, set       ``*61<t>``  ``*62<t>``  ``*63<t>``
clear                   ``#21`` …   ``#22`` …   ``#23`` …
======================  ==========  ==========  ==========

No answer rings 20 s unless ``*61<t>*<seconds>`` says otherwise.  ``#20``
clears every forward of the line.  The caller hears "call forwarding …
activated / de-activated", or "invalid".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from appliance import settings as keys
from appliance.busy import Reach
from appliance.devices import person_of
from appliance.dialplan import Call, CallSession, FeatureCodes
from appliance.directory import Directory, Group
from appliance.forwarding.prompts import prompts
from appliance.forwarding.records import (
    ALL,
    BUSY,
    DEFAULT_SECONDS,
    EXTERNAL,
    INTERNAL,
    NOANSWER,
    UNCONDITIONAL,
    Forward,
    ForwardError,
    Forwards,
)
from appliance.forwarding.rules import (
    Caller,
    Context,
    Destination,
    Leg,
    Policy,
    display_text,
    forwarder_forms,
    group_text,
    printable,
)
from appliance.metering import NO_METRICS, IMetrics
from appliance.numbers import EXTENSION, plan_from
from appliance.pbx import PBXModel, Presence, endpoint_of
from appliance.settings import Settings

log = Logger()

ASTERISK_NO_NAME = "unknown"
"""What AGI reports as ``agi_calleridname`` when the caller sent no name."""

SET_CODES: dict[str, tuple[str, str]] = {
    "*21": (UNCONDITIONAL, ALL),
    "*22": (UNCONDITIONAL, INTERNAL),
    "*23": (UNCONDITIONAL, EXTERNAL),
    "*67": (BUSY, ALL),
    "*68": (BUSY, INTERNAL),
    "*69": (BUSY, EXTERNAL),
    "*61": (NOANSWER, ALL),
    "*62": (NOANSWER, INTERNAL),
    "*63": (NOANSWER, EXTERNAL),
}
CLEAR_CODES: dict[str, tuple[str, str]] = {"#" + code[1:]: what for code, what in SET_CODES.items()}
CLEAR_ALL = "#20"
OWN_KEY = "*21"
"""``*21<own number>`` is the user's own forward BLF key (hint in the shipped dialplan)."""


class DirectoryNumbering:
    """Internal numbers: directory users (also by further numbers), groups, and
    the PBX's phone endpoints that the directory does not list (yet)."""

    def __init__(self, directory: Directory, pbx: PBXModel | None = None) -> None:
        self.directory = directory
        self.pbx = pbx

    def internal(self, number: str) -> Destination | None:
        user = self.directory.user(number)
        if user is not None:
            return Destination("line", user.extension, language=user.language)
        group = self.directory.group_by_number(number)
        if group is not None:
            return Destination("group", number, self.members(group), group=group)
        owner = self.directory.owner_of(number)
        if owner is not None:
            return Destination("line", owner.extension, language=owner.language)
        if self.pbx is not None and EXTENSION.match(number) and number in self.pbx.endpoints:
            return Destination("line", number)
        return None

    def members(self, group: Group) -> tuple[str, ...]:
        """A group's members in ring order: its own list, then the users who name it."""
        naming = [
            u.extension for u in self.directory.members_of(group.name) if u.extension not in group.members
        ]
        return (*group.members, *naming)


class Forwarding:
    """What `CallRouter` and the feature codes need; settings are read per call."""

    def __init__(
        self,
        forwards: Forwards,
        settings: Settings,
        directory: Directory,
        pbx: PBXModel | None = None,
        language: str = "de",
        busy_rule: Callable[[str], bool] | None = None,
        metrics: IMetrics = NO_METRICS,
        reach: Callable[[str], Reach] | None = None,
    ) -> None:
        self.metrics = metrics
        self.forwards = forwards
        self.busy_rule = busy_rule
        """The one busy rule (`appliance.callwaiting.CallWaiting.unavailable`)."""
        self.reach = reach
        """The same rule's answer (`CallWaiting.reach`): a group's member is free only when FREE."""
        self.settings = settings
        self.directory = directory
        self.pbx = pbx
        self.language = language
        self.numbering = DirectoryNumbering(directory, pbx)

    # -- calls ----------------------------------------------------------------

    def policy(self) -> Policy:
        get = self.settings.get
        plan = plan_from(get)
        return Policy(
            display=get(keys.FWD_DISPLAY),
            display_number=get(keys.FWD_DISPLAY_NUMBER),
            display_width=get(keys.FWD_DISPLAY_WIDTH),
            max_hops=get(keys.FWD_MAX_HOPS),
            breakthrough_users=frozenset(get(keys.FWD_BREAKTHROUGH_USERS)),
            breakthrough_groups=frozenset(get(keys.FWD_BREAKTHROUGH_GROUPS)),
            breakthrough_callerids=frozenset(plan.normalize(n) for n in get(keys.FWD_BREAKTHROUGH_CALLERIDS)),
            normalize=plan.normalize,
        )

    def caller(self, call: Call, blind_transfer: bool = False) -> Caller:
        """The caller's line is the endpoint of its channel: a phone cannot claim
        another line by sending another caller ID.  A channel that is no internal
        line (the trunk) is an external caller, whatever context it came through
        (a blindly transferred external call runs in the transferer's context)."""
        endpoint = self._person(endpoint_of(call.channel) or "")
        internal = self.numbering.internal(endpoint) if EXTENSION.match(endpoint) else None
        if internal is None or internal.kind != "line":
            return Caller("external", call.caller_num, call.caller_name, blind_transfer=blind_transfer)
        line = internal.number
        user = self.directory.user(line)
        groups = set(self.directory.groups_of(line))
        groups.update(user.groups if user else ())
        return Caller(
            "internal",
            call.caller_num,
            call.caller_name,
            line=line,
            groups=frozenset(groups),
            blind_transfer=blind_transfer,
        )

    def own_name(self, call: Call) -> str | None:
        """One name per person: an internal caller (known by its channel, never by
        the caller ID it sends) is shown by its directory name, as in the recall."""
        caller = self.caller(call)
        user = self.directory.user(caller.line) if caller.origin == "internal" and caller.line else None
        return printable(user.name) or None if user is not None else None

    def own_number(self, call: Call) -> str | None:
        """One number per person: an internal caller calling an internal number is
        shown by its line's number (the user's extension, whichever of their phones
        calls), so the callee's missed-call list and callback reach the person, not
        one phone.  Calls out keep what the endpoint and the trunk present."""
        if self.numbering.internal(call.number) is None:
            return None
        caller = self.caller(call)
        return caller.line if caller.origin == "internal" and caller.line else None

    def unavailable(self, number: str) -> bool:
        group = self.directory.group_by_number(number) if self.directory.user(number) is None else None
        if group is not None:
            # Busy for a group: every member is (a group never rings a member in a call).
            return not any(self._free(member) for member in self.numbering.members(group))
        if self.busy_rule is not None:
            return self.busy_rule(number)
        if self.pbx is None or not self.pbx.synced:
            return False
        presence = self.pbx.presence(number)
        if presence is Presence.LOGGED_OUT:
            return number in self.pbx.endpoints
        return presence in (Presence.BUSY, Presence.DND)

    def _free(self, member: str) -> bool:
        if self.reach is not None:
            return self.reach(member) is Reach.FREE
        return not self.unavailable(member)

    def context(self, call: Call, blind_transfer: bool = False) -> Context:
        return Context(
            caller=self.caller(call, blind_transfer),
            forwards=self.forwards.of,
            numbering=self.numbering,
            policy=self.policy(),
            unavailable=self.unavailable,
        )

    def display(self, leg: Leg, call: Call, policy: Policy) -> str | None:
        """The caller name the leg's target should see, or None for the caller's own:
        the forward display, else for a group ``<group name>: <caller>``.  The
        router asks this of every leg it is about to dial, so a leg a forward
        caused is reported here as a forward applied."""
        if leg.reason == "forwarded":
            self.metrics.forward_applied()
        if leg.display_for is None or not policy.display:
            return self.group_display(leg, call, policy)
        forwarder = self.directory.user(leg.display_for)
        language = leg.destination.language or (forwarder.language if forwarder else "") or self.language
        name = "" if call.caller_name == ASTERISK_NO_NAME else call.caller_name
        number = leg.display_for
        group = self.directory.group_by_number(number) if forwarder is None else None
        named = forwarder.name if forwarder else group.name if group else ""
        forms = forwarder_forms("" if policy.display_number else named, number)
        return display_text(language, forms, name, call.caller_num, policy.display_width)

    def group_display(self, leg: Leg, call: Call, policy: Policy) -> str | None:
        group = leg.destination.group
        if group is None or not self.settings.get(keys.GROUP_DISPLAY):
            return None
        first = self.directory.user(leg.destination.members[0]) if leg.destination.members else None
        language = (first.language if first else "") or self.language
        name = "" if call.caller_name == ASTERISK_NO_NAME else call.caller_name
        return group_text(language, group.name, name, call.caller_num, policy.display_width)

    # -- feature codes --------------------------------------------------------

    def register_codes(self, codes: FeatureCodes) -> None:
        for code in SET_CODES:
            codes.register(code, self.set_by_code)
        for code in CLEAR_CODES:
            codes.register(code, self.clear_by_code)
        codes.register(CLEAR_ALL, self.clear_by_code)

    def _person(self, endpoint: str) -> str:
        """A user's further device (softphone …) stands for the user's line."""
        return person_of(self.directory, endpoint)

    def _line_of(self, session: CallSession) -> str | None:
        endpoint = self._person(endpoint_of(session.env.get("agi_channel", "")) or "")
        return endpoint if EXTENSION.match(endpoint) else None

    def _language(self, line: str | None) -> str:
        user = self.directory.user(line) if line else None
        return (user.language if user else "") or self.language

    @inlineCallbacks
    def set_by_code(self, session: CallSession, code: str, rest: str) -> Any:
        line = self._line_of(session)
        language = self._language(line)
        kind, scope = SET_CODES[code]
        if code == OWN_KEY and line is not None and rest == line:
            # One's own BLF key (*21<own number>, from any of one's phones): its lamp is
            # lit by any unconditional forward, so pressing it clears them all.
            self.forwards.clear(line, UNCONDITIONAL)
            log.info("{line} cleared its unconditional forwards with its key", line=line)
            yield session.exec_("Playback", prompts(language, UNCONDITIONAL, "deactivated"))
            return "cleared"
        target, _, seconds = rest.partition("*")
        try:
            if line is None:
                raise ForwardError(f"{session.env.get('agi_channel')!r} is not a phone line")
            if seconds and (kind != NOANSWER or not seconds.isdigit()):
                raise ForwardError(f"{code}{rest}: '*{seconds}' is not a number of seconds here")
            forward = Forward(kind, target, scope, int(seconds) if seconds else DEFAULT_SECONDS)
            self.forwards.set(line, forward)
        except ForwardError as error:
            log.info("feature code {code}{rest} refused: {error}", code=code, rest=rest, error=error)
            yield session.exec_("Playback", prompts(language, "invalid"))
            return "invalid"
        log.info("{line} set a {kind} forward for {scope} calls to {target}", line=line, **_fields(forward))
        yield session.exec_("Playback", prompts(language, kind, "activated"))
        return "set"

    @inlineCallbacks
    def clear_by_code(self, session: CallSession, code: str, rest: str) -> Any:
        line = self._line_of(session)
        language = self._language(line)
        if line is None or rest:
            yield session.exec_("Playback", prompts(language, "invalid"))
            return "invalid"
        kind: str | None
        scope: str | None
        kind, scope = CLEAR_CODES.get(code, (None, None))
        self.forwards.clear(line, kind, scope)
        log.info("{line} cleared {what} forwards", line=line, what=f"{kind}/{scope}" if kind else "all")
        yield session.exec_("Playback", prompts(language, kind or "all", "deactivated"))
        return "cleared"


def _fields(forward: Forward) -> dict[str, str]:
    return {"kind": forward.kind, "scope": forward.scope, "target": forward.target}
