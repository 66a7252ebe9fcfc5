"""The FastAGI side of callback: the offer to an unreachable target's caller,
and the feature codes ``*39`` / ``#39`` (request / cancel) and ``*78`` /
``#78`` (do not disturb on / off).

Who asks is taken from the channel (``PJSIP/100-…`` is endpoint 100), never
from the caller ID, which the caller controls; an external caller's number is
used only for the recall over the trunk and only when it is a plain number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from appliance import settings as keys
from appliance.asterisk.fastagi import AGIArgs
from appliance.callback import prompts
from appliance.callback.engine import CallbackEngine, Kind, Outcome
from appliance.dialplan import Call, Unreachable
from appliance.metering import NO_METRICS, IMetrics
from appliance.numbers import EXTENSION, EXTERNAL_NUMBER
from appliance.pbx import Presence, endpoint_of
from appliance.settings import Settings

log = Logger()

DIGIT_WAIT_MS = 5000
BUSY_TONE_MS = 15000
"""How long the busy tone plays (and the key is accepted) with CC_BUSY_TONE."""
ALL_KEYS = prompts.KEYS
LAST_UNANSWERED = "callbacks_ccnr"
"""Store namespace: requester → the internal number that last did not answer them."""


class OfferSession(Protocol):
    """What the offer needs of a FastAGI session (`FastAGIProtocol`)."""

    args: AGIArgs
    env: dict[str, str]

    def answer(self) -> Deferred[None]: ...

    def exec_(self, application: str, options: str = "") -> Deferred[int]: ...

    def streamFile(
        self, name: str, escapeDigits: str = "", offset: int | None = None
    ) -> Deferred[tuple[str | None, int]]: ...

    def waitForDigit(self, timeoutMs: int) -> Deferred[str | None]: ...

    def getVariable(self, name: str) -> Deferred[str | None]: ...

    def setVariable(self, name: str, value: str) -> Deferred[None]: ...


class Offers:
    """The unreachable handler and the feature codes, over one engine."""

    def __init__(
        self,
        engine: CallbackEngine,
        settings: Settings,
        store: Any,
        language_of: Callable[[str], str],
        presence: Callable[[str], Presence],
        person: Callable[[str], str] = lambda endpoint: endpoint,
        metrics: IMetrics = NO_METRICS,
    ) -> None:
        self.person = person
        """Endpoint -> its user's extension: a call from a user's softphone is the user."""
        self.metrics = metrics
        self.engine = engine
        self.settings = settings
        self.store = store
        self.language_of = language_of
        self.presence = presence

    # -- the unreachable handler -------------------------------------------------

    @inlineCallbacks
    def unreachable(self, session: OfferSession, call: Call, reason: Unreachable) -> Any:
        self.metrics.callback_offered(reason.value)
        s = self.settings
        target = call.number
        if reason is Unreachable.NO_ANSWER:
            return None  # remembered by `unanswered`; requested later with *39
        requester, origin = self._requester(session, call)
        offer = (
            s.get(keys.CC_OFFER)
            and requester is not None
            and requester != target
            and EXTENSION.match(target) is not None
            and (origin == "internal" or s.get(keys.CC_EXTERNAL))
        )
        if not offer or requester is None:
            yield self._plain(session, reason)
            return None
        key = s.get(keys.CC_DTMF_KEY)
        yield session.answer()
        lang = self.language_of(requester if origin == "internal" else "")
        if s.get(keys.CC_BUSY_TONE):
            # Seed 000: the busy tone replaces the announcement; the key still counts.
            yield session.exec_("Playtones", "busy")
            digit = yield session.waitForDigit(BUSY_TONE_MS)
            yield session.exec_("StopPlaytones")
        else:
            digit, _ = yield session.streamFile(prompts.offer_prompt(lang, key), ALL_KEYS)
            if digit is None:
                digit = yield session.waitForDigit(DIGIT_WAIT_MS)
        if digit != key:
            log.info(
                "callback offer to {requester} for {target} not taken", requester=requester, target=target
            )
            return None
        outcome = self.engine.request(requester, target, Kind.BUSY, origin)
        log.info(
            "callback request {requester} -> {target} ({reason}): {outcome}",
            requester=requester,
            target=target,
            reason=reason.value,
            outcome=outcome.value,
        )
        ok = outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE)
        yield session.streamFile(prompts.prompt(lang, "cc-confirm" if ok else "cc-refused"))
        return outcome

    def unanswered(self, call: Call) -> None:
        """A call to ``call.number`` rang and was not answered (timeout, the
        caller's CANCEL, a no-answer forward): it is now the caller's "last
        unanswered number" for a plain ``*39``."""
        endpoint = endpoint_of(call.channel) if call.origin == "internal" else None
        requester = self.person(endpoint) if endpoint else None
        target = call.number
        if requester and EXTENSION.match(requester) and EXTENSION.match(target) and requester != target:
            self.store.put(LAST_UNANSWERED, requester, target)
            log.info("last unanswered number of {requester}: {target}", requester=requester, target=target)

    def _requester(self, session: OfferSession, call: Call) -> tuple[str | None, str]:
        if call.origin == "internal":
            return self._own(session), "internal"
        number = call.caller_num
        return (number if EXTERNAL_NUMBER.match(number) else None), "external"

    def _own(self, session: OfferSession) -> str | None:
        """The calling user's extension, from the channel's endpoint (any of their devices)."""
        name = endpoint_of(session.env.get("agi_channel", ""))
        person = self.person(name) if name else None
        return person if person and EXTENSION.match(person) else None

    def _plain(self, session: OfferSession, reason: Unreachable) -> Deferred[int]:
        """What the caller meets without an offer: busy, or congestion for a logged-out line."""
        if reason is Unreachable.LOGGED_OUT:
            return session.exec_("Congestion", "5")
        return session.exec_("Busy", "5")

    # -- feature codes -----------------------------------------------------------

    @inlineCallbacks
    def request_code(self, session: OfferSession, code: str, rest: str) -> Any:
        """``*39``: callback to the last unanswered number; ``*39<target>``: to that one.
        ``*39<own number>`` is one's own BLF key (from any of one's phones): it cancels
        one's requests, as ``#39``."""
        requester = self._own(session)
        if requester is not None and rest == requester:
            return (yield self.cancel_code(session, "#39", ""))
        yield session.answer()
        lang = self.language_of(requester or "")
        target = rest or (self.store.get(LAST_UNANSWERED, requester) if requester else None) or ""
        allowed = self.settings.get(keys.CC_OFFER) and self.settings.get(keys.CC_CCNR_ENABLED)
        outcome = Outcome.INVALID
        if allowed and requester and EXTENSION.match(target):
            kind = Kind.CCNR if self.presence(target) is Presence.IDLE else Kind.BUSY
            outcome = self.engine.request(requester, target, kind)
        log.info(
            "callback code {code}{rest} from {requester}: {outcome}",
            code=code,
            rest=rest,
            requester=requester,
            outcome=outcome.value,
        )
        ok = outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE)
        yield session.streamFile(prompts.prompt(lang, "cc-confirm" if ok else "cc-refused"))
        return outcome

    @inlineCallbacks
    def cancel_code(self, session: OfferSession, code: str, rest: str) -> Any:
        """``#39``: cancel all of the caller's requests; ``#39<target>``: that one."""
        requester = self._own(session)
        yield session.answer()
        lang = self.language_of(requester or "")
        gone = []
        if requester and (not rest or EXTENSION.match(rest)):
            gone = self.engine.cancel(requester, rest or None)
        yield session.streamFile(prompts.prompt(lang, "cc-cancelled" if gone else "cc-refused"))
        return len(gone)

    @inlineCallbacks
    def dnd_code(self, session: OfferSession, code: str, rest: str) -> Any:
        """``*78`` / ``#78``: do not disturb on / off for the calling person, as
        Asterisk presence ``CustomPresence:<ext>`` (kept in Asterisk's astdb).
        ``*78<own number>`` is one's own BLF key, pressed on any of one's phones: it
        toggles, from the state Asterisk holds now.  Another's number is refused:
        nobody switches a colleague's DND."""
        extension = self._own(session)
        yield session.answer()
        lang = self.language_of(extension or "")
        if extension is None or rest not in ("", extension):
            yield session.streamFile(prompts.prompt(lang, "cc-refused"))
            return None
        presence = f"CustomPresence:{extension}"
        on = code.startswith("*")
        if rest and on:
            on = (yield session.getVariable(f"PRESENCE_STATE({presence},value)")) != "dnd"
        yield session.setVariable(f"PRESENCE_STATE({presence})", "dnd,," if on else "available,,")
        log.info(
            "do-not-disturb of {extension}: {state} ({code}{rest})",
            extension=extension,
            state="on" if on else "off",
            code=code,
            rest=rest,
        )
        yield session.streamFile(prompts.prompt(lang, "cc-dnd-on" if on else "cc-dnd-off"))
        return on
