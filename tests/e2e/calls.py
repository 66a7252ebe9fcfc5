"""Call helpers shared by the integration tests (API, metrics, schedules)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks

from appliance.pbx import ChannelChanged
from tests.e2e.phones import Phone
from tests.e2e.waiting import wait_model, wait_until


def lines_rung(appliance: Any) -> list[str]:
    """The endpoints of every channel created from now on, once each, in order."""
    seen: list[str] = []
    before = set(appliance.pbx.channels)  # calls already up: a held call's late updates ring nothing

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and not change.hungup and change.channel.uniqueid not in before:
            endpoint = change.channel.endpoint or ""
            if endpoint not in seen:
                seen.append(endpoint)

    appliance.pbx.subscribe(record)
    return seen


@inlineCallbacks
def registered_here(reactor: Any, appliance: Any, phone: Phone) -> Any:
    """Register ``phone`` and wait until the model shows its contact at this phone's
    port (an earlier test's phone for the same line may have left another)."""
    pbx = appliance.pbx
    yield phone.register().done
    yield wait_model(
        reactor,
        pbx,
        lambda: any(f":{phone.port}" in uri for uri in pbx.endpoint(phone.extension).contacts),
        f"{phone.extension} registered at its port",
    )


@inlineCallbacks
def answered_call(reactor: Any, appliance: Any, caller: Phone, number: str, answerer: Phone) -> Any:
    """``answerer`` logs in here and answers; ``caller`` calls ``number``; both must succeed."""
    yield registered_here(reactor, appliance, answerer)
    answering = answerer.answer(ring_ms=200)
    calling = caller.call(number, hold_ms=300)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results


def call_finished(reactor: Any, appliance: Any, caller: str) -> Deferred[Any]:
    pbx = appliance.pbx
    return wait_model(reactor, pbx, lambda: not pbx.channels_of(caller), f"{caller}'s call finished")


def route_finished(reactor: Any, appliance: Any, routed: list[Any]) -> Deferred[Any]:
    """Once the call route finished a call (``routed``: the fixture of that name)."""
    return wait_until(
        reactor, appliance.call_extensions.on_finished, lambda: routed, "the call route finished"
    )
