"""The small metrics interface the features report through.

Each feature is handed an `IMetrics` where it is built (`appliance.tap`) and
tells it what happened (a forward applied, a mail sent, a store write and its
duration); `NO_METRICS` is the default that counts nothing, so a feature and
its tests need no metrics at all.  `appliance.metrics.Metrics` turns the
reports into Prometheus counters.  Kept free of prometheus_client so any
feature may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, maybeDeferred
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from appliance.asterisk.agi import AGIConnectionLost


class IMetrics(Interface):
    """What the features report; every method returns nothing and never fails a call."""

    def call_routed(origin: str) -> None:  # noqa: N805
        """The call route finished a call from ``origin`` (internal, external)."""

    def forward_applied() -> None:
        """A leg is dialled because of a forward."""

    def callback_offered(reason: str) -> None:  # noqa: N805
        """A call met an unreachable line (busy, dnd, logged_out, no_answer)."""

    def callback_requested() -> None:
        """A new callback request was stored."""

    def recall_started() -> None:
        """A recall is due (ring or mail the requester)."""

    def callback_removed(why: str) -> None:  # noqa: N805
        """A callback request ended (done, expired, attempts, cancelled, ...)."""

    def mail_queued() -> None:
        """A new mail is in the outbox."""

    def mail_attempted(state: str) -> None:  # noqa: N805
        """A delivery attempt ended: sent, failed (for good) or pending (retried)."""

    def ami_login() -> None:
        """The AMI link logged in (the first time or again)."""

    def fastagi_session(script: str) -> None:  # noqa: N805
        """A FastAGI session for ``script`` reached its handler."""

    def fastagi_failed(script: str) -> None:  # noqa: N805
        """The handler of a ``script`` session failed (not a hang-up)."""

    def store_written(seconds: float) -> None:  # noqa: N805
        """One store transaction was written in ``seconds``."""

    def login_failed() -> None:
        """A web login or API/metrics token check failed."""


@implementer(IMetrics)
class NoMetrics:
    """Counts nothing: the default of every feature."""

    def call_routed(self, origin: str) -> None:
        pass

    def forward_applied(self) -> None:
        pass

    def callback_offered(self, reason: str) -> None:
        pass

    def callback_requested(self) -> None:
        pass

    def recall_started(self) -> None:
        pass

    def callback_removed(self, why: str) -> None:
        pass

    def mail_queued(self) -> None:
        pass

    def mail_attempted(self, state: str) -> None:
        pass

    def ami_login(self) -> None:
        pass

    def fastagi_session(self, script: str) -> None:
        pass

    def fastagi_failed(self, script: str) -> None:
        pass

    def store_written(self, seconds: float) -> None:
        pass

    def login_failed(self) -> None:
        pass


NO_METRICS: IMetrics = NoMetrics()


class MeteredRoute:
    """A FastAGI route handler that reports its sessions and failures; its other
    attributes are the handler's (tools and tests reach the call router through it)."""

    def __init__(self, script: str, handler: Callable[[Any], Any], metrics: IMetrics) -> None:
        self.script = script
        self.handler = handler
        self.metrics = metrics

    def __call__(self, agi: Any) -> Any:
        self.metrics.fastagi_session(self.script)
        return maybeDeferred(self.handler, agi).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(AGIConnectionLost, CancelledError):
            self.metrics.fastagi_failed(self.script)
        return failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handler, name)
