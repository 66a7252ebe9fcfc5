"""BLF lamps: which custom device states go out over AMI, and when."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import AMINotConnected
from appliance.blf import BLFService, device, lamp_states
from appliance.directory import Group
from appliance.forwarding.records import BUSY, UNCONDITIONAL, Forward, Forwards
from appliance.pbx import PBXModel
from appliance.testing import MemoryStore
from tests.unit.test_web_groups import FORM, admin, make_groups, post


class RecordingAMI:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False

    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]:
        assert action == "Setvar"
        if self.down:
            return fail(AMINotConnected("Setvar"))
        variable = headers["Variable"]
        assert variable.startswith("DEVICE_STATE(") and variable.endswith(")")
        self.sent.append((variable[len("DEVICE_STATE(") : -1], headers["Value"]))
        return succeed(None)


def presence(model: PBXModel, extension: str, status: str) -> None:
    model.handle(
        {"Event": "PresenceStateChange", "Presentity": f"CustomPresence:{extension}", "Status": status}
    )


class BLFTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.ami = RecordingAMI()
        self.pbx = PBXModel(clock=Clock())
        self.forwards = Forwards(self.store)
        self.users = ["100", "200"]
        self.clock = Clock()
        self.active = True
        self.service = BLFService(
            self.ami, self.pbx, self.store, self.scheduled, lambda: self.users, self.clock
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def scheduled(self, extension: str) -> list[Forward]:
        """The forwards that apply now: all of them while ``self.active``."""
        return self.forwards.of(extension) if self.active else []

    def test_lamp_follows_a_schedule_within_a_minute(self) -> None:
        """When a forward's schedule closes, the next recheck turns the lamp off."""
        self.pbx.resync([], [], [])
        self.forwards.set("100", Forward(UNCONDITIONAL, "300"))
        del self.ami.sent[:]
        self.active = False
        self.clock.advance(59)
        self.assertEqual(self.ami.sent, [])
        self.clock.advance(1)
        self.assertEqual(self.ami.sent, [("Custom:APPLIANCE_CFU_100", "NOT_INUSE")])
        self.clock.advance(60)
        self.assertEqual(len(self.ami.sent), 1)

    def test_device_names(self) -> None:
        """The hints of the shipped dialplan watch these custom devices."""
        self.assertEqual(device("DND", "100"), "Custom:APPLIANCE_DND_100")
        self.assertEqual(lamp_states(True, False, True), {"DND": "INUSE", "CFU": "NOT_INUSE", "CB": "INUSE"})

    def test_resync_publishes_every_lamp_of_every_user(self) -> None:
        """A resync (every AMI login) sends all three lamps of each user and line."""
        self.pbx.resync([{"Device": "PJSIP/300", "State": "NOT_INUSE"}], [], [])
        self.assertEqual(
            sorted(self.ami.sent),
            sorted(
                (device(lamp, ext), "NOT_INUSE")
                for lamp in ("DND", "CFU", "CB")
                for ext in ("100", "200", "300")
            ),
        )

    def test_resync_again_publishes_again(self) -> None:
        """Asterisk may have lost its states while we were away: the next resync repeats them."""
        self.pbx.resync([], [], [])
        first = list(self.ami.sent)
        self.pbx.resync([], [], [])
        self.assertEqual(self.ami.sent, first + first)

    def test_unconditional_forward_lights_and_clears(self) -> None:
        """Setting an unconditional forward lights CFU; a busy forward does not; clearing turns it off."""
        self.pbx.resync([], [], [])
        del self.ami.sent[:]
        self.forwards.set("100", Forward(BUSY, "300"))
        self.assertEqual(self.ami.sent, [])
        self.forwards.set("100", Forward(UNCONDITIONAL, "300"))
        self.assertEqual(self.ami.sent, [("Custom:APPLIANCE_CFU_100", "INUSE")])
        self.forwards.clear("100", UNCONDITIONAL)
        self.assertEqual(self.ami.sent[1:], [("Custom:APPLIANCE_CFU_100", "NOT_INUSE")])

    def test_dnd_follows_presence(self) -> None:
        """DND on/off in the PBX model switches the DND lamp, once per change."""
        self.pbx.resync([], [], [])
        del self.ami.sent[:]
        presence(self.pbx, "200", "dnd")
        presence(self.pbx, "200", "dnd")
        presence(self.pbx, "200", "available")
        self.assertEqual(
            self.ami.sent, [("Custom:APPLIANCE_DND_200", "INUSE"), ("Custom:APPLIANCE_DND_200", "NOT_INUSE")]
        )

    def test_callback_requests_light_the_requester(self) -> None:
        """A pending request ``100:200`` lights 100's callback lamp until the last one goes."""
        self.pbx.resync([], [], [])
        del self.ami.sent[:]
        self.store.put("callbacks", "100:200", {"requester": "100"})
        self.store.put("callbacks", "100:201", {"requester": "100"})
        self.store.delete("callbacks", "100:200")
        self.store.delete("callbacks", "100:201")
        self.assertEqual(
            self.ami.sent, [("Custom:APPLIANCE_CB_100", "INUSE"), ("Custom:APPLIANCE_CB_100", "NOT_INUSE")]
        )

    def test_failed_publish_is_retried_by_the_next_resync_only(self) -> None:
        """With AMI down nothing is sent and nothing is remembered as sent."""
        self.ami.down = True
        self.forwards.set("100", Forward(UNCONDITIONAL, "300"))
        self.assertEqual(self.ami.sent, [])
        self.assertNotIn("Custom:APPLIANCE_CFU_100", self.service.lamps.published)
        self.ami.down = False
        self.pbx.resync([], [], [])
        self.assertIn(("Custom:APPLIANCE_CFU_100", "INUSE"), self.ami.sent)

    def test_odd_keys_are_ignored(self) -> None:
        """Store keys that are no extension never become device names."""
        self.store.put("callbacks", "x;y:200", {})
        self.store.put("forwards", "Custom:evil", [])
        self.assertEqual(self.ami.sent, [])


class GroupLampTests(SynchronousTestCase):
    """A group's number has the forward lamp only, from the same store and rules."""

    def setUp(self) -> None:
        self.groups = make_groups()  # users 100 and 200, the group pages
        self.ami = RecordingAMI()
        self.pbx = PBXModel(clock=Clock())
        directory = self.groups.directory
        self.service = BLFService(
            self.ami,
            self.pbx,
            self.groups.lab.store,
            self.groups.forwards.of,
            lambda: [u.extension for u in directory.users()],
            Clock(),
            groups=directory.group_numbers,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        directory.put_group(Group("sales", "600", ("100",)))

    def test_forward_set_on_the_group_page_lights_the_groups_lamp(self) -> None:
        """The admin saves the group's unconditional forward on its page: Custom:APPLIANCE_CFU_600
        goes on; removing it there turns it off; no DND or callback lamp for a group."""
        self.pbx.resync([], [], [])
        del self.ami.sent[:]
        browser = admin(self.groups)
        fields = {"kind": "unconditional", "scope": "all", "target": "300"}
        self.assertEqual(post(browser, "/admin/groups/sales/forwards", fields)[0], 303)
        self.assertEqual(self.ami.sent, [("Custom:APPLIANCE_CFU_600", "INUSE")])
        remove = {"kind": "unconditional", "scope": "all"}
        self.assertEqual(post(browser, "/admin/groups/sales/forwards/remove", remove)[0], 303)
        self.assertEqual(self.ami.sent[1:], [("Custom:APPLIANCE_CFU_600", "NOT_INUSE")])

    def test_resync_publishes_every_groups_lamp_even_without_a_forward(self) -> None:
        """After a resync (Asterisk restarted, or the AMI link was down while the forward
        was cleared) the group's lamp is sent again, also when no forward record is left."""
        self.pbx.resync([], [], [])
        self.assertIn(("Custom:APPLIANCE_CFU_600", "NOT_INUSE"), self.ami.sent)
        self.assertNotIn("Custom:APPLIANCE_DND_600", [name for name, _ in self.ami.sent])
        self.assertNotIn("Custom:APPLIANCE_CB_600", [name for name, _ in self.ami.sent])
        self.groups.forwards.set("600", Forward(UNCONDITIONAL, "300"))
        del self.ami.sent[:]
        self.pbx.resync([], [], [])
        self.assertIn(("Custom:APPLIANCE_CFU_600", "INUSE"), self.ami.sent)

    def test_a_new_groups_lamp_is_sent_at_once(self) -> None:
        """A group made on the page shows its (dark) forward lamp at once, not a minute later."""
        self.pbx.resync([], [], [])
        del self.ami.sent[:]
        fields = {**FORM, "name": "ops", "number": "610"}
        self.assertEqual(post(admin(self.groups), "/admin/groups/new", fields)[0], 303)
        self.assertEqual(self.ami.sent, [("Custom:APPLIANCE_CFU_610", "NOT_INUSE")])

    def test_a_renumbered_groups_lamp_moves_with_its_forward(self) -> None:
        """Renumbering 600 to 601 on the page moves the forward: 600's lamp goes out, 601's on."""
        self.pbx.resync([], [], [])
        self.groups.forwards.set("600", Forward(UNCONDITIONAL, "300"))
        del self.ami.sent[:]
        fields = {**FORM, "members": "100", "number": "601"}
        self.assertEqual(post(admin(self.groups), "/admin/groups/sales", fields)[0], 303)
        forward_lamps = sorted(sent for sent in self.ami.sent if sent[0].startswith("Custom:APPLIANCE_CFU"))
        self.assertEqual(
            forward_lamps, [("Custom:APPLIANCE_CFU_600", "NOT_INUSE"), ("Custom:APPLIANCE_CFU_601", "INUSE")]
        )
