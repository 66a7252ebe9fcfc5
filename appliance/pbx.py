"""A live model of the PBX, fed by AMI: who is logged in, busy, ringing, on DND,
and which channels make up which call.

Features ask this model and subscribe to its changes; they never parse AMI
themselves.  The model is pure: `PBXModel.handle` takes one AMI message,
`PBXModel.resync` takes the answers of the three list actions.  `PBXService`
wires it to the AMI link and resyncs on every (re)connection, so a restarted
Asterisk leaves no stale state behind.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from appliance.asterisk.ami import AMIActionError, AMIConnectionLost, AMINotConnected
from appliance.observers import Observers

log = Logger()

Message = Mapping[str, str]
_CHANNEL_SUFFIX = re.compile(r"[0-9a-f]{8}")


class DeviceState(enum.Enum):
    """Asterisk's device state of an endpoint, as AMI names it."""

    UNKNOWN = "UNKNOWN"
    NOT_INUSE = "NOT_INUSE"
    INUSE = "INUSE"
    BUSY = "BUSY"
    INVALID = "INVALID"
    UNAVAILABLE = "UNAVAILABLE"
    RINGING = "RINGING"
    RINGINUSE = "RINGINUSE"
    ONHOLD = "ONHOLD"

    @classmethod
    def parse(cls, raw: str | None) -> DeviceState:
        try:
            return cls((raw or "").strip().upper())
        except ValueError:
            return cls.UNKNOWN


class Presence(enum.Enum):
    """What a caller would meet at this endpoint, in the order features ask."""

    LOGGED_OUT = "logged_out"
    DND = "dnd"
    BUSY = "busy"
    RINGING = "ringing"
    IDLE = "idle"


BUSY_STATES = frozenset({DeviceState.INUSE, DeviceState.BUSY, DeviceState.RINGINUSE, DeviceState.ONHOLD})


@dataclass(frozen=True)
class Endpoint:
    """One phone line (a PJSIP endpoint / AOR of the same name)."""

    name: str
    device: DeviceState = DeviceState.UNKNOWN
    contacts: frozenset[str] = frozenset()
    dnd: bool = False
    calls_ending: bool = False
    """Every channel of this line is one our call route has let go (see
    `PBXModel.channel_ending`): Asterisk still counts the line in use for the
    few milliseconds it needs to hang up, but no call is left on it."""

    @property
    def registered(self) -> bool:
        return bool(self.contacts)

    @property
    def in_call(self) -> bool:
        """Asterisk's device state says so (the strict view: who may be rung now)."""
        return self.device in BUSY_STATES

    @property
    def call_over(self) -> bool:
        """In a call by the device state, but each of its calls is ending: a
        callback may start for it (its line is dialled only once the requester
        answers), though nothing may ring it yet."""
        return self.in_call and self.calls_ending

    @property
    def presence(self) -> Presence:
        if not self.contacts:
            return Presence.LOGGED_OUT
        if self.dnd:
            return Presence.DND
        if self.in_call:
            return Presence.BUSY
        if self.device is DeviceState.RINGING:
            return Presence.RINGING
        return Presence.IDLE


@dataclass(frozen=True)
class Channel:
    """One leg of a call."""

    name: str
    uniqueid: str
    linkedid: str
    state: str
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    exten: str = ""
    context: str = ""
    created: float = 0.0
    answered: float | None = None
    dialed_by: str | None = None
    dial_status: str | None = None
    picked_up_by: str | None = None
    """The channel that picked this ringing leg up (AMI ``Pickup``)."""

    @property
    def endpoint(self) -> str | None:
        return endpoint_of(self.name)


@dataclass(frozen=True)
class EndpointChanged:
    old: Endpoint
    new: Endpoint


@dataclass(frozen=True)
class ChannelChanged:
    """A channel was created, changed state, or (``hungup``) went away."""

    channel: Channel
    hungup: bool = False
    cause: str = ""


@dataclass(frozen=True)
class Resynced:
    """The model was rebuilt from Asterisk's lists; listeners may recheck all."""


Change = EndpointChanged | ChannelChanged | Resynced


def endpoint_of(name: str) -> str | None:
    """``PJSIP/200-0000001`` and ``PJSIP/200`` belong to endpoint ``200``."""
    tech, sep, rest = name.partition("/")
    if not sep or tech.upper() != "PJSIP" or not rest:
        return None
    base, dash, suffix = rest.rpartition("-")
    if dash and base and _CHANNEL_SUFFIX.fullmatch(suffix):
        return base
    return rest


def _unknown(value: str | None) -> str:
    return "" if value in (None, "<unknown>") else str(value)


@dataclass
class PBXModel:
    """The state; mutate only through `handle` and `resync`."""

    clock: IReactorTime
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    synced: bool = False
    ending: set[str] = field(default_factory=set)
    """Uniqueids of the channels our call route has let go (`channel_ending`)."""
    _observers: Observers[[Change]] = field(
        default_factory=lambda: Observers("PBX model"), repr=False, compare=False
    )

    # -- queries ------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints.get(name) or Endpoint(name)

    def presence(self, name: str) -> Presence:
        return self.endpoint(name).presence

    def channels_of(self, endpoint: str) -> list[Channel]:
        return [c for c in self.channels.values() if c.endpoint == endpoint]

    def call(self, linkedid: str) -> list[Channel]:
        """Every live channel of one call, oldest first."""
        legs = [c for c in self.channels.values() if c.linkedid == linkedid]
        return sorted(legs, key=lambda c: (c.created, c.uniqueid))

    # -- what our own call route knows first -----------------------------------

    def channel_ending(self, uniqueid: str) -> None:
        """Our call route ends the session of channel ``uniqueid`` after a Dial
        that ended its call (Dial returns -1; a blind transfer makes it return
        0): Asterisk hangs it up next.  Its line counts as `Endpoint.calls_ending`
        once no other call is on it, a few milliseconds before Asterisk's own
        ``Hangup`` and ``DeviceStateChange`` say so."""
        channel = self.channels.get(uniqueid)
        if channel is None or channel.endpoint is None:
            return
        self.ending.add(uniqueid)
        self._recheck_ending(channel.endpoint)

    def channel_goes_on(self, uniqueid: str) -> None:
        """It was not ending after all (a redirect moved it on as its Dial ended)."""
        channel = self.channels.get(uniqueid)
        self.ending.discard(uniqueid)
        if channel is not None and channel.endpoint is not None:
            self._recheck_ending(channel.endpoint)

    def _recheck_ending(self, name: str, keep_when_none: bool = False) -> None:
        endpoint = self.endpoint(name)
        ending = self._all_ending(name, endpoint.calls_ending if keep_when_none else False)
        if endpoint.calls_ending is not ending:
            self._set_endpoint(replace(endpoint, calls_ending=ending))

    def _all_ending(self, name: str, when_none: bool) -> bool:
        """``calls_ending`` holds while the line has channels and all are ending;
        with none left it is ``when_none``: kept after a Hangup (the device state
        has not changed yet, so the line does not flap back to busy), cleared by
        a device state (Asterisk's fresh word)."""
        channels = self.channels_of(name)
        if not channels:
            return when_none
        return all(c.uniqueid in self.ending for c in channels)

    # -- observers ----------------------------------------------------------

    def subscribe(self, observer: Callable[[Change], object]) -> Callable[[], None]:
        return self._observers.subscribe(observer)

    def _emit(self, change: Change) -> None:
        self._observers.notify(change)

    def _set_endpoint(self, new: Endpoint) -> None:
        old = self.endpoint(new.name)
        self.endpoints[new.name] = new
        if old != new:
            self._emit(EndpointChanged(old, new))

    # -- feeding ------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """Apply one AMI event; unknown events are ignored."""
        handler = self._handlers.get(message.get("Event") or "")
        if handler is not None:
            handler(self, message)

    def resync(
        self,
        device_states: Iterable[Message],
        contacts: Iterable[Message],
        channels: Iterable[Message],
        presence: Iterable[Message] = (),
    ) -> None:
        """Replace everything with Asterisk's own lists (after every connect)."""
        fresh: dict[str, Endpoint] = {}
        for event in device_states:
            name = endpoint_of(event.get("Device") or "")
            if name:
                fresh[name] = Endpoint(name, DeviceState.parse(event.get("State")))
        contacts_by_aor: dict[str, set[str]] = {}
        for event in contacts:
            aor = (event.get("ObjectName") or "").split(";", 1)[0] or event.get("Endpoint") or ""
            uri = event.get("Uri") or ""
            if aor and uri and event.get("Status") not in ("Unreachable", "Removed"):
                contacts_by_aor.setdefault(aor, set()).add(uri)
        dnd = {name for name, status in self._presence_items(presence) if status == "dnd"}
        for name in set(fresh) | set(contacts_by_aor) | dnd:
            base = fresh.get(name) or Endpoint(name)
            fresh[name] = replace(base, contacts=frozenset(contacts_by_aor.get(name, ())), dnd=name in dnd)
        for name in set(self.endpoints) - set(fresh):
            fresh[name] = Endpoint(name)
        now = self.clock.seconds()
        live = {}
        for event in channels:
            uniqueid = event.get("Uniqueid") or ""
            if uniqueid:
                known = self.channels.get(uniqueid)
                live[uniqueid] = _channel_from(event, created=known.created if known else now)
        for uniqueid in set(self.channels) - set(live):
            self._emit(ChannelChanged(self.channels.pop(uniqueid), hungup=True, cause="resync"))
        self.channels = live
        self.ending &= set(live)
        for endpoint in fresh.values():
            self._set_endpoint(endpoint)
        for name in fresh:
            self._recheck_ending(name)
        self.synced = True
        self._emit(Resynced())

    @staticmethod
    def _presence_items(events: Iterable[Message]) -> Iterable[tuple[str, str]]:
        for event in events:
            presentity = event.get("Presentity") or ""
            provider, _, name = presentity.partition(":")
            if provider.lower() == "custompresence" and name:
                yield name, (event.get("Status") or "").lower()

    def _on_device_state(self, event: Message) -> None:
        name = endpoint_of(event.get("Device") or "")
        if name:
            device = DeviceState.parse(event.get("State"))
            ending = self._all_ending(name, False)
            self._set_endpoint(replace(self.endpoint(name), device=device, calls_ending=ending))

    def _on_contact_status(self, event: Message) -> None:
        name = event.get("AOR") or event.get("EndpointName") or ""
        uri = event.get("URI") or ""
        if not name or not uri:
            return
        endpoint = self.endpoint(name)
        contacts = set(endpoint.contacts)
        if event.get("ContactStatus") in ("Removed", "Unreachable"):
            contacts.discard(uri)
        else:
            contacts.add(uri)
        self._set_endpoint(replace(endpoint, contacts=frozenset(contacts)))

    def _on_presence(self, event: Message) -> None:
        for name, status in self._presence_items([event]):
            self._set_endpoint(replace(self.endpoint(name), dnd=status == "dnd"))

    def _on_new_channel(self, event: Message) -> None:
        channel = _channel_from(event, created=self.clock.seconds())
        if channel.uniqueid:
            self.channels[channel.uniqueid] = channel
            self._emit(ChannelChanged(channel))
            if channel.endpoint is not None and self.endpoint(channel.endpoint).calls_ending:
                self._recheck_ending(channel.endpoint)

    def _update_channel(self, event: Message, **changes: Any) -> None:
        known = self.channels.get(event.get("Uniqueid") or "")
        if known is None:
            return
        state = event.get("ChannelStateDesc") or known.state
        if state == "Up" and known.answered is None:
            changes.setdefault("answered", self.clock.seconds())
        updated = replace(
            known,
            state=state,
            caller_num=_unknown(event.get("CallerIDNum")) or known.caller_num,
            caller_name=_unknown(event.get("CallerIDName")) or known.caller_name,
            connected_num=_unknown(event.get("ConnectedLineNum")) or known.connected_num,
            linkedid=event.get("Linkedid") or known.linkedid,
            **changes,
        )
        if updated != known:
            self.channels[updated.uniqueid] = updated
            self._emit(ChannelChanged(updated))

    def _on_new_state(self, event: Message) -> None:
        self._update_channel(event)

    def _on_dial_begin(self, event: Message) -> None:
        dest = event.get("DestUniqueid") or ""
        if dest in self.channels:
            self._update_channel({"Uniqueid": dest}, dialed_by=event.get("Uniqueid") or None)
        dialling = self.channels.get(event.get("Uniqueid") or "")
        if dialling is not None and dialling.uniqueid in self.ending:
            # It dials again: not ending after all (a redirect we did not see).
            self.ending.discard(dialling.uniqueid)
            if dialling.endpoint is not None:
                self._recheck_ending(dialling.endpoint)

    def _on_dial_end(self, event: Message) -> None:
        dest = event.get("DestUniqueid") or ""
        if dest in self.channels:
            self._update_channel({"Uniqueid": dest}, dial_status=event.get("DialStatus") or None)

    def _on_pickup(self, event: Message) -> None:
        target = event.get("TargetUniqueid") or ""
        if target in self.channels:
            self._update_channel({"Uniqueid": target}, picked_up_by=event.get("Channel") or None)

    def _on_hangup(self, event: Message) -> None:
        channel = self.channels.pop(event.get("Uniqueid") or "", None)
        if channel is not None:
            self.ending.discard(channel.uniqueid)
            self._emit(ChannelChanged(channel, hungup=True, cause=event.get("Cause") or ""))
            if channel.endpoint is not None:
                self._recheck_ending(channel.endpoint, keep_when_none=True)

    _handlers: ClassVar[Mapping[str, Callable[[PBXModel, Message], None]]] = {
        "DeviceStateChange": _on_device_state,
        "ContactStatus": _on_contact_status,
        "PresenceStateChange": _on_presence,
        "Newchannel": _on_new_channel,
        "Newstate": _on_new_state,
        "NewCallerid": _on_new_state,
        "NewConnectedLine": _on_new_state,
        "DialBegin": _on_dial_begin,
        "DialEnd": _on_dial_end,
        "Pickup": _on_pickup,
        "Hangup": _on_hangup,
    }


def _channel_from(event: Message, created: float) -> Channel:
    state = event.get("ChannelStateDesc") or ""
    return Channel(
        name=event.get("Channel") or "",
        uniqueid=event.get("Uniqueid") or "",
        linkedid=event.get("Linkedid") or event.get("Uniqueid") or "",
        state=state,
        caller_num=_unknown(event.get("CallerIDNum")),
        caller_name=_unknown(event.get("CallerIDName")),
        connected_num=_unknown(event.get("ConnectedLineNum")),
        exten=event.get("Exten") or "",
        context=event.get("Context") or "",
        created=created,
        answered=created if state == "Up" else None,
    )


class AMILink(Protocol):
    """What the model's service needs of the AMI service."""

    def subscribe(self, event: str | None, callback: Callable[[Any], None]) -> Callable[[], None]: ...

    def addConnectedHook(self, hook: Callable[[Any], Any]) -> Any: ...

    def collectEvents(self, action: str, **headers: str) -> Deferred[Any]: ...


RESYNC_RETRY_SECONDS = 1.0
"""Asterisk accepts AMI logins before every module is loaded; a list action
can fail then ("Invalid/unknown command"), so the resync is tried again."""


class PBXService(Service):
    """Keeps a `PBXModel` in step with Asterisk over the AMI link."""

    def __init__(self, ami: AMILink, model: PBXModel) -> None:
        self.ami = ami
        self.model = model
        self._undo: list[Callable[[], Any]] = []
        self._retry: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self._undo = [
            self.ami.subscribe(None, self.model.handle),
            self.ami.subscribe("FullyBooted", self._fully_booted),
            self.ami.addConnectedHook(self._resync),
        ]

    def stopService(self) -> Any:
        for undo in self._undo:
            undo()
        self._undo = []
        self._cancel_retry()
        return super().stopService()

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _fully_booted(self, _event: object) -> None:
        """Asterisk finished booting after we logged in: the lists are complete now."""
        if not self.model.synced and self._retry is not None:
            self._resync()

    def _list(self, action: str) -> Deferred[Any]:
        """Some list actions answer an empty list with an error ("No Contacts found")."""

        def empty(failure: Any) -> Any:
            failure.trap(AMIActionError)
            if not str(failure.value.message).startswith("No "):
                return failure
            return []

        return self.ami.collectEvents(action).addErrback(empty)

    def _resync(self, _protocol: object = None) -> Deferred[None]:
        """Ask Asterisk for the whole picture; events during the lists are kept
        too, and the lists win, which is right: they are the newer truth."""
        self._cancel_retry()
        self.model.synced = False
        lists = gatherResults(
            [
                self._list("DeviceStateList"),
                self._list("PJSIPShowContacts"),
                self._list("CoreShowChannels"),
                self._list("PresenceStateList"),
            ],
            consumeErrors=True,
        )

        def apply(results: list[Any]) -> None:
            devices, contacts, channels, presence = results
            self.model.resync(devices, contacts, channels, presence)
            log.info(
                "PBX model resynced: {endpoints} endpoints, {channels} channels",
                endpoints=len(self.model.endpoints),
                channels=len(self.model.channels),
            )

        return lists.addCallback(apply).addErrback(self._resync_failed)

    def _resync_failed(self, failure: Failure) -> None:
        reason = failure.value.subFailure if isinstance(failure.value, FirstError) else failure
        if reason.check(AMIConnectionLost, AMINotConnected) or not self.running:
            log.info("PBX resync cut short ({why}); the next connection resyncs", why=reason.value)
            return
        log.warn(
            "PBX resync failed ({why}); retrying in {seconds}s",
            why=reason.value,
            seconds=RESYNC_RETRY_SECONDS,
        )
        self._retry = self.model.clock.callLater(RESYNC_RETRY_SECONDS, self._resync)
