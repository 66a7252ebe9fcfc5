"""A user's phones: the primary endpoint (named like the extension) and the
further devices of `appliance.directory.User.devices` (desk phone, softphone).

Every feature asks here instead of about one endpoint, so a person counts
once: a call rings all of the user's registered devices at once; the user is
logged out only when no device is registered, busy when any device is in a
call, ringing when any rings; do-not-disturb belongs to the person (Asterisk
presence ``CustomPresence:<extension>``, set by ``*78`` from any device).
A number that is no user (an endpoint the directory does not list) is its
own single device.

`person_presence` is the pure rule; `Devices` applies it to the directory and
the live PBX model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from appliance.directory import User
from appliance.pbx import Channel, DeviceState, Endpoint, EndpointChanged, PBXModel, Presence


class Owners(Protocol):
    """What `Devices` needs of `appliance.directory.Directory`."""

    def user(self, extension: str) -> User | None: ...

    def owner_of(self, number: str) -> User | None: ...


def person_presence(devices: Iterable[Endpoint], dnd: bool, calls_over: bool = False) -> Presence:
    """One person over all their devices: logged out only if none is registered;
    DND by the person's switch; busy if any device is in a call; ringing if any rings.
    ``calls_over``: a device whose calls are all ending (`Endpoint.call_over`) is
    no longer in a call (the view of a callback's target, never of who is rung now)."""
    registered = [d for d in devices if d.registered]
    if not registered:
        return Presence.LOGGED_OUT
    if dnd:
        return Presence.DND
    if any(d.in_call and not (calls_over and d.call_over) for d in registered):
        return Presence.BUSY
    if any(d.device is DeviceState.RINGING for d in registered):
        return Presence.RINGING
    return Presence.IDLE


def user_of(directory: Owners, number: str) -> User | None:
    """The user ``number`` names: by primary extension, else as one of their devices."""
    user = directory.user(number)
    if user is not None:
        return user
    owner = directory.owner_of(number) if number else None
    return owner if owner is not None and number in owner.devices else None


def person_of(directory: Owners, endpoint: str) -> str:
    """The user (primary extension) an endpoint belongs to; the endpoint itself if none."""
    user = user_of(directory, endpoint)
    return user.extension if user is not None else endpoint


class _Nobody:
    """No directory: every endpoint is a person of its own."""

    def user(self, extension: str) -> User | None:
        return None

    def owner_of(self, number: str) -> User | None:
        return None


class Devices:
    """Persons and their endpoints over the directory and the PBX model."""

    def __init__(self, directory: Owners | None, pbx: PBXModel) -> None:
        self.directory: Owners = directory if directory is not None else _Nobody()
        self.pbx = pbx

    def _user(self, number: str) -> User | None:
        return user_of(self.directory, number)

    def person(self, endpoint: str) -> str:
        """The user (primary extension) an endpoint belongs to; the endpoint itself if none."""
        return person_of(self.directory, endpoint)

    def endpoints(self, number: str) -> tuple[str, ...]:
        """Every endpoint of the person ``number`` names, the primary first."""
        user = self._user(number)
        if user is None:
            return (number,)
        return tuple(dict.fromkeys((user.extension, *user.devices)))

    def to_ring(self, number: str) -> tuple[str, ...]:
        """The endpoints a call to ``number`` rings at once: the registered ones (all of
        them while nobody is registered or the model is not synced: Dial then decides)."""
        every = self.endpoints(number)
        if not self.pbx.synced:
            return every
        registered = tuple(e for e in every if self.pbx.endpoint(e).registered)
        return registered or every

    def known(self, number: str) -> bool:
        """Is any endpoint of this person a PBX endpoint?"""
        return any(e in self.pbx.endpoints for e in self.endpoints(number))

    def presence(self, number: str) -> Presence:
        every = self.endpoints(number)
        return person_presence((self.pbx.endpoint(e) for e in every), self.pbx.endpoint(every[0]).dnd)

    def callee_presence(self, number: str) -> Presence:
        """`presence`, but calls our call route has let go count as over: for a
        callback's target, whose line is dialled only after the requester answers."""
        every = self.endpoints(number)
        endpoints = [self.pbx.endpoint(e) for e in every]
        return person_presence(endpoints, self.pbx.endpoint(every[0]).dnd, calls_over=True)

    def channels(self, number: str) -> list[Channel]:
        """The live channels of all the person's devices."""
        every = set(self.endpoints(number))
        return [c for c in self.pbx.channels.values() if c.endpoint in every]

    def presence_change(self, change: EndpointChanged) -> tuple[str, Presence, Presence]:
        """(person, before, after) for one endpoint's change (the model holds ``after``)."""
        every = self.endpoints(change.new.name)
        person = every[0]

        def before(name: str) -> Endpoint:
            return change.old if name == change.new.name else self.pbx.endpoint(name)

        old = person_presence((before(e) for e in every), before(person).dnd)
        return person, old, self.presence(person)
