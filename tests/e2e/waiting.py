"""Wait for the PBX model to reach a state: on its change events, with a bound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from appliance.pbx import PBXModel


class Timeout(AssertionError):
    pass


_aborts: list[Callable[[Exception], None]] = []
_broken: list[Exception] = []


def abort_waits(reason: Exception) -> None:
    """End every pending wait, and fail every later one, with ``reason``: the test
    cannot go on (a phone that never started), so it should not wait out its bounds."""
    _broken.append(reason)
    for abort in list(_aborts):
        abort(reason)


def clear_aborts() -> None:
    """A new test starts with nothing broken."""
    _broken.clear()


def wait_until(
    reactor: IReactorTime,
    subscribe: Callable[[Callable[[Any], None]], Callable[[], None]],
    check: Callable[[], Any],
    what: str,
    timeout: float = 15.0,
) -> Deferred[Any]:
    """Fire with ``check()``'s first truthy value, re-checked on every event."""
    done: Deferred[Any] = Deferred()
    if _broken:
        done.errback(_broken[0])
        return done
    value = check()
    if value:
        done.callback(value)
        return done

    def on_event(_event: object) -> None:
        if done.called:
            return
        result = check()
        if result:
            finish()
            done.callback(result)

    def expire() -> None:
        finish()
        done.errback(Timeout(f"not within {timeout}s: {what}"))

    def abort(reason: Exception) -> None:
        finish()
        done.errback(reason)

    unsubscribe = subscribe(on_event)
    timer = reactor.callLater(timeout, expire)
    _aborts.append(abort)

    def finish() -> None:
        unsubscribe()
        _aborts.remove(abort)
        if timer.active():
            timer.cancel()

    return done


def wait_model(
    reactor: IReactorTime, model: PBXModel, check: Callable[[], Any], what: str, timeout: float = 15.0
) -> Deferred[Any]:
    return wait_until(reactor, model.subscribe, check, what, timeout)


def wait_synced(reactor: IReactorTime, appliance: Any, timeout: float = 20.0) -> Deferred[Any]:
    """Fire with ``appliance`` once its PBX model has synced with the lab."""
    pbx = appliance.pbx
    synced = wait_model(reactor, pbx, lambda: pbx.synced, "the appliance's first PBX resync", timeout)
    return synced.addCallback(lambda _: appliance)
