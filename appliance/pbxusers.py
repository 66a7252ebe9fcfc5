"""Users from Asterisk: every PJSIP phone endpoint becomes a directory user.

An admin should not type in what Asterisk already knows.  On every AMI login,
after Asterisk finished booting, after a reload of ``res_pjsip`` and when an
endpoint the directory does not know shows up in the PBX model, the endpoints
are listed (``PJSIPShowEndpoints``); each new one whose name is an extension
becomes a user named after its caller ID (``PJSIPShowEndpoint``).  A user
whose endpoint is gone is flagged ``vanished`` on the users page, never
deleted; one whose endpoint comes back loses the flag.  A new user has no
language of its own (the appliance's applies).  E-mail, language and
groups are the admin's: a sync never changes them.  An endpoint named like a
group's number makes no user (logged): one number, one destination.
``DIR_PBX_USERS`` off stops the creation (the flags are still kept).

`reconcile` is the pure decision; `EndpointSync` the thin service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from appliance.asterisk.ami import AMIActionError, AMIConnectionLost, AMINotConnected
from appliance.directory import USER_BATCH, Directory, User
from appliance.numbers import EXTENSION
from appliance.pbx import Change, EndpointChanged, PBXModel
from appliance.settings import DIR_PBX_USERS, Settings
from appliance.slices import SLICE_PAUSE

log = Logger()

SYNC_DELAY = 1.0
"""Seconds to gather a burst of reload events or new endpoints into one sync."""

_CALLERID_NAME = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"|^\s*([^<]+?)\s*<')


def callerid_name(callerid: str) -> str:
    """``"Anna Berg" <200>`` → ``Anna Berg``; "" when the caller ID has no name."""
    match = _CALLERID_NAME.match(callerid or "")
    if not match:
        return ""
    text = match.group(1) if match.group(1) is not None else match.group(2)
    return re.sub(r"\\(.)", r"\1", text).strip()


@dataclass(frozen=True)
class Reconciled:
    """What one sync changes."""

    create: tuple[str, ...]
    """Endpoint names that become users."""
    flag: tuple[User, ...]
    """Users whose endpoints are gone or back: the record with the new flag."""


def reconcile(endpoints: Iterable[str], users: Iterable[User], create: bool) -> Reconciled:
    """Compare Asterisk's endpoint names with the directory's users."""
    present = set(endpoints)
    known: set[str] = set()
    flag = []
    for user in users:
        lines = {user.extension, *user.devices}
        known |= lines
        vanished = not (lines & present)
        if vanished != user.vanished:
            flag.append(replace(user, vanished=vanished))
    new = sorted(name for name in present - known if EXTENSION.match(name)) if create else []
    return Reconciled(tuple(new), tuple(flag))


def _none_found(failure: Any) -> Any:
    """Asterisk answers an empty list with an error ("No endpoints found")."""
    failure.trap(AMIActionError)
    if not str(failure.value.message).startswith("No "):
        return failure
    return []


class EndpointSync(Service):
    """Keeps the directory's users in step with Asterisk's PJSIP endpoints."""

    def __init__(
        self,
        ami: Any,
        model: PBXModel,
        directory: Directory,
        settings: Settings,
        clock: IReactorTime,
    ) -> None:
        self.ami = ami
        self.model = model
        self.directory = directory
        self.settings = settings
        self.clock = clock
        self._undo: list[Any] = []
        self._pending: IDelayedCall | None = None
        self._running: Deferred[None] | None = None
        self.last: Reconciled | None = None

    def startService(self) -> None:
        super().startService()
        self._undo = [
            self.ami.addConnectedHook(lambda _protocol: self.soon()),
            self.ami.subscribe("FullyBooted", lambda _event: self.soon()),
            self.ami.subscribe("Reload", self._reloaded),
            self.model.subscribe(self._model_changed),
        ]

    def stopService(self) -> Any:
        for undo in self._undo:
            undo()
        self._undo = []
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        return super().stopService()

    def _reloaded(self, event: Mapping[str, str] | Any) -> None:
        module = str(event.get("Module") or "").lower()
        if not module or "pjsip" in module or module == "all":
            self.soon()

    def _model_changed(self, change: Change) -> None:
        if isinstance(change, EndpointChanged) and self.directory.owner_of(change.new.name) is None:
            if EXTENSION.match(change.new.name):
                self.soon()

    def soon(self) -> None:
        """Sync after `SYNC_DELAY`, once for a burst of reasons."""
        if self.running and (self._pending is None or not self._pending.active()):
            self._pending = self.clock.callLater(SYNC_DELAY, self.sync)

    def sync(self) -> Deferred[None]:
        if self._running is not None:
            # One at a time; a reason that came meanwhile gets its own sync after this one.
            self._running.addBoth(lambda _: self.soon())
            return self._running
        self._running = self._sync().addErrback(self._failed)

        def done(result: object) -> object:
            self._running = None
            return result

        return self._running.addBoth(done)

    @inlineCallbacks
    def _sync(self) -> Any:
        listed = yield self.ami.collectEvents("PJSIPShowEndpoints").addErrback(_none_found)
        names = [str(event.get("ObjectName")) for event in listed if event.get("ObjectName")]
        decision = reconcile(names, self.directory.users(), bool(self.settings.get(DIR_PBX_USERS)))
        created = []
        for name in decision.create:
            detail = yield self.ami.collectEvents("PJSIPShowEndpoint", Endpoint=name)
            callerid = next(
                (str(e.get("Callerid") or "") for e in detail if e.get("Event") == "EndpointDetail"), ""
            )
            # No language chosen: the appliance's language and MC_LANGUAGE apply until someone picks one.
            created.append(User(name, callerid_name(callerid) or name, from_pbx=True))
        new = set(decision.create)
        written: list[User] = []
        wanted = [*created, *decision.flag]
        for start in range(0, len(wanted), USER_BATCH):
            batch = [u for user in wanted[start : start + USER_BATCH] if (u := self._still_wanted(user, new))]
            if batch:
                self.directory.put_users(batch)
                written += batch
            if start + USER_BATCH < len(wanted):
                yield deferLater(self.clock, SLICE_PAUSE, lambda: None)
        created = [u for u in written if u.extension in new]
        flags = [u for u in written if u.extension not in new]
        self.last = Reconciled(tuple(u.extension for u in created), tuple(flags))
        log.info(
            "PJSIP endpoints: {count}; users created: {created}; vanished: {vanished}; back: {back}",
            count=len(names),
            created=[u.extension for u in created],
            vanished=[u.extension for u in flags if u.vanished],
            back=[u.extension for u in flags if not u.vanished],
        )

    def _still_wanted(self, user: User, new: set[str]) -> User | None:
        """The record to write now: the admin may have been quicker while Asterisk
        answered (their record wins; a flag goes onto the record as it is now)."""
        current = self.directory.user(user.extension)
        if user.extension in new:
            if current is None and (clash := self.directory.user_number_clash([user])) is not None:
                log.warn(
                    "PJSIP endpoint {endpoint} made no user: {why}",
                    endpoint=user.extension,
                    why=clash.text.en,
                )
                return None
            return user if current is None else None
        if current is None or current.vanished == user.vanished:
            return None
        return replace(current, vanished=user.vanished)

    def _failed(self, failure: Any) -> None:
        if failure.check(AMIConnectionLost, AMINotConnected):
            log.info("endpoint sync cut short ({why}); the next connection syncs", why=failure.value)
        elif failure.check(AMIActionError):
            log.warn(
                "endpoint sync refused by Asterisk ({why}); retried when it has booted", why=failure.value
            )
        else:
            log.failure("endpoint sync failed", failure)
