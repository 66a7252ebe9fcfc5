"""Users from Asterisk's PJSIP endpoints: the pure decision and the service on a fake AMI link."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from appliance.asterisk.ami import AMIActionError, AMIMessage
from appliance.directory import Directory, User
from appliance.pbx import PBXModel
from appliance.pbxusers import EndpointSync, callerid_name, reconcile
from appliance.settings import Settings
from appliance.slices import SLICE_PAUSE
from appliance.testing import MemoryStore


@pytest.mark.parametrize(
    ("callerid", "name"),
    [
        ('"Lab 200" <200>', "Lab 200"),
        ('"Jürgen \\"JJ\\" Jäger" <201>', 'Jürgen "JJ" Jäger'),
        ("Anna Berg <202>", "Anna Berg"),
        ("<203>", ""),
        ("", ""),
    ],
)
def test_callerid_name(callerid: str, name: str) -> None:
    """The display name of an endpoint's callerid option, quoted or not."""
    assert callerid_name(callerid) == name


def test_reconcile_creates_flags_and_unflags() -> None:
    """New extension endpoints become users; trunks do not; gone ones are flagged, back ones unflagged."""
    users = [
        User("200", "A"),
        User("201", "B", vanished=True),
        User("202", "C", devices=("202-soft",)),
        User("203", "D"),
    ]
    decision = reconcile(["200", "201", "202-soft", "204", "trunk"], users, create=True)
    assert decision.create == ("204",)
    assert [(u.extension, u.vanished) for u in decision.flag] == [("201", False), ("203", True)]
    assert reconcile(["204"], [], create=False).create == ()


class FakeAMI:
    """Answers the two PJSIP actions from a dict of endpoint name → caller ID."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self.endpoints = endpoints
        self.hooks: list[Callable[[Any], Any]] = []
        self.subscriptions: list[tuple[str | None, Callable[[Any], Any]]] = []
        self.asked: list[tuple[str, dict[str, str]]] = []

    def subscribe(self, event: str | None, callback: Callable[[Any], Any]) -> Callable[[], None]:
        self.subscriptions.append((event, callback))
        return lambda: self.subscriptions.remove((event, callback))

    def addConnectedHook(self, hook: Callable[[Any], Any]) -> Callable[[], None]:
        self.hooks.append(hook)
        return lambda: self.hooks.remove(hook)

    def collectEvents(self, action: str, **headers: str) -> Deferred[Any]:
        self.asked.append((action, headers))
        if action == "PJSIPShowEndpoints":
            if not self.endpoints:
                return fail(AMIActionError("No endpoints found"))
            return succeed(
                [AMIMessage([("Event", "EndpointList"), ("ObjectName", n)]) for n in self.endpoints]
            )
        name = headers["Endpoint"]
        return succeed([AMIMessage([("Event", "EndpointDetail"), ("Callerid", self.endpoints[name])])])

    def event(self, name: str, **headers: str) -> None:
        message = AMIMessage([("Event", name), *headers.items()])
        for wanted, callback in list(self.subscriptions):
            if wanted in (None, name):
                callback(message)

    def login(self) -> None:
        for hook in list(self.hooks):
            hook(object())


class Rig:
    def __init__(self, endpoints: dict[str, str]) -> None:
        self.store = MemoryStore()
        self.directory = Directory(self.store)
        self.settings = Settings(self.store)
        self.clock = Clock()
        self.ami = FakeAMI(endpoints)
        self.sync = EndpointSync(
            self.ami, PBXModel(clock=self.clock), self.directory, self.settings, self.clock
        )
        self.sync.startService()


def test_login_creates_users_named_by_caller_id() -> None:
    """After an AMI login every extension endpoint is a user named from its caller ID, with
    no language of its own (the appliance's and MC_LANGUAGE apply); the trunk is not."""
    rig = Rig({"200": '"Anna Berg" <200>', "201": "<201>", "trunk": ""})
    rig.ami.login()
    rig.clock.advance(1)
    assert rig.directory.users() == [
        User("200", "Anna Berg", from_pbx=True),
        User("201", "201", from_pbx=True),
    ]


def test_admin_fields_survive_and_gone_endpoints_are_flagged() -> None:
    """A sync never changes e-mail, language or groups; a gone endpoint flags its user, a
    returning one clears the flag; nobody is deleted."""
    rig = Rig({"200": '"Anna" <200>'})
    rig.directory.put_user(User("200", "Anna B.", "anna@example.org", "en", ("sales",)))
    rig.ami.login()
    rig.clock.advance(1)
    assert rig.directory.user("200") == User("200", "Anna B.", "anna@example.org", "en", ("sales",))
    rig.ami.endpoints.clear()
    rig.ami.event("Reload", Module="res_pjsip.so")
    rig.clock.advance(1)
    assert rig.directory.user("200") == User(
        "200", "Anna B.", "anna@example.org", "en", ("sales",), vanished=True
    )
    rig.ami.endpoints["200"] = '"Anna" <200>'
    rig.ami.event("Reload", Module="res_pjsip.so")
    rig.clock.advance(1)
    assert rig.directory.user("200") == User("200", "Anna B.", "anna@example.org", "en", ("sales",))


def test_setting_off_creates_nobody() -> None:
    """DIR_PBX_USERS off: endpoints are listed but no user is created."""
    rig = Rig({"200": '"Anna" <200>'})
    rig.settings.set("DIR_PBX_USERS", "off")
    rig.ami.login()
    rig.clock.advance(1)
    assert rig.directory.users() == []
    assert [action for action, _ in rig.ami.asked] == ["PJSIPShowEndpoints"]


def test_a_burst_of_reasons_makes_one_sync() -> None:
    """Login, FullyBooted and two reloads within a second: one listing."""
    rig = Rig({"200": '"Anna" <200>'})
    rig.ami.login()
    rig.ami.event("FullyBooted")
    rig.ami.event("Reload", Module="res_pjsip.so")
    rig.ami.event("Reload", Module="app_queue.so")
    rig.clock.advance(1)
    assert [action for action, _ in rig.ami.asked].count("PJSIPShowEndpoints") == 1


def test_many_new_endpoints_are_written_in_batches() -> None:
    """450 new endpoints: all become users, 200 to a transaction with the clock turning between."""
    rig = Rig({str(1000 + i): f'"Phone {i}" <{1000 + i}>' for i in range(450)})
    transactions: list[int] = []
    original = rig.store.apply

    def counted(changes: Any) -> Any:
        transactions.append(1)
        return original(changes)

    rig.store.apply = counted  # type: ignore[method-assign]
    rig.ami.login()
    rig.clock.advance(1)
    assert len(rig.directory) == 200  # the first batch; the rest after the reactor's turn
    rig.clock.pump([SLICE_PAUSE, SLICE_PAUSE])
    assert len(rig.directory) == 450 and rig.directory.user("1449").name == "Phone 449"
    assert len(transactions) == 3
