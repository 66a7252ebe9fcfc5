"""Mail out through the SMTP relay, with a persistent outbox.

`compose` builds the message.  Header values are made safe here, because the
caller's name and number are attacker-controlled: control characters (CR, LF
…) are removed before a value reaches a header, addresses go through
``email.headerregistry.Address``, and ``email.policy.SMTP`` encodes non-ASCII
words (RFC 2047), so no caller name can add or break a header.

`SMTPRelay` sends one message with ``twisted.mail``'s ``ESMTPSenderFactory``:
STARTTLS when ``starttls = required`` (and then *only* with TLS:
``requireTransportSecurity``), AUTH when a username is configured — which
config.py allows only together with ``starttls = required``, so credentials
never travel in clear text.

`Outbox` keeps every message in store namespace ``outbox`` until the relay
accepted it, retries with backoff (injected clock and policy) and survives
restarts.  Delivery semantics — at least once, with a stable Message-ID:

- a message is enqueued in the same store transaction as the journal entry
  that caused it, under a deterministic key (call + user), so it is created
  exactly once;
- it is marked ``sent`` in one durable store write right after the relay's
  final 250; a sent entry is never sent again (kept a day, then purged);
- the one window left is a crash (or shutdown mid-transaction) after the
  relay accepted the DATA and before that write.  Then the message is sent
  again after the restart, with the *same* Message-ID, so mail clients and
  most servers fold the copies into one.  We chose this over at-most-once
  because a lost missed-call notice is worse than a duplicate in a window of
  milliseconds, and the SMTP protocol offers no way to close it.
"""

from __future__ import annotations

import base64
import datetime
import email.policy
import re
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from io import BytesIO
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import Logger
from twisted.mail.smtp import ESMTPSenderFactory, SMTPDeliveryError
from twisted.python.failure import Failure

from appliance.config import ConfigError, SMTPConfig
from appliance.metering import NO_METRICS, IMetrics
from appliance.observers import Observers
from appliance.store import DELETE, Change, IKeyValueStore, JSONValue

log = Logger()

OUTBOX = "outbox"
KEEP_SENT_SECONDS = 86400.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


def header_text(value: str, limit: int = 200) -> str:
    """One line of harmless text: control characters become spaces, runs of space
    collapse, and the length is bounded."""
    return " ".join(_CONTROL.sub(" ", str(value)).split())[:limit]


def is_address(value: str) -> bool:
    return bool(_ADDRESS.match(value or ""))


def address(name: str, addr: str) -> Address:
    """An address header value; ``addr`` must pass `is_address`."""
    if not is_address(addr):
        raise ValueError(f"not an e-mail address: {addr!r}")
    username, domain = addr.rsplit("@", 1)
    return Address(display_name=header_text(name), username=username, domain=domain)


def compose(
    *,
    sender: Address,
    to: Address,
    subject: str,
    text: str,
    html: str,
    now: float,
    message_id: str,
    reply_to: Address | None = None,
    on_behalf_of: Address | None = None,
    attachments: Sequence[tuple[str, str, str]] = (),
) -> EmailMessage:
    """A multipart message (text, HTML, attachments as (filename, subtype, text))."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    if on_behalf_of is not None:
        message["Sender"] = on_behalf_of
    message["To"] = to
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(datetime.datetime.fromtimestamp(now).astimezone())
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for filename, subtype, content in attachments:
        message.add_attachment(content, subtype=subtype, filename=header_text(filename))
    return message


def message_id(key: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] or "appliance"
    return make_msgid(idstring=re.sub(r"[^A-Za-z0-9.-]", "-", key)[:64], domain=domain)


Send = Callable[[str, list[str], bytes], Deferred[Any]]
"""send(envelope sender, recipients, message bytes): fires once the relay accepted it."""


class SMTPRelay:
    """One connection per message to the configured relay."""

    def __init__(self, config: SMTPConfig, reactor: IReactorTCP, timeout: float = 60.0) -> None:
        self.config = config
        self.reactor = reactor
        self.timeout = timeout
        self.tls_options: Any = None
        """Verify the relay against ``cafile`` (an internal CA); None: the system's roots."""
        if config.cafile is not None and config.starttls == "required":
            try:
                certificates = _certificates(config.cafile.read_bytes())
            except Exception as error:  # OSError, or pyOpenSSL's crypto.Error for bad PEM
                raise ConfigError(f"[smtp] cafile: {config.cafile}: cannot load: {error}") from None
            if not certificates:
                raise ConfigError(f"[smtp] cafile: {config.cafile}: holds no PEM certificate")
            trusted = trustRootFromCertificates(certificates)
            self.tls_options = optionsForClientTLS(config.host, trustRoot=trusted)

    def factory(self, sender: str, recipients: list[str], data: bytes, result: Deferred[Any]) -> Any:
        """The ESMTP client factory for one message (separate, so tests can check it)."""
        config = self.config
        tls = config.starttls == "required"
        username = config.username.encode() if config.username else None
        return ESMTPSenderFactory(
            username,
            config.password.encode() if username else None,
            sender,
            recipients,
            # twisted.mail turns every LF into CRLF itself (and dot-stuffs).
            BytesIO(data.replace(b"\r\n", b"\n")),
            result,
            retries=0,
            timeout=int(self.timeout),
            heloFallback=not (tls or username),
            requireAuthentication=username is not None,
            requireTransportSecurity=tls or username is not None,
            hostname=config.host if tls else None,
            contextFactory=self.tls_options,
        )

    def send(self, sender: str, recipients: list[str], data: bytes) -> Deferred[Any]:
        connector: Any = None

        def cancel(_d: Deferred[Any]) -> None:
            factory.sendFinished = True
            if factory.currentProtocol is not None:
                factory.currentProtocol.transport.abortConnection()
            elif connector is not None:
                connector.disconnect()

        result: Deferred[Any] = Deferred(cancel)
        factory = self.factory(sender, recipients, data, result)
        connector = self.reactor.connectTCP(self.config.host, self.config.port, factory, timeout=self.timeout)
        return result


def _certificates(pem: bytes) -> list[Certificate]:
    """Every certificate of a PEM bundle."""
    marker = b"-----END CERTIFICATE-----"
    parts = [part + marker for part in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in part]
    return [Certificate.loadPEM(part) for part in parts]


def default_backoff() -> Callable[[int], float]:
    """30 s, 60 s, 2 min … up to an hour, with jitter."""
    policy: Callable[[int], float] = backoffPolicy(initialDelay=30.0, maxDelay=3600.0, factor=2.0)
    return policy


def _permanent(failure: Failure) -> bool:
    error = failure.value
    return isinstance(error, SMTPDeliveryError) and 500 <= int(getattr(error, "code", 0) or 0) < 600


class Outbox(Service):
    """Deliver queued messages one at a time; retry with backoff; never lose one."""

    def __init__(
        self,
        store: IKeyValueStore,
        send: Send,
        clock: IReactorTime,
        backoff: Callable[[int], float] | None = None,
        metrics: IMetrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        if metrics is not NO_METRICS:
            store.subscribe(self._stored)
        self.send = send
        self.clock = clock
        self.backoff = backoff or default_backoff()
        self._timer: IDelayedCall | None = None
        self._sending: Deferred[Any] | None = None
        self._observers: Observers[[str, str]] = Observers("mail outbox")

    # -- queue --------------------------------------------------------------

    def entry(self, key: str) -> JSONValue:
        return self.store.get(OUTBOX, key)

    def entries(self) -> list[tuple[str, JSONValue]]:
        return self.store.items(OUTBOX)

    def enqueue_change(
        self, key: str, sender: str, recipients: list[str], message: EmailMessage
    ) -> list[tuple[str, str, JSONValue]]:
        """The store change that queues ``message`` (empty if ``key`` was queued
        before: a message is queued once).  Apply it, then call `wake`."""
        if self.store.get(OUTBOX, key) is not None:
            return []
        now = self.clock.seconds()
        record = {
            "sender": sender,
            "to": list(recipients),
            "data": base64.b64encode(message.as_bytes()).decode("ascii"),
            "message_id": str(message["Message-ID"]),
            "created": now,
            "state": "pending",
            "attempts": 0,
            "next": now,
            "error": "",
        }
        return [(OUTBOX, key, record)]

    def enqueue(self, key: str, sender: str, recipients: list[str], message: EmailMessage) -> None:
        self.store.apply(self.enqueue_change(key, sender, recipients, message))
        self.wake()

    def _stored(self, change: Change) -> None:
        """A new outbox record is a queued mail, whoever applied the change."""
        if change.namespace == OUTBOX and change.old is DELETE and change.new is not DELETE:
            self.metrics.mail_queued()

    def subscribe(self, observer: Callable[[str, str], object]) -> Callable[[], None]:
        """observer(key, state) after each attempt ("sent", "pending", "failed")."""
        return self._observers.subscribe(observer)

    # -- service ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        now = self.clock.seconds()
        self.store.apply(
            (OUTBOX, key, DELETE)
            for key, record in self.entries()
            if isinstance(record, dict)
            and record.get("state") == "sent"
            and now - float(record.get("sent", now)) > KEEP_SENT_SECONDS
        )
        self.wake()

    def stopService(self) -> Any:
        result = super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._sending is not None:
            self._sending.cancel()  # stays pending; sent again after the restart
        return result

    def wake(self) -> None:
        """Look for due messages now (after enqueueing, or to retry at once)."""
        self._schedule(0.0)

    def retry_now(self) -> None:
        """Make every pending message due now (admin action, tests)."""
        now = self.clock.seconds()
        self.store.apply(
            (OUTBOX, key, {**record, "next": now})
            for key, record in self.entries()
            if isinstance(record, dict) and record.get("state") == "pending"
        )
        self.wake()

    def _schedule(self, delay: float) -> None:
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, delay), self._run)

    def _run(self) -> None:
        self._timer = None
        if self._sending is not None or not self.running:
            return
        now = self.clock.seconds()
        pending = sorted(
            (float(record.get("next", 0)), key, record)
            for key, record in self.entries()
            if isinstance(record, dict) and record.get("state") == "pending"
        )
        if not pending:
            return
        due, key, record = pending[0]
        if due > now:
            self._schedule(due - now)
            return
        data = base64.b64decode(record["data"])
        log.info("sending mail {key} to {to}", key=key, to=record["to"])
        sending = maybeDeferred(self.send, record["sender"], list(record["to"]), data)
        self._sending = sending
        sending.addCallbacks(self._sent, self._failed, callbackArgs=(key,), errbackArgs=(key,))
        sending.addErrback(lambda f: log.failure("outbox bookkeeping failed", f))
        sending.addBoth(self._next)

    def _next(self, _result: object) -> None:
        self._sending = None
        self.wake()

    def _update(self, key: str, **changes: Any) -> str:
        record = self.store.get(OUTBOX, key)
        if not isinstance(record, dict):
            return "gone"
        record.update(changes)
        self.store.put(OUTBOX, key, record)
        state = str(record["state"])
        self.metrics.mail_attempted(state)
        self._observers.notify(key, state)
        return state

    def _sent(self, _result: object, key: str) -> None:
        self._update(key, state="sent", sent=self.clock.seconds(), error="")
        log.info("mail {key} sent", key=key)

    def _failed(self, failure: Failure, key: str) -> None:
        record = self.store.get(OUTBOX, key) or {}
        attempts = int(record.get("attempts", 0)) + 1
        error = header_text(str(failure.value), 300)
        if failure.check(CancelledError):
            return  # shutting down; the message stays due
        if _permanent(failure):
            self._update(key, state="failed", attempts=attempts, error=error)
            log.error("mail {key} refused by the relay: {error}", key=key, error=error)
            return
        delay = self.backoff(attempts)
        self._update(key, attempts=attempts, next=self.clock.seconds() + delay, error=error)
        log.warn(
            "mail {key} not delivered ({error}); retry in {delay:.0f}s", key=key, error=error, delay=delay
        )
