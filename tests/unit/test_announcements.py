"""Forwards to an announcement ("office closed"): the catalogue, the records that
name one, the rules and the call flow that play it, and the driver's AGI."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import announcements, prompts
from appliance.announcements import Announcements
from appliance.callflow import ANNOUNCED, Announce, Finished, Unanswered
from appliance.dialplan import CallExtensions, CallRouter
from appliance.directory import Group
from appliance.forwarding.records import Forward, ForwardError
from appliance.forwarding.rules import after, plan
from tests.unit.test_callflow import Rig, finished, rings
from tests.unit.test_forwarding import FakeSession, World


class CatalogueTests(SynchronousTestCase):
    def test_targets_are_well_formed_names(self) -> None:
        """A target names an announcement by a plain lower-case name (whether it exists is
        the catalogue's question); nothing else reads as one."""
        self.assertEqual(announcements.target("closed"), "announcement:closed")
        self.assertEqual(announcements.name_of("announcement:closed"), "closed")
        self.assertEqual(announcements.name_of("announcement:rec-urlaub-2"), "rec-urlaub-2")
        for other in ("announcement:Closed", "announcement:closed\n", "announcement:", "300", "", "x:closed"):
            self.assertIsNone(announcements.name_of(other), other)
        self.assertRaises(ValueError, announcements.target, "Bad!")
        catalogue = Announcements("en")
        self.assertEqual((catalogue.known("closed"), catalogue.known("nope")), (True, False))

    def test_every_announcement_is_built_in_german_and_english(self) -> None:
        """The prompts build speaks each announcement in both languages, and a user of
        another language hears English."""
        built = prompts.texts()
        for name in announcements.NAMES:
            self.assertIn("Geschäftszeiten" if name == "closed" else "", built["de", f"announce-{name}"])
            self.assertTrue(built["en", f"announce-{name}"])
        self.assertEqual(announcements.sound_of("closed", "fr"), "appliance/en/announce-closed")
        self.assertEqual(announcements.sound_of("closed", "de"), "appliance/de/announce-closed")


class RecordTests(SynchronousTestCase):
    def test_forward_to_a_known_announcement_is_stored(self) -> None:
        world = World()
        world.forwards.set("600", Forward("unconditional", "announcement:closed"))
        self.assertEqual([f.target for f in world.forwards.of("600")], ["announcement:closed"])

    def test_unknown_announcement_is_refused_naming_the_choices(self) -> None:
        world = World()
        with self.assertRaises(ForwardError) as caught:
            world.forwards.set("600", Forward("unconditional", "announcement:nope"))
        self.assertIn("'announcement:nope' is not an announcement", str(caught.exception))
        self.assertIn("announcement:closed", str(caught.exception))
        self.assertEqual(world.forwards.of("600"), [])


class RuleTests(SynchronousTestCase):
    def test_unconditional_forward_plans_the_announcement(self) -> None:
        rig = Rig()
        rig.group("sales", "600", ("301", "302"))
        rig.world.forwards.set("600", Forward("unconditional", "announcement:closed"))
        leg = rig.flow("600").leg
        self.assertEqual(
            (leg.destination.kind, leg.destination.number), ("announcement", "announcement:closed")
        )
        self.assertEqual((leg.chain, leg.reason), (("600",), "forwarded"))

    def test_no_answer_forward_to_the_announcement_follows_the_ringing(self) -> None:
        rig = Rig()
        rig.group("sales", "600", ("301",))
        rig.world.forwards.set("600", Forward("noanswer", "announcement:unavailable", seconds=10))
        flow = rig.flow("600")
        assert flow.context is not None
        following = after(flow.leg, "NOANSWER", flow.context)
        assert following is not None
        self.assertEqual(following.destination.number, "announcement:unavailable")
        self.assertIsNone(after(following, ANNOUNCED, flow.context))

    def test_unknown_announcement_left_by_an_old_version_is_not_followed(self) -> None:
        """A target naming no announcement (never stored now) is ignored: the group rings."""
        rig = Rig()
        rig.group("sales", "600", ("301",))
        flow = rig.flow("600")
        assert flow.context is not None
        context = flow.context
        stale = Forward("unconditional", "announcement:Gone!")
        rigged = type(context)(
            context.caller,
            lambda n: [stale] if n == "600" else [],
            context.numbering,
            context.policy,
            context.unavailable,
        )
        self.assertEqual(plan("600", rigged).destination.kind, "group")


class FlowTests(SynchronousTestCase):
    def test_office_closed_plays_without_ringing_anyone(self) -> None:
        rig = Rig()
        rig.group("sales", "600", ("301", "302"))
        rig.world.forwards.set("600", Forward("unconditional", "announcement:closed"))
        outputs = rig.flow("600").start()
        self.assertEqual(rings(outputs), [])
        self.assertEqual(outputs[0], Announce("closed"))
        outcome = finished(outputs).outcome
        self.assertEqual((outcome.status, outcome.offered, outcome.dials), (ANNOUNCED, None, ()))

    def test_group_nobody_answered_plays_the_announcement(self) -> None:
        """Nobody of the group took the call in 5 s: the group is the caller's last
        unanswered number, the caller hears the announcement and is offered nothing."""
        rig = Rig()
        rig.group("sales", "600", ("301",), ring_seconds=5)
        rig.world.forwards.set("600", Forward("noanswer", "announcement:unavailable", seconds=5))
        flow = rig.flow("600")
        self.assertEqual(rings(flow.start()), [("PJSIP/301", 5, "sales: Anna")])
        rig.clock.advance(5)
        outputs = flow.dialled("NOANSWER", False)
        self.assertEqual([type(o) for o in outputs], [Unanswered, Announce, Finished])
        self.assertEqual(outputs[1], Announce("unavailable"))
        self.assertEqual(finished(outputs).outcome.offered, None)

    def test_line_that_rang_is_told_before_the_announcement(self) -> None:
        """A user's no-answer forward to an announcement: the missed call is still told."""
        rig = Rig()
        rig.world.forwards.set("200", Forward("noanswer", "announcement:closed", seconds=5))
        line = rig.flow("200")
        self.assertEqual(rings(line.start()), [("PJSIP/200", 5, "Anna")])
        told = line.dialled("NOANSWER", False)
        self.assertEqual([type(o) for o in told], [Unanswered, Announce, Finished])
        self.assertEqual(told[0], Unanswered(line.call))


class DriverTests(SynchronousTestCase):
    def test_the_channel_is_answered_then_the_announcement_played(self) -> None:
        """Answered half a second ahead (no lost first word), played in the appliance's
        language; the route's result says the call ended at the announcement."""
        world = World()
        world.directory.put_group(Group("sales", "600", ("301",)))
        world.forwards.set("600", Forward("unconditional", "announcement:closed"))
        extensions = CallExtensions()
        offered: list[object] = []
        extensions.handle_unreachable(lambda *args: offered.append(args))
        router = CallRouter(
            world.model,
            forwarding=world.forwarding,
            extensions=extensions,
            clock=Clock(),
            announcements=Announcements("en"),
        )
        session = FakeSession("600", "external")
        self.assertEqual(self.successResultOf(router(session)), ANNOUNCED)
        self.assertEqual(
            [e for e in session.executed if e[0] != "SET"],
            [("Answer", "500"), ("Playback", "appliance/en/announce-closed")],
        )
        self.assertEqual(offered, [])
