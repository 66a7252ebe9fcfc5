"""Users with several phones (`appliance.devices`) and the features that count the
person: router, busy rule, call waiting, callback, missed calls, forwarding."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import settings as keys
from appliance.busy import Reach
from appliance.callback.service import CallbackService
from appliance.callwaiting import USER_BUSY, CallWaiting
from appliance.devices import Devices, person_of, person_presence
from appliance.dialplan import Call, CallExtensions, CallRouter, FeatureCodes
from appliance.directory import Directory, DirectoryError, Group, User
from appliance.forwarding.records import Forward, Forwards
from appliance.forwarding.scheduled import Schedules
from appliance.missed.policy import participants_by_user
from appliance.pbx import DeviceState, Endpoint, PBXModel, Presence
from appliance.settings import Settings
from appliance.testing import MemoryStore
from appliance.web.pages.groups import GroupPages
from tests.unit.test_callback_offer import FakeAMI, FakeSession
from tests.unit.test_dialplan import FakeSession as RouteSession
from tests.unit.test_forwarding import FakeSession as ForwardSession
from tests.unit.test_forwarding import World
from tests.unit.test_missed_service import Rig as MissedRig
from tests.unit.test_usercsv import admin_browser, upload
from tests.unit.test_web import make_lab


def endpoint(name: str, state: str = "NOT_INUSE", registered: bool = True, dnd: bool = False) -> Endpoint:
    contacts = frozenset({f"sip:{name}@127.0.0.1:1"}) if registered else frozenset()
    return Endpoint(name, DeviceState(state), contacts, dnd)


def model(**states: str) -> PBXModel:
    """``"200": "INUSE"``; ``"out"`` is a known endpoint with no contact."""
    pbx = PBXModel(clock=Clock())
    pbx.resync(
        [{"Device": f"PJSIP/{n}", "State": "NOT_INUSE" if s == "out" else s} for n, s in states.items()],
        [{"ObjectName": n, "Uri": f"sip:{n}@127.0.0.1:1"} for n, s in states.items() if s != "out"],
        [],
    )
    return pbx


def world(**states: str) -> tuple[MemoryStore, Directory, PBXModel, Devices]:
    """User 200 with desk 200 and softphone ``200-soft``; user 300 with one phone."""
    store = MemoryStore()
    directory = Directory(store)
    directory.put_user(User("200", "Anna", devices=("200-soft",)))
    directory.put_user(User("300", "Cara"))
    pbx = model(**states)
    return store, directory, pbx, Devices(directory, pbx)


class PersonPresenceTests(SynchronousTestCase):
    def test_logged_out_only_without_any_registered_device(self) -> None:
        """One registered device is enough to be logged in; none, logged out."""
        self.assertIs(person_presence([endpoint("a", registered=False), endpoint("b")], False), Presence.IDLE)
        self.assertIs(
            person_presence([endpoint("a", registered=False), endpoint("b", registered=False)], False),
            Presence.LOGGED_OUT,
        )
        self.assertIs(person_presence([], False), Presence.LOGGED_OUT)

    def test_busy_if_any_device_in_a_call(self) -> None:
        """A call on the softphone makes the person busy, whatever the desk phone does."""
        for state in ("INUSE", "BUSY", "ONHOLD", "RINGINUSE"):
            found = person_presence([endpoint("a"), endpoint("b", state)], False)
            self.assertIs(found, Presence.BUSY, state)
        self.assertIs(
            person_presence([endpoint("a", "RINGING"), endpoint("b", "INUSE")], False), Presence.BUSY
        )

    def test_ringing_and_idle(self) -> None:
        """Ringing when any device rings (none in a call); idle when all are idle."""
        self.assertIs(person_presence([endpoint("a"), endpoint("b", "RINGING")], False), Presence.RINGING)
        self.assertIs(person_presence([endpoint("a"), endpoint("b")], False), Presence.IDLE)

    def test_dnd_is_the_persons(self) -> None:
        """DND wins over busy and idle, but a person with no phone is logged out."""
        self.assertIs(person_presence([endpoint("a", "INUSE")], True), Presence.DND)
        self.assertIs(person_presence([endpoint("a", registered=False)], True), Presence.LOGGED_OUT)

    def test_a_device_in_a_call_but_not_registered_does_not_count(self) -> None:
        """A stale in-use state of a phone that is logged out does not make the person busy."""
        found = person_presence([endpoint("a"), endpoint("b", "INUSE", registered=False)], False)
        self.assertIs(found, Presence.IDLE)

    def test_calls_over_only_for_the_callee_view(self) -> None:
        """A device whose calls are all ending is out of its call for a callback's
        target (``calls_over``), never for the strict view; a second device still in
        a call keeps the person busy either way."""
        over = replace(endpoint("a", "INUSE"), calls_ending=True)
        self.assertIs(person_presence([over], False), Presence.BUSY)
        self.assertIs(person_presence([over], False, calls_over=True), Presence.IDLE)
        self.assertIs(person_presence([over, endpoint("b", "INUSE")], False, calls_over=True), Presence.BUSY)
        self.assertIs(
            person_presence([over, endpoint("b", "RINGING")], False, calls_over=True), Presence.RINGING
        )


class DevicesTests(SynchronousTestCase):
    def test_endpoints_of_a_person(self) -> None:
        """Primary first, then the further devices; a device names its person; a number
        that is no user is its own single device."""
        _, directory, _, devices = world()
        self.assertEqual(devices.endpoints("200"), ("200", "200-soft"))
        self.assertEqual(devices.endpoints("200-soft"), ("200", "200-soft"))
        self.assertEqual(devices.endpoints("300"), ("300",))
        self.assertEqual(devices.endpoints("555"), ("555",))
        self.assertEqual(devices.person("200-soft"), "200")
        self.assertEqual(devices.person("555"), "555")
        self.assertEqual(person_of(directory, "200-soft"), "200")

    def test_further_number_is_no_device(self) -> None:
        """A user's further number (a DID) is not a phone of theirs."""
        store = MemoryStore()
        directory = Directory(store)
        directory.put_user(User("200", "Anna", numbers=("+4930200",)))
        self.assertEqual(person_of(directory, "+4930200"), "+4930200")

    def test_to_ring_only_registered_devices(self) -> None:
        """A call rings the registered phones; none registered or no sync yet: all (Dial decides)."""
        _, _, _, devices = world(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        self.assertEqual(devices.to_ring("200"), ("200", "200-soft"))
        _, _, _, devices = world(**{"200": "out", "200-soft": "NOT_INUSE"})
        self.assertEqual(devices.to_ring("200"), ("200-soft",))
        _, _, _, devices = world(**{"200": "out", "200-soft": "out"})
        self.assertEqual(devices.to_ring("200"), ("200", "200-soft"))
        _, directory, pbx, _ = world()
        pbx.synced = False
        self.assertEqual(Devices(directory, pbx).to_ring("200"), ("200", "200-soft"))

    def test_presence_over_devices_and_dnd_from_the_primary(self) -> None:
        """Busy from the softphone; DND set as CustomPresence of the primary extension."""
        _, _, pbx, devices = world(**{"200": "NOT_INUSE", "200-soft": "INUSE"})
        self.assertIs(devices.presence("200"), Presence.BUSY)
        self.assertIs(pbx.presence("200"), Presence.IDLE)
        self.assertTrue(devices.known("200"))
        pbx.handle({"Event": "PresenceStateChange", "Presentity": "CustomPresence:200", "Status": "dnd"})
        self.assertIs(devices.presence("200"), Presence.DND)
        self.assertIs(devices.presence("200-soft"), Presence.DND)

    def test_presence_change_names_the_person(self) -> None:
        """An endpoint's change is the person's change, with the other devices considered."""
        _, _, pbx, devices = world(**{"200": "INUSE", "200-soft": "NOT_INUSE"})
        changes: list[Any] = []
        pbx.subscribe(lambda change: changes.append(change))
        pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200-soft", "State": "INUSE"})
        self.assertEqual(devices.presence_change(changes[-1]), ("200", Presence.BUSY, Presence.BUSY))
        pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertEqual(devices.presence_change(changes[-1]), ("200", Presence.BUSY, Presence.BUSY))
        pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200-soft", "State": "NOT_INUSE"})
        self.assertEqual(devices.presence_change(changes[-1]), ("200", Presence.BUSY, Presence.IDLE))

    def test_channels_of_all_devices(self) -> None:
        """The person's live channels are those of every one of their phones."""
        _, _, pbx, devices = world(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        for name, uid in (("PJSIP/200-soft-0000000a", "1.2"), ("PJSIP/300-0000000b", "1.3")):
            pbx.handle({"Event": "Newchannel", "Channel": name, "Uniqueid": uid, "Linkedid": "1.1"})
        self.assertEqual([c.uniqueid for c in devices.channels("200")], ["1.2"])


def routed_with(pbx: PBXModel, endpoints: Callable[[str], tuple[str, ...]]) -> CallRouter:
    """A router whose endpoint resolver (the extension point) is ``endpoints``."""
    extensions = CallExtensions()
    extensions.resolve_endpoints(endpoints)
    return CallRouter(pbx, extensions=extensions)


class RouterTests(SynchronousTestCase):
    def test_dials_all_registered_devices_at_once(self) -> None:
        """A call to the user rings desk and softphone together (Dial with &)."""
        _, _, pbx, devices = world(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        session = RouteSession("200", "internal")
        self.successResultOf(routed_with(pbx, devices.to_ring)(session))
        self.assertEqual(session.executed, [("Dial", "PJSIP/200&PJSIP/200-soft,60,tT")])

    def test_no_unsafe_endpoint_reaches_dial(self) -> None:
        """An endpoint name that could smuggle in more targets is not dialled."""
        _, _, pbx, _ = world(**{"200": "NOT_INUSE"})
        session = RouteSession("200", "internal")
        router = routed_with(pbx, lambda number: (number, "x&PJSIP/evil"))
        self.assertEqual(self.successResultOf(router(session)), "CHANUNAVAIL")
        self.assertEqual(session.executed, [])


class BusyRuleTests(SynchronousTestCase):
    def waiting(self, **states: str) -> tuple[CallWaiting, PBXModel, list[tuple[str, int]], Clock]:
        store, _, pbx, devices = world(**states)
        clock = Clock()
        hangups: list[tuple[str, int]] = []

        def hangup(channel: str, cause: int) -> Deferred[Any]:
            hangups.append((channel, cause))
            return succeed(None)

        return CallWaiting(store, Settings(store), pbx, clock, hangup, devices=devices), pbx, hangups, clock

    def test_busy_when_one_device_is_in_a_call(self) -> None:
        """Call waiting off: the softphone's call makes the user busy before anything rings."""
        waiting, _, _, _ = self.waiting(**{"200": "NOT_INUSE", "200-soft": "INUSE"})
        self.assertIs(waiting.reach("200"), Reach.BUSY)
        self.assertTrue(waiting.unavailable("200"))

    def test_logged_out_only_when_no_device_is_registered(self) -> None:
        waiting, _, _, _ = self.waiting(**{"200": "out", "200-soft": "NOT_INUSE"})
        self.assertIs(waiting.reach("200"), Reach.FREE)
        waiting, _, _, _ = self.waiting(**{"200": "out", "200-soft": "out"})
        self.assertIs(waiting.reach("200"), Reach.LOGGED_OUT)

    def test_switch_is_per_person(self) -> None:
        """The user's call waiting switch covers the softphone's call."""
        waiting, _, _, _ = self.waiting(**{"200": "NOT_INUSE", "200-soft": "INUSE"})
        waiting.choose("200", True)
        self.assertIs(waiting.reach("200"), Reach.WAITING)

    def test_star43_from_the_softphone_switches_the_user(self) -> None:
        """``*43`` dialled on the softphone is the user's switch."""
        waiting, _, _, _ = self.waiting(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        session = FakeSession(channel="PJSIP/200-soft-00000001")
        self.assertIs(self.successResultOf(waiting.switch_by_code(session, "*43", "")), True)
        self.assertIs(waiting.choice("200"), True)
        self.assertIsNone(waiting.choice("200-soft"))

    def test_waiting_call_cut_on_every_device(self) -> None:
        """In a call on the desk with call waiting on, the waiting call rings the desk and the
        softphone; after the waiting time both ringing legs are hung up as busy."""
        waiting, pbx, hangups, clock = self.waiting(**{"200": "INUSE", "200-soft": "NOT_INUSE"})
        waiting.choose("200", True)
        watch = waiting.watch("1.1", "200", 60)
        assert watch is not None
        for name, uid in (("PJSIP/200-0000000a", "1.2"), ("PJSIP/200-soft-0000000b", "1.3")):
            pbx.handle({"Event": "Newchannel", "Channel": name, "Uniqueid": uid, "Linkedid": "1.1"})
            pbx.handle({"Event": "DialBegin", "Uniqueid": "1.1", "DestUniqueid": uid})
        clock.advance(Settings(waiting.store).get(keys.CW_RING_TIME))
        self.assertEqual(
            sorted(hangups), [("PJSIP/200-0000000a", USER_BUSY), ("PJSIP/200-soft-0000000b", USER_BUSY)]
        )
        self.assertTrue(watch.stop())


class CallbackTests(SynchronousTestCase):
    def service(self, **states: str) -> tuple[CallbackService, FakeAMI, PBXModel]:
        store, directory, pbx, devices = world(**states)
        ami = FakeAMI()
        service = CallbackService(store, Settings(store), pbx, ami, directory, Clock(), devices=devices)
        service.startService()
        self.addCleanup(service.stopService)
        return service, ami, pbx

    def test_target_free_only_when_all_devices_are_free(self) -> None:
        """A recall to a user waits while the softphone is in a call, though the desk is idle."""
        service, ami, pbx = self.service(**{"200": "NOT_INUSE", "200-soft": "INUSE", "300": "NOT_INUSE"})
        service.engine.request("300", "200")
        self.assertEqual(ami.actions, [])
        pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200-soft", "State": "NOT_INUSE"})
        [(action, headers)] = ami.actions
        self.assertEqual((action, headers["Channel"]), ("Originate", "PJSIP/300"))
        self.assertIn("APPLIANCE_CC_TARGET=PJSIP/200&PJSIP/200-soft", headers["Variable"])

    def test_recall_rings_every_registered_device_of_the_requester(self) -> None:
        """Two registered phones: a Local channel whose other half dials both at once."""
        service, ami, pbx = self.service(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE", "300": "INUSE"})
        service.engine.request("200", "300")
        pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "NOT_INUSE"})
        [(_, headers)] = ami.actions
        self.assertEqual(headers["Channel"], "Local/200@appliance-devices")
        self.assertIn("_APPLIANCE_DEVICES=PJSIP/200&PJSIP/200-soft", headers["Variable"])
        self.assertIn("_APPLIANCE_DEVICES_RING=20", headers["Variable"])
        self.assertIn("APPLIANCE_CC_REQUESTER=200", headers["Variable"])

    def test_recall_to_the_one_registered_device(self) -> None:
        """Only the softphone logged in: the recall rings it directly."""
        service, _, _ = self.service(**{"200": "out", "200-soft": "NOT_INUSE"})
        self.assertEqual(service._ring_all("200", 20), ("PJSIP/200-soft", []))

    def test_requester_from_the_softphone_is_the_user(self) -> None:
        """``*39300`` on the softphone asks for a callback for the user 200."""
        service, _, _ = self.service(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE", "300": "INUSE"})
        service.settings.set(keys.CC_CCNR_ENABLED, "on")
        session = FakeSession(channel="PJSIP/200-soft-00000001")
        self.successResultOf(service.offers.request_code(session, "*39", "300"))
        self.assertEqual([r.id for r in service.pending()], ["200:300"])

    def test_last_unanswered_number_is_the_users(self) -> None:
        """An unanswered call from the softphone sets the user's "last unanswered number"."""
        service, _, _ = self.service(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        call = Call("300", "internal", "200-soft", "", "PJSIP/200-soft-00000001", "1.1")
        service.offers.unanswered(call)
        self.assertEqual(service.store.get("callbacks_ccnr", "200"), "300")


class MissedTests(SynchronousTestCase):
    def test_parallel_devices_count_their_ring_time_once(self) -> None:
        """Desk and softphone ringing together 10 s are one participant with 10 s;
        legs one after another add up."""
        owner = {"200": "200", "200-soft": "200", "300": "300"}.get
        [anna] = participants_by_user([("200", 0.0, 10.0, False), ("200-soft", 0.5, 10.0, False)], owner)
        self.assertEqual((anna.user, anna.first_ring, anna.ring_seconds), ("200", 0.0, 10.5))
        [anna] = participants_by_user([("200", 0.0, 10.0, False), ("200-soft", 20.0, 5.0, False)], owner)
        self.assertEqual(anna.ring_seconds, 15.0)

    def test_answered_on_the_softphone_is_answered_by_the_person(self) -> None:
        """One device answering makes the person's participation answered."""
        owner = {"200": "200", "200-soft": "200"}.get
        [anna] = participants_by_user([("200", 0.0, 3.0, False), ("200-soft", 0.0, 3.0, True)], owner)
        self.assertTrue(anna.answered)


def test_users_page_shows_which_phones_are_logged_in() -> None:
    """The admin's user list names each of a user's phones and whether it is logged in."""
    lab = make_lab()
    lab.directory.put_user(User("200", "Ben Cole", "ben@example.com", "en", devices=("200-soft",)))
    lab.web.registered = {"200": False, "200-soft": True}.get
    admin = lab.browser()
    assert admin.login("admin", "admin-secret").code == 303
    html = admin.get("/admin/users").text
    row = html[html.index('id="user-200"') :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<span class="phone ([a-z]+)">([^<]*)</span>', row)
    assert [(kind, text.split(" (")[0]) for kind, text in cells] == [
        ("unregistered", "200"),
        ("registered", "200-soft"),
    ]
    anna = html[html.index('id="user-100"') :]
    assert '<span class="phone">100</span>' in anna[: anna.index("</tr>")]  # unknown: no mark


class OnePersonPerPhoneTests(SynchronousTestCase):
    """An endpoint has one owner: a device that is another user's line is refused."""

    def directory(self) -> Directory:
        directory = Directory(MemoryStore())
        directory.put_users([User("200", "Anna", devices=("200-soft",)), User("209", "From Asterisk")])
        return directory

    def test_device_that_is_another_users_extension(self) -> None:
        directory = self.directory()
        with self.assertRaisesRegex(DirectoryError, r"200: devices: '209' is the extension of user 209"):
            directory.put_user(User("200", "Anna", devices=("200-soft", "209")))
        self.assertEqual(directory.user("200").devices, ("200-soft",))  # type: ignore[union-attr]
        directory.delete_user("209")
        directory.put_user(User("200", "Anna", devices=("200-soft", "209")))
        self.assertEqual(directory.owner_of("209").extension, "200")  # type: ignore[union-attr]

    def test_device_of_another_user_and_extension_that_is_a_device(self) -> None:
        directory = self.directory()
        with self.assertRaisesRegex(DirectoryError, r"300: devices: '200-soft' is a device of user 200"):
            directory.put_user(User("300", "Cara", devices=("200-soft",)))
        with self.assertRaisesRegex(DirectoryError, r"^20: devices: '200-soft' is a device of user 200$"):
            directory.put_users([User("20", "X", devices=("200-soft",))])
        directory.put_user(User("201", "Ben", devices=("2011",)))
        with self.assertRaisesRegex(DirectoryError, r"2011: extension: it is a device of user 201"):
            directory.put_user(User("2011", "Eve"))

    def test_moving_a_device_in_one_write(self) -> None:
        """One transaction may take a device from one user and give it to another."""
        directory = self.directory()
        directory.put_users([User("200", "Anna"), User("300", "Cara", devices=("200-soft",))])
        self.assertEqual(directory.owner_of("200-soft").extension, "300")  # type: ignore[union-attr]
        with self.assertRaisesRegex(DirectoryError, "is a device of user"):
            directory.put_users([User("301", "D", devices=("x1",)), User("302", "E", devices=("x1",))])


def test_csv_import_refuses_a_phone_with_two_owners() -> None:
    """The import preview names the line whose device is another user's line; nothing is stored."""
    lab, admin = admin_browser()
    token = admin.csrf("/admin/users")
    text = "extension,name,devices\n250,Good,\n251,Soft,100\n"
    reply = upload(admin, "/admin/users/import", {"csrf": token}, "users.csv", text.encode())
    assert reply.code == 400
    assert re.findall(r'<td class="line">(\d+)</td>', reply.text) == ["3"]
    assert "&#39;100&#39; is the extension of user 100" in reply.text
    assert lab.directory.user("250") is None


def test_user_form_refuses_a_phone_with_two_owners() -> None:
    """The user form shows the conflict and keeps the stored user as it was."""
    lab, admin = admin_browser()
    token = admin.csrf("/admin/users/200")
    fields = {"csrf": token, "name": "Ben Cole", "language": "en", "devices": "100"}
    reply = admin.post("/admin/users/200", fields)
    assert reply.code == 400 and "is the extension of user 100" in reply.text
    assert lab.directory.user("200").devices == ()  # type: ignore[union-attr]


class CallerIsThePersonTests(SynchronousTestCase):
    def world(self) -> World:
        world = World()
        world.directory.put_user(User("300", "Cara Dietz", devices=("300-soft",)))
        return world

    def test_softphone_breaks_through_the_forward_it_is_the_target_of(self) -> None:
        """200 forwards to 300; 300's softphone calling 200 is 300 and rings 200 (seed 002),
        showing the user's number and name."""
        world = self.world()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = ForwardSession("200", "internal", channel="PJSIP/300-soft-0000000a", caller="300-soft")
        self.successResultOf(world.router(session))
        self.assertEqual(
            session.executed,
            [
                ("SET", "CALLERID(num)", "300"),
                ("SET", "CALLERID(name)", "Cara Dietz"),
                ("Dial", "PJSIP/200,60,tT"),
            ],
        )

    def test_own_forward_key_on_the_softphone_clears_the_users_forward(self) -> None:
        """``*21300`` (300's BLF key) pressed on 300's softphone clears 300's unconditional
        forwards, as on the desk phone; ``*22300`` there is still a forward to itself."""
        world = self.world()
        codes = FeatureCodes()
        world.forwarding.register_codes(codes)
        world.forwards.set("300", Forward("unconditional", "200"))
        world.forwards.set("300", Forward("busy", "201"))
        pressed = ForwardSession("*21300", channel="PJSIP/300-soft-0000000c")
        self.assertEqual(self.successResultOf(codes(pressed)), "cleared")
        self.assertEqual(world.forwards.of("300"), [Forward("busy", "201")])
        itself = ForwardSession("*22300", channel="PJSIP/300-soft-0000000d")
        self.assertEqual(self.successResultOf(codes(itself)), "invalid")
        self.assertEqual(world.forwards.of("300"), [Forward("busy", "201")])

    def test_forward_set_on_the_softphone_is_the_users(self) -> None:
        """``*21200`` dialled on 300's softphone forwards the user 300."""
        world = self.world()
        session = ForwardSession("*21200", channel="PJSIP/300-soft-0000000b")
        self.successResultOf(world.forwarding.set_by_code(session, "*21", "200"))
        self.assertEqual([f.target for f in world.forwards.of("300")], ["200"])


def test_click_to_call_rings_every_phone_of_the_user() -> None:
    """Click to call for a user with two registered phones rings both at once."""
    store, directory, pbx, devices = world(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
    ami = FakeAMI()
    service = CallbackService(store, Settings(store), pbx, ami, directory, Clock(), devices=devices)
    service.click_to_call("200", "300")
    [(action, headers)] = ami.actions
    assert (action, headers["Channel"], headers["Context"]) == (
        "Originate",
        "Local/200@appliance-devices",
        "appliance-click",
    )
    assert "_APPLIANCE_DEVICES=PJSIP/200&PJSIP/200-soft" in headers["Variable"]


def test_group_list_shows_a_member_busy_on_the_softphone() -> None:
    """The admin's group list shows a member by all their phones: busy on the softphone."""
    lab = make_lab()
    lab.directory.put_user(User("200", "Ben Cole", devices=("200-soft",)))
    lab.directory.put_group(Group("sales", "600", ("200",)))
    pbx = model(**{"200": "NOT_INUSE", "200-soft": "INUSE"})
    devices = Devices(lab.directory, pbx)
    lab.web.add(GroupPages(lab.directory, Forwards(lab.store), Schedules(lab.store), pbx, devices.presence))
    admin = lab.browser(**{"Accept-Language": "en"})
    assert admin.login("admin", "admin-secret").code == 303
    html = admin.get("/admin/groups").text
    item = re.search(r'<li id="member-sales-200"[^>]*>(.*?)</li>', html, re.S)
    assert item is not None and '<span class="state">busy</span>' in item.group(1)


class MissedServiceTests(SynchronousTestCase):
    def rig(self) -> MissedRig:
        rig = MissedRig()
        rig.directory.put_user(User("200", "User 200", "u200@example.org", "de", devices=("200-soft",)))
        return rig

    def test_two_devices_unanswered_one_entry_one_mail(self) -> None:
        """Desk and softphone ring 8 s together, nobody answers: one entry (8 s), one mail."""
        rig = self.rig()
        rig.script.unanswered("trunk", "+4930123456", ["200", "200-soft"], ring=8)
        rig.deliver()
        self.assertEqual(rig.recipients(), ["u200@example.org"])
        [entry] = rig.journal.entries("200")
        self.assertEqual(entry.ring_seconds, 8.0)
        self.assertEqual(rig.journal.entries("200-soft"), [])

    def test_softphone_answering_is_the_person_answering(self) -> None:
        """A group call taken on 200's softphone: the others' entries name 200 as who took it."""
        rig = self.rig()
        rig.settings.set("MC_MAIL_IF_PICKED_UP", "on")
        caller = rig.script.caller("trunk", "+4930123456")
        legs = [rig.script.dial(caller, e) for e in ("200", "200-soft", "201")]
        rig.script.wait(3)
        rig.script.answer(legs[1])
        rig.script.end_dial(legs[0])
        rig.script.end_dial(legs[2])
        rig.script.hangup(*legs, caller)
        rig.deliver()
        self.assertEqual(rig.journal.entries("200"), [])
        [entry] = rig.journal.entries("201")
        self.assertEqual(entry.answered_by, "200")

    def test_call_from_the_softphone_is_the_user_calling(self) -> None:
        """A call from 200's softphone to 201 is journalled as from 200's name, and counts
        as 200 for the "repeated call" exception."""
        rig = self.rig()
        rig.settings.set("MC_EXCLUDE_REPEAT_SAME_DAY", "on")
        rig.script.unanswered("200", "200", ["201"], ring=5)
        rig.script.unanswered("200-soft", "200-soft", ["201"], ring=5)
        rig.deliver()
        first, second = sorted(rig.journal.entries("201"), key=lambda e: e.time)
        self.assertEqual(second.caller_name, "User 200")
        self.assertEqual(first.caller_key, second.caller_key)
        self.assertEqual(rig.recipients(), ["u201@example.org"])  # the second is a repeat


def test_a_conflict_stored_earlier_does_not_block_other_changes() -> None:
    """A user whose device was another user's line before the check existed can still
    change their language (the profile page) or be flagged by the endpoint sync."""
    store = MemoryStore()
    store.put("users", "209", {"extension": "209", "name": "Old"})
    store.put("users", "200", {"extension": "200", "name": "Anna", "devices": ["209"]})
    directory = Directory(store)
    directory.put_user(User("200", "Anna", language="en", devices=("209",)))
    directory.put_users([User("209", "Old", vanished=True)])
    assert directory.user("200").language == "en"  # type: ignore[union-attr]
    assert directory.user("209").vanished  # type: ignore[union-attr]


class KeysOnTheSecondPhoneTests(SynchronousTestCase):
    """The BLF keys ``*78200`` and ``*39200`` pressed on 200's softphone act for 200."""

    def offers(self) -> Any:
        store, directory, pbx, devices = world(**{"200": "NOT_INUSE", "200-soft": "NOT_INUSE"})
        service = CallbackService(store, Settings(store), pbx, FakeAMI(), directory, Clock(), devices=devices)
        return service

    def soft(self, dnd: str = "") -> FakeSession:
        session = FakeSession(channel="PJSIP/200-soft-00000001")
        session.variables["PRESENCE_STATE(CustomPresence:200,value)"] = dnd
        return session

    def test_dnd_key_toggles_the_users_dnd_from_what_asterisk_holds(self) -> None:
        """Off (never set, or available) -> on; on -> off; always the user's presence."""
        offers = self.offers().offers
        for now, then in (("", "dnd,,"), ("available", "dnd,,"), ("dnd", "available,,")):
            session = self.soft(dnd=now)
            self.assertEqual(self.successResultOf(offers.dnd_code(session, "*78", "200")), then == "dnd,,")
            self.assertIn(("get", "PRESENCE_STATE(CustomPresence:200,value)"), session.commands)
            self.assertIn(("set", "PRESENCE_STATE(CustomPresence:200)", then), session.commands)

    def test_plain_codes_need_no_state_and_anothers_key_is_refused(self) -> None:
        """``*78`` / ``#78`` from the softphone switch 200 without asking; ``*78300`` (a
        colleague's DND key) changes nothing and says so."""
        offers = self.offers().offers
        on, off, other = self.soft(), self.soft(), self.soft()
        self.assertTrue(self.successResultOf(offers.dnd_code(on, "*78", "")))
        self.assertFalse(self.successResultOf(offers.dnd_code(off, "#78", "")))
        self.assertIn(("set", "PRESENCE_STATE(CustomPresence:200)", "dnd,,"), on.commands)
        self.assertNotIn(("get", "PRESENCE_STATE(CustomPresence:200,value)"), on.commands)
        self.assertIn(("set", "PRESENCE_STATE(CustomPresence:200)", "available,,"), off.commands)
        self.assertIsNone(self.successResultOf(offers.dnd_code(other, "*78", "300")))
        self.assertEqual(other.commands, [("answer",), ("stream", "appliance/de/cc-refused")])

    def test_callback_key_cancels_the_users_requests(self) -> None:
        """``*39200`` on the softphone cancels 200's pending requests, as ``#39``."""
        service = self.offers()
        service.engine.request("200", "300")
        session = self.soft()
        self.assertEqual(self.successResultOf(service.offers.request_code(session, "*39", "200")), 1)
        self.assertEqual(service.pending(), [])
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-cancelled"))
