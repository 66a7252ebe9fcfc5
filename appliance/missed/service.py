"""The missed-call notifier: PBX model events in, journal entries and queued mails out.

Thin: `CallTracker` follows the calls, `decide` is the policy, the `Renderer`
and `compose` make the mail, and the journal entries and the mails of one call
are committed in one store transaction before the `Outbox` is woken.  Calls in
progress when the appliance stops are not remembered (they are lost, never
doubled).  The journal follows its own settings (``JOURNAL_*``), the mail
the ``MC_*`` ones; journal entries past their retention are pruned daily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from appliance.contacts import Contact, ContactDirectory
from appliance.devices import person_of
from appliance.directory import Directory
from appliance.mail import Outbox, address, compose, is_address, message_id
from appliance.missed.journal import DAY, Entry, Journal
from appliance.missed.language import mail_language
from appliance.missed.policy import Decision, MissedCall, Rules, decide, participants_by_user
from appliance.missed.render import Notice, Renderer, link_for
from appliance.missed.tracking import CallTracker, TrackedCall
from appliance.observers import Observers
from appliance.pbx import Change, ChannelChanged, EndpointChanged, PBXModel
from appliance.settings import Settings

log = Logger()

Observer = Callable[[TrackedCall, Decision], object]

JUDGE_DELAY = 0.1
"""Seconds between a call's last Hangup and judging it (store reads, maybe mails).
Not in the same AMI read: the events after that Hangup, such as the
DeviceStateChange that frees a callback's target, go first; and not while
Asterisk places the recall those events may start (an INVITE leaves within a
few milliseconds): on a busy machine the judging would take its CPU (issue 19)."""


class MissedCallService(Service):
    def __init__(
        self,
        pbx: PBXModel,
        settings: Settings,
        directory: Directory,
        contacts: ContactDirectory,
        outbox: Outbox,
        clock: IReactorTime,
        sender: str,
        renderer: Renderer | None = None,
        language: str = "de",
    ) -> None:
        self.pbx = pbx
        self.settings = settings
        self.directory = directory
        self.contacts = contacts
        self.outbox = outbox
        self.store = outbox.store
        self.journal = Journal(self.store)
        self.clock = clock
        self.sender = sender
        self.renderer = renderer or Renderer()
        self.language = language
        """The appliance's language: the last fallback for a mail's language."""
        self.tracker = CallTracker()
        self._observers: Observers[[TrackedCall, Decision]] = Observers("missed-call")
        self._unsubscribe: Callable[[], None] | None = None
        self._pruning: IDelayedCall | None = None
        self._finishing: dict[str, tuple[IDelayedCall, TrackedCall]] = {}
        """Finished calls judged on the next reactor turn, by Linkedid."""

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """observer(call, decision) after every finished call (web page, tests)."""
        return self._observers.subscribe(observer)

    def startService(self) -> None:
        super().startService()
        self._unsubscribe = self.pbx.subscribe(self.on_change)
        self.prune()

    def stopService(self) -> Any:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._pruning is not None and self._pruning.active():
            self._pruning.cancel()
        self._pruning = None
        for delayed, call in list(self._finishing.values()):
            delayed.cancel()
            self._finish_now(call)
        self.tracker = CallTracker()
        return super().stopService()

    def prune(self) -> None:
        """Drop journal entries past their retention now, and again in a day."""
        get = self.settings.get
        dropped = self.journal.prune(
            self.clock.seconds(), get("JOURNAL_RETENTION_DAYS"), get("JOURNAL_MAX_ENTRIES")
        )
        if dropped:
            log.info("missed-call journal: {dropped} old entries removed", dropped=dropped)
        self._pruning = self.clock.callLater(DAY, self.prune)

    def user_logged_in(self, user: str) -> None:
        """A web login or the journal marked seen: the user is back (seed 001's "angemeldet")."""
        if self.directory.user(user) is not None:
            self.journal.logged_in(user, self.clock.seconds())

    def on_change(self, change: Change) -> None:
        now = self.clock.seconds()
        if isinstance(change, EndpointChanged):
            if change.new.registered and not change.old.registered:
                owner = self.directory.owner_of(change.new.name)
                if owner is not None:
                    self.journal.logged_in(owner.extension, now)
        elif isinstance(change, ChannelChanged):
            finished = self.tracker.feed(change, now)
            if finished is not None:
                delayed = self.clock.callLater(JUDGE_DELAY, self._finish_now, finished)
                self._finishing[finished.linkedid] = (delayed, finished)

    def _finish_now(self, call: TrackedCall) -> None:
        self._finishing.pop(call.linkedid, None)
        self.finish(call)

    # -- one finished call --------------------------------------------------

    def _owner(self, endpoint: str) -> str | None:
        user = self.directory.owner_of(endpoint)
        return user.extension if user else None

    def _person(self, endpoint: str | None) -> str | None:
        """The user a device belongs to (the journal names people, not phones)."""
        return person_of(self.directory, endpoint) if endpoint else endpoint

    def facts(self, call: TrackedCall) -> tuple[MissedCall, Contact | None]:
        suppressed = call.suppressed
        contact = None if suppressed else self.contacts.lookup(call.caller_num)
        internal_user = None if suppressed else self.directory.owner_of(call.caller_num)
        caller_num = call.caller_num
        if internal_user is not None and caller_num in internal_user.devices:
            caller_num = internal_user.extension  # a user's softphone is the user: one caller
        internal = internal_user is not None or (
            call.caller_endpoint is not None and call.caller_endpoint == call.caller_num
        )
        legs = [
            (leg.endpoint, leg.ring_start or 0.0, leg.ring_seconds, leg.answered_here)
            for leg in call.rung_legs()
        ]
        facts = MissedCall(
            linkedid=call.linkedid,
            time=call.started,
            caller_key="" if suppressed else self.contacts.normalize(caller_num),
            internal=internal,
            suppressed=suppressed,
            resolved=contact is not None or internal_user is not None,
            participants=participants_by_user(legs, self._owner),
            answered_by=self._person(call.answered_by()),
        )
        return facts, contact

    def finish(self, call: TrackedCall) -> Decision:
        facts, contact = self.facts(call)
        users = [p.user for p in facts.participants]
        rules = Rules.from_settings(self.settings.get, self.contacts.plan.normalize)
        subscribers = [
            u for u in users if (user := self.directory.user(u)) and user.email and self.journal.opted_in(u)
        ]
        decision = decide(
            facts,
            rules,
            history=self.journal.history(users),
            last_login=self.journal.last_logins(users),
            subscribers=subscribers,
        )
        by_user = {p.user: p for p in facts.participants}
        entries = {
            u: Entry(
                id=call.linkedid,
                time=call.started,
                caller_num="" if facts.suppressed else call.caller_num,
                caller_name=self._caller_name(call, contact),
                caller_key=facts.caller_key,
                ring_seconds=round(by_user[u].ring_seconds, 1),
                answered_by=facts.answered_by,
                mailed=u in decision.mail,
            )
            for u in decision.journal
        }
        get = self.settings.get
        changes = self.journal.caller_additions(
            decision.journal, facts.caller_key, call.started, self.clock.seconds()
        )
        if get("JOURNAL_ENABLED"):
            changes += self.journal.additions(
                entries,
                now=self.clock.seconds(),
                keep_days=get("JOURNAL_RETENTION_DAYS"),
                max_entries=get("JOURNAL_MAX_ENTRIES"),
            )
        for mailed in decision.mail:
            try:
                changes += self._mail(call, facts, contact, mailed, by_user[mailed].ring_seconds)
            except Exception:
                log.failure("missed-call mail for {user} could not be made", user=mailed)
        if changes:
            self.store.apply(changes)
            self.outbox.wake()
        log.info(
            "call {linkedid} from {caller!r}: missed by {journal}, mail to {mail} {reasons}",
            linkedid=call.linkedid,
            caller=call.caller_num,
            journal=list(decision.journal),
            mail=list(decision.mail),
            reasons=dict(decision.reasons),
        )
        self._observers.notify(call, decision)
        return decision

    def _caller_name(self, call: TrackedCall, contact: Contact | None) -> str:
        """The journal names the caller as the directory knows them; the caller ID name
        (which the caller chose) only when neither contacts nor users know the number."""
        if contact is not None:
            return contact.name
        user = self.directory.owner_of(call.caller_num) if call.caller_num else None
        return user.name if user is not None else call.caller_name

    def _mail(
        self, call: TrackedCall, facts: MissedCall, contact: Contact | None, user: str, ring_seconds: float
    ) -> list[tuple[str, str, Any]]:
        record = self.directory.user(user)
        if record is None or not is_address(record.email):
            return []
        get = self.settings.get
        language = mail_language(record.language, get("MC_LANGUAGE"), self.language, self.renderer.languages)
        number = "" if facts.suppressed else call.caller_num
        notice = Notice(
            caller_num=number,
            caller_name=call.caller_name,
            suppressed=facts.suppressed,
            time=call.started,
            user_name=record.name,
            user_extension=record.extension,
            ring_seconds=ring_seconds,
            link=link_for(number, get("MC_LINK_PREFIX")),
            contact_name=contact.name if contact else "",
            contact_organization=contact.organization if contact else "",
            contact_email=contact.email if contact else "",
            answered_by=facts.answered_by,
        )
        rendered = self.renderer.render(notice, language)
        appliance = address("Telefonanlage" if language == "de" else "Phone system", self.sender)
        sender, on_behalf_of = appliance, None
        if get("MC_CALLER_AS_SENDER") and contact is not None and is_address(contact.email):
            sender, on_behalf_of = address(contact.name, contact.email), appliance
        attachments = []
        if get("MC_ATTACH_VCARD") and contact is not None and contact.vcard:
            attachments.append(("contact.vcf", "vcard", contact.vcard))
        key = f"{call.linkedid}:{user}"
        message = compose(
            sender=sender,
            on_behalf_of=on_behalf_of,
            to=address(record.name, record.email),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            now=self.clock.seconds(),
            message_id=message_id(key, self.sender),
            attachments=attachments,
        )
        return self.outbox.enqueue_change(key, self.sender, [record.email], message)
