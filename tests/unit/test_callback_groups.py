"""Callback to a group whose members are all busy (issue 11 item 5, seed 003):
the engine with a Clock and exact outputs, the service's Originate, the offer
and the router's hook for a group number."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import settings as keys
from appliance.busy import Reach
from appliance.callback.engine import (
    EngineSettings,
    Outcome,
    Recall,
    RecallResult,
    Request,
    State,
)
from appliance.callback.service import NAMESPACE
from appliance.callwaiting import CallWaiting
from appliance.dialplan import Unreachable
from appliance.directory import Group, User
from tests.unit.test_busy import Harness as BusyHarness
from tests.unit.test_callback_engine import B, D, Harness, I, L
from tests.unit.test_callback_notify import FakeOutbox
from tests.unit.test_callback_offer import FakeSession, ServiceTests
from tests.unit.test_callback_offer import Harness as ServiceHarness
from tests.unit.test_forwarding import FakeSession as RouteSession
from tests.unit.test_forwarding import World

GROUPS = {"650": ("300", "301"), "660": ("300", "301", "302")}


def harness(settings: EngineSettings | None = None) -> Harness:
    """Members 300 and 301 of group 650 in calls; 100, 101, 102 free."""
    h = Harness(settings, members=lambda number: GROUPS.get(number, ()))
    h.where.update({"300": B, "301": B, "302": B})
    return h


def recall(rid: str, member: str, group: str = "650", attempt: int = 1) -> Recall:
    return Recall(rid, rid.split(":")[0], member, "internal", attempt, 20, group=group)


class GroupRequestTests(SynchronousTestCase):
    def test_request_for_a_group_is_saved_as_one(self) -> None:
        """A request for a group's number is a group request and waits while every member is busy."""
        h = harness()
        self.assertEqual(h.engine.request("100", "650"), Outcome.ACCEPTED)
        self.assertEqual(
            h.outputs.log, [("saved", Request("100", "650", 1000.0, state_since=1000.0, group=True))]
        )

    def test_first_member_free_is_dialled_after_the_requester(self) -> None:
        """When 301 ends its call, the recall rings 100 and then dials 301 (not the
        group); the record names the member."""
        h = harness()
        h.engine.request("100", "650")
        h.clear()
        h.set("301", I)
        started = h.engine.get("100:650")
        assert started is not None
        self.assertEqual(h.outputs.log, [("originate", recall("100:650", "301")), ("saved", started)])
        self.assertEqual((started.state, started.member), (State.RINGING, "301"))

    def test_member_is_the_one_free_first(self) -> None:
        """Of several free members, the recall dials the one that became free first."""
        h = harness()
        h.where["100"] = B
        h.engine.request("100", "650")
        h.set("301", I)
        h.clock.advance(5)
        h.set("300", I)
        h.set("100", I)
        self.assertEqual([r.target for k, r in h.outputs.log if k == "originate"], ["301"])

    def test_requests_served_in_order_one_member_each(self) -> None:
        """Three requesters wait for group 650: the first free member goes to the
        first requester, the second to the second; the third waits for a member."""
        h = harness()
        for requester in ("100", "101", "102"):
            h.engine.request(requester, "650")
            h.clock.advance(1)
        h.set("301", I)
        h.set("300", I)
        self.assertEqual(h.originated(), [("100:650", 1), ("101:650", 1)])
        self.assertEqual([r.target for k, r in h.outputs.log if k == "originate"], ["301", "300"])
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_ANSWERED)
        h.set("301", B)  # the recall reached 301: it talks to 100
        h.engine.recall_result("100:650", 1, RecallResult.TARGET_ANSWERED)
        self.assertEqual(h.originated(), [("100:650", 1), ("101:650", 1)])
        h.set("301", I)
        self.assertEqual(h.originated()[-1], ("102:650", 1))
        self.assertEqual(h.engine.get("102:650").member, "301")

    def test_later_requester_keeps_order_while_the_first_is_free_again(self) -> None:
        """FIFO: 101 asked after 100; when the only free member appears, 100 gets it."""
        h = harness()
        h.engine.request("100", "650")
        h.clock.advance(1)
        h.engine.request("101", "650")
        h.set("300", I)
        self.assertEqual(h.originated(), [("100:650", 1)])

    def test_member_free_while_requester_does_not_answer_goes_to_the_next(self) -> None:
        """100 does not take the recall: the free member is not lost, 101 is rung at
        once with it; 100 is retried after the retry delay with a member free then."""
        h = harness()
        h.engine.request("100", "650")
        h.clock.advance(1)
        h.engine.request("101", "650")
        h.set("301", I)
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_NO_ANSWER)
        self.assertEqual(h.originated(), [("100:650", 1), ("101:650", 1)])
        self.assertEqual(h.engine.get("101:650").member, "301")
        self.assertEqual(h.engine.get("100:650").member, "")
        h.set("300", I)
        self.assertEqual(len(h.originated()), 2)  # 100 waits its retry delay
        h.clock.advance(30)
        self.assertEqual(h.originated()[-1], ("100:650", 2))
        self.assertEqual(h.engine.get("100:650").member, "300")

    def test_lone_requester_retried_with_the_member_still_free(self) -> None:
        """Nobody else waits: the member stays free and the retry rings 100 again for it."""
        h = harness()
        h.engine.request("100", "650")
        h.set("300", I)
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_NO_ANSWER)
        h.clock.advance(29)
        self.assertEqual(h.originated(), [("100:650", 1)])
        h.clock.advance(1)
        self.assertEqual(h.outputs.log[-2], ("originate", recall("100:650", "300", attempt=2)))

    def test_member_away_is_passed_over_until_its_next_call(self) -> None:
        """A free member that does not answer is not dialled again while it stays
        free: the request waits for another member (or that one after a call)."""
        h = harness()
        h.engine.request("100", "650")
        h.set("301", I)
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.recall_result("100:650", 1, RecallResult.TARGET_UNREACHABLE)
        waiting = h.engine.get("100:650")
        assert waiting is not None
        self.assertEqual((waiting.state, waiting.attempts, waiting.passed), (State.WAITING, 0, "301"))
        self.assertEqual(h.originated(), [("100:650", 1)])
        h.set("300", I)
        self.assertEqual(h.outputs.log[-2], ("originate", recall("100:650", "300")))
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.recall_result("100:650", 1, RecallResult.TARGET_UNREACHABLE)
        h.set("301", B)
        h.set("301", I)
        self.assertEqual(h.outputs.log[-2], ("originate", recall("100:650", "301")))

    def test_member_busy_again_keeps_the_request_ready(self) -> None:
        """The member became busy before the recall reached it: the next free member serves."""
        h = harness()
        h.engine.request("100", "650")
        h.set("301", I)
        h.set("301", B)
        h.engine.recall_result("100:650", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.recall_result("100:650", 1, RecallResult.TARGET_UNREACHABLE)
        self.assertEqual(h.engine.get("100:650").passed, "")
        h.set("301", I)
        self.assertEqual(h.originated(), [("100:650", 1), ("100:650", 1)])

    def test_direct_and_group_requests_share_a_member_in_request_order(self) -> None:
        """102 waits for 301 itself and asked before 100 asked for the group: 301's
        hangup serves 102; the group gets 301 only after that recall."""
        h = harness()
        h.engine.request("102", "301")
        h.clock.advance(1)
        h.engine.request("100", "650")
        h.set("301", I)
        self.assertEqual(h.originated(), [("102:301", 1)])
        h.engine.recall_result("102:301", 1, RecallResult.REQUESTER_NO_ANSWER)
        self.assertEqual(h.originated()[-1], ("100:650", 1))

    def test_requester_in_the_group_is_never_its_own_callee(self) -> None:
        """A member asking for its own group is served by another member; alone in it, refused."""
        h = harness()
        self.assertEqual(h.engine.request("300", "650"), Outcome.ACCEPTED)
        h.set("300", I)
        self.assertEqual(h.originated(), [])
        h.set("301", I)
        self.assertEqual(h.outputs.log[-2], ("originate", recall("300:650", "301")))
        lone = Harness(members=lambda number: ("300",) if number == "670" else ())
        self.assertEqual(lone.engine.request("300", "670"), Outcome.INVALID)

    def test_logged_out_and_dnd_members_serve_when_free(self) -> None:
        """Members logged out or on DND count as busy; one logging in is free."""
        h = harness()
        h.where.update({"300": L, "301": D})
        h.engine.request("100", "650")
        h.set("301", B)
        self.assertEqual(h.originated(), [])
        h.set("300", I)
        self.assertEqual(h.outputs.log[-2], ("originate", recall("100:650", "300")))

    def test_expires_and_cancels_like_a_user_request(self) -> None:
        """A group request expires after the timeout and is cancelled by requester and target."""
        h = harness()
        h.engine.request("100", "650")
        h.engine.request("101", "650")
        self.assertEqual([r.id for r in h.engine.cancel("101", "650")], ["101:650"])
        h.clock.advance(600)
        self.assertEqual(h.removed(), [("101:650", "cancelled"), ("100:650", "expired")])

    def test_kept_across_a_restart(self) -> None:
        """The record round-trips through JSON; a recall under way at a restart waits
        again without its member, and the next free member serves it."""
        h = harness()
        h.engine.request("100", "650")
        h.set("301", I)
        ringing = h.engine.get("100:650")
        assert ringing is not None
        stored = Request.from_json(ringing.to_json())
        self.assertEqual(stored, ringing)
        again = harness()
        again.where["301"] = B
        again.engine.load([stored])  # type: ignore[list-item]
        reloaded = again.engine.get("100:650")
        assert reloaded is not None
        self.assertEqual((reloaded.state, reloaded.member, reloaded.group), (State.WAITING, "", True))
        again.set("300", I)
        self.assertEqual(again.outputs.log[-2], ("originate", recall("100:650", "300", attempt=2)))

    def test_old_records_are_user_requests(self) -> None:
        """Records written before groups could be asked for load as user requests."""
        data = Request("100", "200", 5.0).to_json()
        for key in ("group", "member", "passed"):
            del data[key]
        self.assertEqual(Request.from_json(data), Request("100", "200", 5.0))


class GroupServiceTests(SynchronousTestCase):
    def harness(self) -> ServiceHarness:
        h = ServiceHarness(**{"100": "idle", "300": "busy", "301": "busy"})
        h.directory.put_user(User("100", "Anna Berger"))
        h.directory.put_user(User("300", "User 300"))
        h.directory.put_user(User("301", "User 301"))
        h.directory.put_group(Group("Vertrieb", "650", ("301", "300")))
        ServiceTests.started(self, h)  # type: ignore[arg-type]
        return h

    def test_offer_for_a_group_number_books_a_group_request(self) -> None:
        """The busy offer for group 650 with key 5 books a group request, stored."""
        h = self.harness()
        session = FakeSession(keys="5")
        outcome = self.successResultOf(h.offers.unreachable(session, h.call("650"), Unreachable.BUSY))
        self.assertEqual(outcome, Outcome.ACCEPTED)
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-confirm"))
        self.assertTrue(h.store.get(NAMESPACE, "100:650")["group"])

    def test_recall_shows_the_group_and_dials_the_member(self) -> None:
        """100 sees "Vertrieb" <650>; the context dials member 300, which sees
        "Vertrieb: Anna Berger" from 100; the target's answer ends the request."""
        h = self.harness()
        h.service.engine.request("100", "650")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "NOT_INUSE"})
        [(action, headers)] = h.ami.actions
        self.assertEqual(action, "Originate")
        self.assertEqual(
            (headers["Channel"], headers["Exten"], headers["CallerID"]),
            ("PJSIP/100", "300", '"Vertrieb" <650>'),
        )
        self.assertIn("APPLIANCE_CALLBACK=100:650", headers["Variable"])
        self.assertIn("APPLIANCE_CC_REQUESTER=100", headers["Variable"])
        self.assertIn("APPLIANCE_CC_REQUESTER_NAME=Vertrieb: Anna Berger", headers["Variable"])
        h.ami.event("OriginateResponse", ActionID="a1", Response="Success", Reason="4")
        h.ami.event(
            "UserEvent", UserEvent="ApplianceCallback", Id="100:650", Attempt="1", DialStatus="ANSWER"
        )
        self.assertEqual(h.service.pending(), [])
        self.assertIsNone(h.store.get(NAMESPACE, "100:650"))

    def test_members_in_ring_order_then_self_declared(self) -> None:
        """The engine sees the group's members in its order, then users naming the group."""
        h = self.harness()
        h.directory.put_user(User("302", "User 302", groups=("Vertrieb",)))
        self.assertEqual(h.service._members_of("650"), ("301", "300", "302"))
        self.assertEqual(h.service._members_of("300"), ())

    def test_cancel_code_with_the_group_number(self) -> None:
        """``#39650`` cancels the group request and confirms; a member's hangup then starts nothing."""
        h = self.harness()
        h.service.engine.request("100", "650")
        session = FakeSession()
        self.assertEqual(self.successResultOf(h.offers.cancel_code(session, "#39", "650")), 1)
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-cancelled"))
        self.assertIsNone(h.store.get(NAMESPACE, "100:650"))
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "NOT_INUSE"})
        self.assertEqual(h.ami.actions, [])

    def test_web_request_for_a_group(self) -> None:
        """The page's request form books a group request while no member is free,
        and answers "reachable" once one is."""
        h = self.harness()
        self.assertEqual(h.service.request_now("100", "650"), "accepted")
        self.assertTrue(h.service.pending()[0].group)
        h.service.cancel("100:650")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/301", "State": "RINGING"})
        self.assertEqual(h.service.request_now("100", "650"), "reachable")
        self.assertEqual(h.service.request_now("100", "659"), "invalid")

    def test_expiry_mail_names_the_group(self) -> None:
        """The mail on expiry names the group the requester waited for."""
        h = self.harness()
        outbox = FakeOutbox()
        h.service.outbox, h.service.sender = outbox, "pbx@example.org"
        h.directory.put_user(User("100", "Anna Berger", "anna@example.org", language="de"))
        h.service.engine.request("100", "650")
        h.clock.advance(keys.CC_TIMEOUT.default * 60)
        [(_, _, _, message)] = outbox.queued
        self.assertEqual(message["Subject"], "Rückruf zu 650 (Vertrieb) abgelaufen")

    def test_group_request_reloaded_after_restart(self) -> None:
        """A stored group request is loaded on start and served by the first free member."""
        h = ServiceHarness(**{"100": "idle", "300": "busy", "301": "busy"})
        for member in ("300", "301"):
            h.directory.put_user(User(member, f"User {member}"))
        h.directory.put_group(Group("Vertrieb", "650", ("300", "301")))
        h.store.put(NAMESPACE, "100:650", Request("100", "650", 0.0, group=True).to_json())
        ServiceTests.started(self, h)  # type: ignore[arg-type]
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/301", "State": "NOT_INUSE"})
        self.assertEqual(h.ami.actions[0][1]["Exten"], "301")


class GroupRouteTests(SynchronousTestCase):
    def world(self, **presence: str) -> World:
        world = World(**presence)
        world.router.waiting = CallWaiting(
            world.store, world.settings, world.model, Clock(), BusyHarness().hangup
        )
        return world

    def test_group_with_every_member_busy_is_unreachable(self) -> None:
        """Group 600 (301, 302) with both members in calls rings nobody; the
        unreachable handler gets the group's number as the final target."""
        world = self.world(**{"301": "busy", "302": "busy"})
        session = RouteSession("600", "internal")
        self.successResultOf(world.router(session))
        self.assertNotIn("Dial", [command[0] for command in session.executed])
        self.assertEqual([(c.number, why) for c, why in world.unreachable], [("600", Unreachable.BUSY)])

    def test_one_free_member_rings_the_group(self) -> None:
        """One member free by the busy rule: the group rings it (the busy one is
        skipped), for the group's ring time; no offer."""
        world = self.world(**{"301": "busy"})
        self.assertIs(world.router.waiting.reach("302"), Reach.FREE)
        session = RouteSession("600", "internal", statuses=("ANSWER",))
        self.successResultOf(world.router(session))
        self.assertIn(("Dial", "PJSIP/302,20,tT"), session.executed)
        self.assertEqual(world.unreachable, [])

    def test_member_with_call_waiting_in_a_call_counts_as_busy(self) -> None:
        """For a group a member that is not free counts as busy, call waiting or not."""
        world = self.world(**{"301": "busy", "302": "busy"})
        world.router.waiting.choose("302", True)
        self.successResultOf(world.router(RouteSession("600", "internal")))
        self.assertEqual([c.number for c, _ in world.unreachable], ["600"])

    def test_busy_dial_of_a_group_offers_too(self) -> None:
        """A group Dial that ends BUSY (every phone refused) reaches the handler too."""
        world = self.world()
        self.successResultOf(world.router(RouteSession("600", "internal", statuses=("BUSY",))))
        self.assertEqual([(c.number, why) for c, why in world.unreachable], [("600", Unreachable.BUSY)])
