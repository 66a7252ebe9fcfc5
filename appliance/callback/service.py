"""Callback as a Twisted service: the engine wired to the store, the PBX model,
the settings and AMI.

Recall in Asterisk: an AMI ``Originate`` (async) rings the requester's line
for CC_WAIT_TIME seconds, showing the target's number; once answered, the
channel runs the shipped ``[appliance-callback]`` context, which sets the
requester's caller ID and dials the target.  ``OriginateResponse`` tells how
the requester leg went (answered, busy, no answer); the context's ``h``
extension sends ``UserEvent(ApplianceCallback)`` with the target's
``DIALSTATUS``.  Both arrive here and go to the engine.

A recall for a group shows the group at the requester (its name and number)
and dials the member the engine chose, which sees ``<group>: <requester>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from appliance import settings as keys
from appliance.asterisk.ami import AMIActionError, AMIConnectionLost, AMINotConnected
from appliance.callback import notify
from appliance.callback.engine import (
    CallbackEngine,
    EngineSettings,
    IRecallOutputs,
    Kind,
    Outcome,
    Recall,
    RecallResult,
    Request,
)
from appliance.callback.offer import Offers
from appliance.devices import Devices
from appliance.dialplan import CallExtensions
from appliance.directory import DEVICE, Directory
from appliance.metering import NO_METRICS, IMetrics
from appliance.numbers import EXTENSION, EXTERNAL_NUMBER, TYPED_NUMBER
from appliance.pbx import Change, EndpointChanged, PBXModel, Presence, Resynced
from appliance.settings import Setting, Settings
from appliance.store import Change as StoreChange
from appliance.store import IKeyValueStore

log = Logger()

NAMESPACE = "callbacks"
CONTEXT = "appliance-callback"
CLICK_CONTEXT = "appliance-click"
DEVICES_CONTEXT = "appliance-devices"
USER_EVENT = "ApplianceCallback"
_SAFE_ID = re.compile(r"^[0-9+]{2,21}:[0-9]{2,8}$")

# OriginateResponse "Reason": Asterisk's control frame of how the leg ended.
ORIGINATE_REASONS = {
    "4": RecallResult.REQUESTER_ANSWERED,
    "5": RecallResult.REQUESTER_BUSY,
    "3": RecallResult.REQUESTER_NO_ANSWER,
    "1": RecallResult.REQUESTER_NO_ANSWER,
}
TARGET_STATUS = {
    "ANSWER": RecallResult.TARGET_ANSWERED,
    "CANCEL": RecallResult.REQUESTER_HUNG_UP,
    "": RecallResult.REQUESTER_HUNG_UP,
}


class AMI(Protocol):
    """What the service needs of `AMIService`."""

    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]: ...

    def subscribe(self, event: str | None, callback: Callable[[Any], None]) -> Callable[[], None]: ...


@implementer(IRecallOutputs)
class _Outputs:
    """The engine's outputs: the store, and Originate over AMI."""

    def __init__(self, service: CallbackService) -> None:
        self.service = service

    def originate(self, recall: Recall) -> None:
        self.service.metrics.recall_started()
        if self.service.notify_mode(recall.requester) == "mail" and self.service._mail_free(recall):
            return
        self.service._originate(recall)

    def saved(self, request: Request) -> None:
        self.service._write(request.id, request)

    def removed(self, request: Request, why: str) -> None:
        self.service.metrics.callback_removed(why)
        self.service._write(request.id, None)
        if why in ("expired", "attempts"):
            self.service._mail(why, request)


class CallbackService(Service):
    """Automatic callback; `pending` and `cancel` are the web page's API."""

    def __init__(
        self,
        store: IKeyValueStore,
        settings: Settings,
        pbx: PBXModel,
        ami: AMI,
        directory: Directory,
        clock: IReactorTime,
        language: str = "de",
        trunk: str = "trunk",
        outbox: Any = None,
        sender: str = "",
        devices: Devices | None = None,
        metrics: IMetrics = NO_METRICS,
    ) -> None:
        self.devices = devices or Devices(directory, pbx)
        """Requester and target are persons: free when all their phones are, rung on all."""
        self.metrics = metrics
        self._stored_ids: set[str] = set()
        """Ids of the requests in the store: a write of another one is a new request."""
        self.outbox = outbox
        """`appliance.mail.Outbox`, shared with the missed-call mails; None: no mails."""
        self.sender = sender
        self.store = store
        self.settings = settings
        self.pbx = pbx
        self.ami = ami
        self.directory = directory
        self.clock = clock
        self.language = language
        self.trunk = trunk
        presence = self.devices.presence
        self.engine = CallbackEngine(
            clock,
            _Outputs(self),
            presence,
            self._engine_settings,
            members=self._members_of,
            callee_presence=self.devices.callee_presence,
        )
        self.offers = Offers(
            self.engine, settings, store, self._language_of, presence, self.devices.person, metrics
        )
        self._actions: dict[str, tuple[str, int]] = {}
        """AMI ActionID of an Originate → (request id, attempt)."""
        self._held: dict[str, list[Request | None]] = {}
        """Request id → its latest record (None: removed) while its Originate is on the way."""
        self._recall_observers: list[Callable[[Recall], None]] = []
        self._undo: list[Callable[[], object]] = []
        self._known: dict[str, Any] = {}
        """While running: the settings a recall reads, kept current from the
        store's change notices, so no store read lies between the event that
        frees a target and its Originate (issue 19)."""
        self._mail_users: set[str] = set()
        """While running: the users who chose a mail instead of a ring (likewise)."""

    # -- wiring ------------------------------------------------------------------

    def attach(self, extensions: CallExtensions, feature_codes: Any) -> None:
        """Plug into the call route's extension points and the feature codes."""
        extensions.handle_unreachable(self.offers.unreachable)
        extensions.on_unanswered(self.offers.unanswered)
        feature_codes.register("*39", self.offers.request_code)
        feature_codes.register("#39", self.offers.cancel_code)
        feature_codes.register("*78", self.offers.dnd_code)
        feature_codes.register("#78", self.offers.dnd_code)

    def on_recall(self, observer: Callable[[Recall], None]) -> Callable[[], None]:
        """observer(recall) as each recall's Originate is sent (metrics, tools)."""
        self._recall_observers.append(observer)
        return lambda: self._recall_observers.remove(observer) if observer in self._recall_observers else None

    def startService(self) -> None:
        super().startService()
        stored = [Request.from_json(value) for _, value in self.store.items(NAMESPACE)]
        self._known = {setting.name: self.settings.get(setting) for setting in _KEPT_KEYS}
        self._mail_users = {user for user, mode in self.store.items(notify.NAMESPACE) if mode == "mail"}
        self._undo = [
            self.store.subscribe(self._store_changed),
            self.settings.subscribe(self._setting_changed, _KEPT_KEYS),
        ]
        self._stored_ids.update(r.id for r in stored if r is not None)
        self.engine.load([r for r in stored if r is not None and _SAFE_ID.match(r.id)])
        self._undo += [
            self.pbx.subscribe(self._pbx_changed),
            self.ami.subscribe("OriginateResponse", self._originate_response),
            self.ami.subscribe("UserEvent", self._user_event),
        ]

    def stopService(self) -> Any:
        for undo in self._undo:
            undo()
        self._undo = []
        self._known = {}
        self.engine.stop()
        return super().stopService()

    # -- API for the web page ------------------------------------------------------

    def pending(self, requester: str | None = None) -> list[Request]:
        return self.engine.pending(requester=requester)

    def cancel(self, request_id: str) -> bool:
        return self.engine.cancel_id(request_id)

    def notify_mode(self, user: str) -> str:
        """``ring`` (the default) or ``mail``: how a due callback reaches ``user``."""
        if self.running:
            return "mail" if user in self._mail_users else "ring"
        return "mail" if self.store.get(notify.NAMESPACE, user) == "mail" else "ring"

    def set_notify_mode(self, user: str, mode: str) -> None:
        if mode not in notify.MODES:
            raise ValueError(f"unknown notification mode {mode!r}")
        if mode == "ring":
            self.store.delete(notify.NAMESPACE, user)
        else:
            self.store.put(notify.NAMESPACE, user, mode)

    def _mail(self, why: str, request: Request) -> bool:
        """Queue the mail telling the requester ``why``; False if it cannot be sent."""
        requester = self.directory.user(request.requester) if request.origin == "internal" else None
        if self.outbox is None or requester is None:
            return False
        message = notify.mail_for(
            why,
            request,
            to_name=requester.name,
            to_address=requester.email,
            target_name=self._name_of(request.target),
            language=self._language_of(requester.extension),
            sender=self.sender,
            now=self.clock.seconds(),
        )
        if message is None:
            return False
        self.outbox.enqueue(notify.mail_key(request, why), self.sender, [requester.email], message)
        log.info("callback {rid}: mail to the requester ({why})", rid=request.id, why=why)
        return True

    def _mail_free(self, recall: Recall) -> bool:
        """The requester wants a mail, not a ring: send it, and the request is done."""
        request = self.engine.get(recall.request_id)
        if request is None or not self._mail("free", request):
            return False
        self.clock.callLater(
            0, self.engine.recall_result, recall.request_id, recall.attempt, RecallResult.NOTIFIED
        )
        return True

    def request_now(self, requester: str, target: str) -> str:
        """From the web page: a callback to an internal number (a line, or a
        group none of whose members is free) that cannot be reached now, by the
        rules of the offer.  Answers ``accepted``, ``duplicate``, ``limit``,
        ``invalid`` or ``reachable`` (just call it)."""
        if not self.settings.get(keys.CC_OFFER) or not EXTENSION.match(target):
            return Outcome.INVALID.value
        lines = self._members_of(target) or ((target,) if self.devices.known(target) else ())
        if not EXTENSION.match(requester) or requester == target or not lines:
            return Outcome.INVALID.value
        others = [line for line in lines if line != requester]
        if any(self.devices.presence(line) in (Presence.IDLE, Presence.RINGING) for line in others):
            return "reachable"
        outcome = self.engine.request(requester, target, Kind.BUSY)
        log.info(
            "web callback request {requester} -> {target}: {outcome}",
            requester=requester,
            target=target,
            outcome=outcome.value,
        )
        return outcome.value

    def click_to_call(self, user: str, number: str) -> Deferred[Any]:
        """Ring ``user``'s phone; once answered, the call to ``number`` runs the
        ordinary internal call route (forwards, offers) as if dialled there."""
        if not EXTENSION.match(user) or not TYPED_NUMBER.match(number):
            return fail(ValueError(f"cannot call {number!r} for {user!r}"))
        callee = self.directory.user(number)
        caller = self.directory.user(user)
        log.info("click to call: {user} -> {number}", user=user, number=number)
        channel, ring_all = self._ring_all(user, self.settings.get(keys.CC_WAIT_TIME))
        return self.ami.sendAction(
            "Originate",
            Channel=channel,
            Context=CLICK_CONTEXT,
            Exten=number,
            Priority=1,
            Timeout=self.settings.get(keys.CC_WAIT_TIME) * 1000,
            CallerID=f'"{_caller_name(callee.name if callee else number)}" <{number}>',
            Async="true",
            Variable=[
                f"APPLIANCE_CLICK_USER={user}",
                "APPLIANCE_CLICK_NAME=" + _caller_name(caller.name if caller else user),
                *ring_all,
            ],
        )

    # -- inputs --------------------------------------------------------------------

    def _engine_settings(self) -> EngineSettings:
        s = self._setting
        return EngineSettings(
            enabled=s(keys.CC_OFFER),
            timeout_seconds=s(keys.CC_TIMEOUT) * 60.0,
            wait_seconds=s(keys.CC_WAIT_TIME),
        )

    def _members_of(self, number: str) -> tuple[str, ...]:
        """A group's members in its ring order (then those naming the group
        themselves); empty when ``number`` is no group's."""
        group = self.directory.group_by_number(number)
        if group is None:
            return ()
        known = {user.extension for user in self.directory.members_of(group.name)}
        ordered = [member for member in group.members if member in known]
        return (*ordered, *sorted(known.difference(ordered)))

    def _name_of(self, number: str) -> str:
        """What a recall calls ``number``: a user's name, a group's name, or ""."""
        user = self.directory.user(number)
        if user is not None:
            return user.name
        group = self.directory.group_by_number(number)
        return group.name if group is not None else ""

    def _setting(self, setting: Setting[Any]) -> Any:
        """One of `_KEPT_KEYS`: kept while running, read from the store otherwise."""
        return self._known[setting.name] if self.running else self.settings.get(setting)

    def _setting_changed(self, name: str, value: Any) -> None:
        self._known[name] = value
        if name in _CC_KEYS:
            self.engine.check()

    def _store_changed(self, change: StoreChange) -> None:
        if change.namespace == notify.NAMESPACE:
            if change.new == "mail":
                self._mail_users.add(change.key)
            else:
                self._mail_users.discard(change.key)

    def _language_of(self, extension: str) -> str:
        user = self.directory.user(extension) if extension else None
        return (user.language if user is not None else "") or self.language

    def _pbx_changed(self, change: Change) -> None:
        if isinstance(change, EndpointChanged):
            person, old, new = self.devices.presence_change(change)
            if old is not new:
                self.engine.presence_changed(person, old, new)
            if change.new.call_over and not change.old.call_over:
                self.engine.calls_ending(person)
        elif isinstance(change, Resynced):
            self.engine.resynced()

    def _originate_response(self, event: Any) -> None:
        found = self._actions.pop(event.get("ActionID") or "", None)
        if found is None:
            return
        rid, attempt = found
        if (event.get("Response") or "") == "Success":
            result = RecallResult.REQUESTER_ANSWERED
        else:
            result = ORIGINATE_REASONS.get(event.get("Reason") or "", RecallResult.FAILED)
        log.info("recall {rid} #{attempt}: {result}", rid=rid, attempt=attempt, result=result.value)
        self.engine.recall_result(rid, attempt, result)

    def _user_event(self, event: Any) -> None:
        if (event.get("UserEvent") or "") != USER_EVENT:
            return
        rid = event.get("Id") or ""
        try:
            attempt = int(event.get("Attempt") or "")
        except ValueError:
            return
        status = (event.get("DialStatus") or "").strip().upper()
        result = TARGET_STATUS.get(status, RecallResult.TARGET_UNREACHABLE)
        log.info("recall {rid} #{attempt}: target {status}", rid=rid, attempt=attempt, status=status)
        self.engine.recall_result(rid, attempt, result)

    # -- outputs -------------------------------------------------------------------

    def _write(self, rid: str, request: Request | None) -> None:
        """Store a request's record, or hold it while its Originate is on the way:
        a store write (fdatasync) in the same reactor turn would keep the action
        in our send buffer.  A crash in that millisecond loses the attempt count
        of one recall, never the request."""
        if rid in self._held:
            self._held[rid][:] = [request]
        elif request is None:
            self._stored_ids.discard(rid)
            self.store.delete(NAMESPACE, rid)
        else:
            if rid not in self._stored_ids:  # known without a store read: none before an Originate
                self._stored_ids.add(rid)
                self.metrics.callback_requested()
            self.store.put(NAMESPACE, rid, request.to_json())

    def _release(self, rid: str) -> None:
        for request in self._held.pop(rid, []):
            self._write(rid, request)

    def _originate(self, recall: Recall) -> None:
        if not EXTENSION.match(recall.target):
            self._fail_later(recall, "bad target")
            return
        ring_all: list[str] = []
        if recall.origin == "internal" and EXTENSION.match(recall.requester):
            channel, ring_all = self._ring_all(recall.requester, recall.wait_seconds)
        elif recall.origin == "external" and EXTERNAL_NUMBER.match(recall.requester):
            channel = f"PJSIP/{recall.requester}@{self.trunk}"
        else:
            self._fail_later(recall, "bad requester")
            return
        requester_user = self.directory.user(recall.requester)
        requester_name = _caller_name(requester_user.name if requester_user else recall.requester)
        called = recall.group or recall.target
        shown = _caller_name(self._name_of(called) or called)
        if recall.group:
            # The member sees which group the requester wanted: "Vertrieb: Anna Berger".
            requester_name = _caller_name(f"{shown}: {requester_name}")
        for observer in list(self._recall_observers):
            observer(recall)
        self._held.setdefault(recall.request_id, [])
        d = self.ami.sendAction(
            "Originate",
            Channel=channel,
            Context=CONTEXT,
            Exten=recall.target,
            Priority=1,
            Timeout=recall.wait_seconds * 1000,
            CallerID=f'"{shown}" <{called}>',
            Async="true",
            Variable=[
                f"APPLIANCE_CALLBACK={recall.request_id}",
                f"APPLIANCE_CC_ATTEMPT={recall.attempt}",
                f"APPLIANCE_CC_REQUESTER={recall.requester}",
                f"APPLIANCE_CC_RING={self._setting(keys.CC_TARGET_RING_TIME)}",
                f"APPLIANCE_CC_REQUESTER_NAME={requester_name}",
                "APPLIANCE_CC_TARGET=" + self._dial_list(recall.target),
                *ring_all,
            ],
        )

        log.info(
            "recall {rid} #{attempt}: ringing {channel} for {seconds}s",
            rid=recall.request_id,
            attempt=recall.attempt,
            channel=channel,
            seconds=recall.wait_seconds,
        )

        def queued(reply: Any) -> None:
            self._release(recall.request_id)
            action_id = getattr(reply, "action_id", None)
            if action_id:
                self._actions[action_id] = (recall.request_id, recall.attempt)

        def failed(failure: Any) -> None:
            self._release(recall.request_id)
            result = RecallResult.LOST if _link_lost(failure) else RecallResult.FAILED
            self._fail_later(recall, f"Originate failed: {failure.getErrorMessage()}", result)

        d.addCallbacks(queued, failed)

    def _dial_list(self, user: str) -> str:
        """``PJSIP/300&PJSIP/300-soft``: every registered phone of ``user`` (names as validated)."""
        return "&".join(f"PJSIP/{e}" for e in self.devices.to_ring(user) if DEVICE.match(e))

    def _ring_all(self, user: str, seconds: int) -> tuple[str, list[str]]:
        """The Originate channel ringing ``user``: the phone itself, or for several
        registered phones a Local channel whose other half dials them all at once
        (shipped context ``[appliance-devices]``); the first to answer takes the recall."""
        endpoints = [e for e in self.devices.to_ring(user) if DEVICE.match(e)]
        if len(endpoints) <= 1:
            return f"PJSIP/{endpoints[0] if endpoints else user}", []
        dial = "&".join(f"PJSIP/{e}" for e in endpoints)
        ring = [f"_APPLIANCE_DEVICES={dial}", f"_APPLIANCE_DEVICES_RING={seconds}"]
        return f"Local/{user}@{DEVICES_CONTEXT}", ring

    def _fail_later(self, recall: Recall, why: str, result: RecallResult = RecallResult.FAILED) -> None:
        """Report a failure on the next turn: the engine is still deciding (no re-entry)."""
        log.warn("recall {rid}: {why}", rid=recall.request_id, why=why)
        self.clock.callLater(0, self.engine.recall_result, recall.request_id, recall.attempt, result)


_CC_KEYS = frozenset(setting.name for setting in (keys.CC_OFFER, keys.CC_TIMEOUT, keys.CC_WAIT_TIME))
"""Settings whose change the engine rechecks at once."""
_KEPT_KEYS = (keys.CC_OFFER, keys.CC_TIMEOUT, keys.CC_WAIT_TIME, keys.CC_TARGET_RING_TIME)


def _link_lost(failure: Any) -> bool:
    """The Originate never reached a phone for reasons of the link, not the
    requester: AMI down, or Asterisk refusing actions while it shuts down."""
    if failure.check(AMIConnectionLost, AMINotConnected):
        return True
    return bool(failure.check(AMIActionError)) and "shutting down" in str(failure.value.message).lower()


def _caller_name(name: str) -> str:
    """Directory names go into a caller ID string: no quotes, commas or controls."""
    return "".join(ch for ch in name if ch.isprintable() and ch not in '"<>,;\\|')[:40].strip()
