"""Call waiting ("Anklopfen"): each user's switch, and the busy rule of
`appliance.busy` applied to the live PBX model for the router and forwarding.

The switch is kept per user in the store (namespace ``call_waiting``); a user
who never chose follows the setting CW_DEFAULT.  Users switch it on the phone
with ``*43`` / ``#43`` (the GSM codes), on their web page, or the admin does.

A waiting call (the user is in a call, call waiting on) rings; when CW_RING_TIME
is over and the user is still in the other call, `WaitingWatch` hangs the
ringing leg up over AMI with cause 17 (user busy): the phone sees a CANCEL,
Dial ends, and the router treats the call as busy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from appliance import busy
from appliance import settings as keys
from appliance.busy import Reach
from appliance.callback import prompts
from appliance.devices import Devices
from appliance.pbx import PBXModel, Presence, endpoint_of
from appliance.settings import Settings
from appliance.store import IKeyValueStore

log = Logger()

NAMESPACE = "call_waiting"
ON_CODE = "*43"
OFF_CODE = "#43"
USER_BUSY = 17
"""Q.850 cause "user busy": Dial counts a leg hung up with it as BUSY."""

Hangup = Callable[[str, int], Deferred[Any]]
"""hangup(channel, cause) over AMI."""


class CallWaiting:
    """Per-user switch and the busy rule over the PBX model."""

    def __init__(
        self,
        store: IKeyValueStore,
        settings: Settings,
        pbx: PBXModel,
        clock: IReactorTime,
        hangup: Hangup,
        language_of: Callable[[str], str] = lambda _line: "de",
        devices: Devices | None = None,
    ) -> None:
        self.devices = devices or Devices(None, pbx)
        """A user's switch and busy state cover all of their phones."""
        self.store = store
        self.settings = settings
        self.pbx = pbx
        self.clock = clock
        self.hangup = hangup
        self.language_of = language_of

    # -- the switch ----------------------------------------------------------

    def enabled(self, line: str) -> bool:
        chosen = self.store.get(NAMESPACE, line)
        if isinstance(chosen, bool):
            return chosen
        return self.settings.get(keys.CW_DEFAULT)

    def choice(self, line: str) -> bool | None:
        """The user's own choice, None when the default applies."""
        chosen = self.store.get(NAMESPACE, line)
        return chosen if isinstance(chosen, bool) else None

    def choose(self, line: str, on: bool | None) -> None:
        """Switch call waiting for ``line``; None returns it to CW_DEFAULT."""
        if on is None:
            self.store.delete(NAMESPACE, line)
        else:
            self.store.put(NAMESPACE, line, on)
        log.info("call waiting of {line}: {state}", line=line, state="default" if on is None else on)

    # -- the rule ------------------------------------------------------------

    def reach(self, number: str, leaving: str | None = None) -> Reach:
        """What a call to ``number`` meets now; FREE while the model is not synced
        (then Dial decides) and for numbers that are no PBX endpoint.  A user with
        several phones is one person: busy when any of them is in a call.

        ``leaving`` is the channel that blindly transferred this call: Asterisk
        hangs it up as the transferred call re-enters the dialplan, and its
        Hangup and device state events race our routing. If the user has no
        other call, they are free."""
        if not self.pbx.synced or not self.devices.known(number):
            return Reach.FREE
        person = self.devices.person(number)
        presence = self.devices.presence(person)
        if presence is Presence.BUSY and leaving and self._only_channel(person, leaving):
            presence = Presence.IDLE
        return busy.reach(presence, self.enabled(person))

    def _only_channel(self, person: str, name: str) -> bool:
        return all(c.name == name for c in self.devices.channels(person))

    def unavailable(self, number: str) -> bool:
        return busy.unavailable(self.reach(number))

    def watch(
        self, caller_uniqueid: str, number: str, ring_seconds: int, leaving: str | None = None
    ) -> WaitingWatch | None:
        """Start the waiting time for a call about to ring ``number``, if it waits."""
        found = self.reach(number, leaving)
        limit = busy.waiting_limit(found, ring_seconds, self.settings.get(keys.CW_RING_TIME))
        if limit is None:
            return None
        return WaitingWatch(self, caller_uniqueid, number, limit)

    # -- feature codes -------------------------------------------------------

    def register_codes(self, codes: Any) -> None:
        codes.register(ON_CODE, self.switch_by_code)
        codes.register(OFF_CODE, self.switch_by_code)

    @inlineCallbacks
    def switch_by_code(self, session: Any, code: str, rest: str) -> Any:
        """``*43`` on, ``#43`` off, for the calling line (its PJSIP endpoint)."""
        endpoint = endpoint_of(session.env.get("agi_channel", "")) or ""
        line = self.devices.person(endpoint)
        language = self.language_of(line)
        yield session.answer()
        if rest or endpoint not in self.pbx.endpoints:
            yield session.streamFile(prompts.prompt(language, "cc-refused"))
            return None
        on = code == ON_CODE
        self.choose(line, on)
        yield session.streamFile(prompts.prompt(language, "cw-on" if on else "cw-off"))
        return on


class WaitingWatch:
    """One waiting call: at the end of its waiting time, if the user is still in
    the other call, hang the ringing leg up as busy."""

    def __init__(self, waiting: CallWaiting, caller_uniqueid: str, number: str, seconds: int) -> None:
        self.waiting = waiting
        self.caller_uniqueid = caller_uniqueid
        self.number = number
        self.seconds = seconds
        self.cut = False
        """The leg was ended as busy: the call counts as busy, whatever Dial says."""
        self._timer: IDelayedCall | None = waiting.clock.callLater(seconds, self._expired)

    def _expired(self) -> None:
        self._timer = None
        devices = self.waiting.devices
        if not busy.still_busy(devices.presence(self.number)):
            return
        legs = [
            c
            for c in devices.channels(self.number)
            if c.dialed_by == self.caller_uniqueid and c.answered is None
        ]
        if not legs:
            return
        self.cut = True
        for leg in legs:
            log.info(
                "waiting call to {number} unanswered after {seconds}s while in a call: busy",
                number=self.number,
                seconds=self.seconds,
            )
            d = self.waiting.hangup(leg.name, USER_BUSY)
            d.addErrback(lambda f: log.warn("hangup of the waiting leg failed: {why}", why=f.value))

    def stop(self) -> bool:
        """Dial ended; returns whether the call was cut as busy."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return self.cut
