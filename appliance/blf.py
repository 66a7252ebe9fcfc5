"""BLF keys: each user's do-not-disturb, unconditional forward and pending
callback requests as Asterisk custom device states, so a phone's busy lamp
field key subscribed to ``*78<ext>``, ``*21<ext>`` or ``*39<ext>`` lights
while the state is on (hints in ``asterisk/appliance.conf``); a scheduled
forward lights the key only inside its schedule.  A group has the forward
lamp only: ``*21<group number>`` lights while the group's unconditional
forward applies (one number, one destination, so the device name is
unambiguous).

The lamps follow the appliance's own records (the forward and callback store
namespaces, the DND presence in the PBX model), so a change by feature code,
web page or API lights the key alike.  After every PBX resync (each AMI
(re)connection, e.g. after an Asterisk restart) all lamps are published again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from appliance.directory import GROUPS
from appliance.forwarding.records import NAMESPACE as FORWARDS
from appliance.forwarding.records import UNCONDITIONAL, Forward
from appliance.forwarding.scheduled import NAMESPACE as SCHEDULES
from appliance.numbers import EXTENSION
from appliance.pbx import Change as PBXChange
from appliance.pbx import EndpointChanged, PBXModel, Resynced
from appliance.store import Change, IKeyValueStore

log = Logger()

CALLBACKS = "callbacks"
"""The callback service's store namespace; keys are ``<requester>:<target>``."""

DND = "DND"
FORWARD = "CFU"
CALLBACK = "CB"
LAMPS = (DND, FORWARD, CALLBACK)

ON = "INUSE"
OFF = "NOT_INUSE"

RECHECK_SECONDS = 60.0
"""How soon a lamp follows a forward's schedule opening or closing."""


def device(lamp: str, extension: str) -> str:
    """The custom device a hint of the shipped dialplan watches."""
    return f"Custom:APPLIANCE_{lamp}_{extension}"


def lamp_states(dnd: bool, forward: bool, callback: bool) -> dict[str, str]:
    """Device state per lamp kind for one user."""
    return {
        DND: ON if dnd else OFF,
        FORWARD: ON if forward else OFF,
        CALLBACK: ON if callback else OFF,
    }


class AMI(Protocol):
    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]: ...


class Lamps:
    """Which device states were last published, so only changes go out."""

    def __init__(self) -> None:
        self.published: dict[str, str] = {}

    def changes(self, extension: str, states: dict[str, str]) -> list[tuple[str, str]]:
        """(device, state) pairs of ``extension`` that differ from what was published."""
        out = []
        for lamp, state in states.items():
            name = device(lamp, extension)
            if self.published.get(name) != state:
                out.append((name, state))
        return out

    def forget(self) -> None:
        """Asterisk may have lost every state: publish all again."""
        self.published.clear()


class BLFService(Service):
    """Publishes lamp states over AMI whenever a record behind them changes."""

    def __init__(
        self,
        ami: AMI,
        pbx: PBXModel,
        store: IKeyValueStore,
        forwards: Callable[[str], Sequence[Forward]],
        users: Callable[[], Iterable[str]],
        clock: IReactorTime,
        recheck_seconds: float = RECHECK_SECONDS,
        groups: Callable[[], AbstractSet[str]] = frozenset,
    ) -> None:
        """``forwards(ext)``: the forwards that apply now (schedules honoured);
        ``groups()``: the group numbers now (`Directory.group_numbers`)."""
        self.ami = ami
        self.pbx = pbx
        self.store = store
        self.forwards = forwards
        self.users = users
        self.groups = groups
        self.clock = clock
        self.recheck_seconds = recheck_seconds
        self.lamps = Lamps()
        self._undo: list[Callable[[], None]] = []
        self._recheck: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._undo = [self.pbx.subscribe(self._pbx_changed), self.store.subscribe(self._store_changed)]
        self._recheck = LoopingCall(self.recheck)
        self._recheck.clock = self.clock
        self._recheck.start(self.recheck_seconds, now=False)

    def stopService(self) -> Any:
        for undo in self._undo:
            undo()
        self._undo = []
        if self._recheck is not None and self._recheck.running:
            self._recheck.stop()
        return super().stopService()

    # -- the records behind the lamps ------------------------------------------

    def states(self, extension: str) -> dict[str, str]:
        forward = any(f.kind == UNCONDITIONAL and f.enabled for f in self.forwards(extension))
        if extension in self.groups():
            return {FORWARD: ON if forward else OFF}
        callback = any(key.split(":", 1)[0] == extension for key, _ in self.store.items(CALLBACKS))
        return lamp_states(self.pbx.endpoint(extension).dnd, forward, callback)

    def known(self) -> set[str]:
        """Every number that may have a lamp: users, groups, PBX lines, records."""
        names = set(self.users()) | set(self.groups()) | set(self.pbx.endpoints)
        names |= {key for key, _ in self.store.items(FORWARDS)}
        names |= {key.split(":", 1)[0] for key, _ in self.store.items(CALLBACKS)}
        return {name for name in names if EXTENSION.match(name)}

    # -- inputs -------------------------------------------------------------------

    def _pbx_changed(self, change: PBXChange) -> None:
        if isinstance(change, Resynced):
            self.republish()
        elif isinstance(change, EndpointChanged) and change.old.dnd != change.new.dnd:
            self.update(change.new.name)

    def _store_changed(self, change: Change) -> None:
        if change.namespace in (FORWARDS, SCHEDULES):
            self.update(change.key)
        elif change.namespace == CALLBACKS:
            self.update(change.key.split(":", 1)[0])
        elif change.namespace == GROUPS:
            # A new or renumbered group's lamp shows its state from the start.
            for record in (change.old, change.new):
                number = record.get("number") if isinstance(record, dict) else None
                if isinstance(number, str):
                    self.update(number)

    # -- outputs ------------------------------------------------------------------

    def republish(self) -> None:
        """Publish every lamp again (after a resync Asterisk may have lost them)."""
        self.lamps.forget()
        for extension in sorted(self.known()):
            self.update(extension)

    def recheck(self) -> None:
        """A schedule's window may have opened or closed: send what changed since."""
        if self.pbx.synced:
            for extension in sorted(self.known()):
                self.update(extension)

    def update(self, extension: str) -> None:
        if not EXTENSION.match(extension):
            return
        for name, state in self.lamps.changes(extension, self.states(extension)):
            self._publish(name, state)

    def _publish(self, name: str, state: str) -> None:
        self.lamps.published[name] = state
        d = self.ami.sendAction("Setvar", Variable=f"DEVICE_STATE({name})", Value=state)

        def failed(failure: Any) -> None:
            # Not published: the next resync (AMI back) sends it again.
            if self.lamps.published.get(name) == state:
                del self.lamps.published[name]
            log.warn(
                "BLF {device} → {state} not published: {why}",
                device=name,
                state=state,
                why=failure.getErrorMessage(),
            )

        d.addErrback(failed)
