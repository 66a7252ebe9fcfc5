"""One observer list, one rule: a failing observer is logged and the others still hear.

First the type itself, then each part of the appliance that keeps observers:
an observer that raises there neither breaks what was being done nor keeps
the next observer from hearing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, capturedLogs

from appliance.directory import Directory, User
from appliance.holding import HoldingStore
from appliance.observers import Observers
from appliance.pbx import PBXModel
from appliance.testing import MemoryStore
from tests.unit.test_mail import FakeRelay, outbox
from tests.unit.test_store_faults import FullDisk
from tests.unit.test_web import make_lab


def broken(*args: Any) -> None:
    raise ZeroDivisionError("observer bug")


def failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    """The logged failures (of observers: nothing else fails in these tests)."""
    return [e for e in events if "log_failure" in e and e.get("log_level") == LogLevel.critical]


def test_observers_are_told_in_order() -> None:
    """Observers hear each notification with its arguments, in the order they subscribed."""
    heard: list[tuple[str, int, str]] = []
    observers: Observers[[int, str]] = Observers("test")
    observers.subscribe(lambda number, text: heard.append(("first", number, text)))
    observers.subscribe(lambda number, text: heard.append(("second", number, text)))
    observers.notify(1, "one")
    assert heard == [("first", 1, "one"), ("second", 1, "one")]


def test_unsubscribe_removes_exactly_one_subscription() -> None:
    """The same callable subscribed twice is told twice; unsubscribing one (even twice)
    leaves the other."""
    heard: list[int] = []
    observers: Observers[[int]] = Observers("test")
    first = observers.subscribe(heard.append)
    observers.subscribe(heard.append)
    observers.notify(1)
    first()
    first()
    observers.notify(2)
    assert heard == [1, 1, 2] and len(observers) == 1


def test_observer_unsubscribed_during_a_notification_is_not_told() -> None:
    """An observer that another one unsubscribes while they are being told hears nothing more."""
    heard: list[str] = []
    observers: Observers[[]] = Observers("test")

    def first() -> None:
        heard.append("first")
        later()

    observers.subscribe(first)
    later = observers.subscribe(lambda: heard.append("second"))
    observers.notify()
    assert heard == ["first"]


def test_raising_observer_is_logged_and_the_others_are_told() -> None:
    """An observer that raises is logged (critical, with the failure and the arguments)
    and the next one is still called; notify itself does not raise."""
    heard: list[int] = []
    observers: Observers[[int]] = Observers("test thing")
    observers.subscribe(broken)
    observers.subscribe(heard.append)
    with capturedLogs() as events:
        observers.notify(7)
    assert heard == [7]
    [logged] = failures(events)
    assert logged["log_failure"].check(ZeroDivisionError)
    assert logged["what"] == "test thing" and logged["about"] == "(7,)"


def test_failing_deferred_of_an_observer_is_logged() -> None:
    """An observer whose Deferred fails later is logged then, once; a Deferred that
    succeeds logs nothing."""
    pending: Deferred[None] = Deferred()
    observers: Observers[[str]] = Observers("test")
    observers.subscribe(lambda _text: pending)
    observers.subscribe(lambda _text: fail(ValueError("late")))
    with capturedLogs() as events:
        observers.notify("x")
        pending.callback(None)
    [logged] = failures(events)
    assert logged["log_failure"].check(ValueError)


def test_describe_gives_the_log_event_its_fields() -> None:
    """With ``describe``, the arguments become fields of the log event."""
    observers: Observers[[str, str]] = Observers("test", lambda ns, key: {"namespace": ns, "key": key})
    observers.subscribe(broken)
    with capturedLogs() as events:
        observers.notify("settings", "CC_OFFER")
    [logged] = failures(events)
    assert (logged["namespace"], logged["key"]) == ("settings", "CC_OFFER")
    assert logged["about"] == "namespace=settings key=CC_OFFER"


# -- the places that keep observers --------------------------------------------


def test_raising_login_observer_does_not_stop_the_login() -> None:
    """A login observer that raises is logged; the login succeeds and later observers hear of it."""
    lab = make_lab()
    heard: list[str] = []
    lab.web.on_login(broken)
    lab.web.on_login(heard.append)
    with capturedLogs() as events:
        reply = lab.browser().login("100", "anna-secret")
    assert reply.code == 303 and heard == ["100"]
    assert len(failures(events)) == 1


def test_raising_outbox_observer_does_not_stop_the_mail() -> None:
    """An outbox observer that raises is logged; the mail is still marked sent and the
    next observer hears of it."""
    clock, relay, store = Clock(), FakeRelay(), MemoryStore()
    box = outbox(store, relay, clock)
    heard: list[tuple[str, str]] = []
    box.subscribe(broken)
    box.subscribe(lambda key, state: heard.append((key, state)))
    message = EmailMessage()
    message["Message-ID"] = "<id-1@example.org>"
    message.set_content("text")
    with capturedLogs() as events:
        box.enqueue("call1:200", "pbx@example.org", ["max@example.org"], message)
        clock.advance(0)
    assert box.entry("call1:200")["state"] == "sent" and heard == [("call1:200", "sent")]
    assert len(failures(events)) == 1


def test_raising_holding_listener_does_not_stop_holding() -> None:
    """A listener of the holding store that raises is logged; the write is held and
    the next listener hears of it."""
    disk, clock = FullDisk(), Clock()
    store = HoldingStore(disk, clock, retry=5.0)
    states: list[bool] = []
    store.on_holding(broken)
    store.on_holding(states.append)
    disk.full = True
    with capturedLogs() as events:
        store.put("journal", "100", ["kept"])
    assert store.holding == 1 and states == [True]
    assert len(failures(events)) == 1


def test_raising_directory_listener_does_not_stop_the_change() -> None:
    """A directory listener that raises is logged; the user is stored and indexed and
    the next listener hears of it."""
    directory = Directory(MemoryStore())
    heard: list[str] = []
    directory.on_change(broken)
    directory.on_change(lambda: heard.append("changed"))
    with capturedLogs() as events:
        directory.put_user(User("100", "Anna"))
    assert directory.owner_of("100") is not None and heard == ["changed"]
    assert len(failures(events)) == 1


def test_raising_pbx_observer_does_not_stop_the_model() -> None:
    """A PBX model observer that raises is logged; the model takes the event and the
    next observer hears of it."""
    model = PBXModel(clock=Clock())
    heard: list[object] = []
    model.subscribe(broken)
    model.subscribe(heard.append)
    with capturedLogs() as events:
        model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/100", "State": "INUSE"})
    assert model.endpoint("100").device.name == "INUSE" and len(heard) == 1
    assert len(failures(events)) == 1
