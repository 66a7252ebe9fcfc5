"""The call state machine (`appliance.callflow`): exact outputs for fed Dial
statuses, with a Clock; and the router driving it over a fake AGI session."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.busy import Reach
from appliance.callflow import (
    Call,
    CallFlow,
    CursorMoved,
    Finished,
    Lookups,
    Offer,
    Output,
    Reject,
    Ring,
    State,
    Unanswered,
    Unreachable,
)
from appliance.dialplan import CallExtensions, CallRouter
from appliance.directory import Group, User
from appliance.forwarding.records import Forward
from appliance.forwarding.rules import Context, plan
from appliance.groups import NAMESPACE, GroupCursors, ring_order
from tests.unit.test_forwarding import FakeSession, World

CALL = Call("200", "internal", "100", "Anna", "PJSIP/100-00000001", "1.1")


class Rig:
    """A world with users 100, 200, 300-302 and groups; who is free is set per test."""

    def __init__(self, **reach: Reach) -> None:
        self.world = World()
        directory = self.world.directory
        for ext in ("303", "304"):
            directory.put_user(User(ext, f"User {ext}"))
        self.reach = {**reach}
        self.clock = Clock()
        self.cursor: dict[str, str] = {}
        self.world.forwarding.reach = lambda number: self.reach.get(number, Reach.FREE)

    def group(self, name: str, number: str, members: tuple[str, ...], **fields: Any) -> None:
        self.world.directory.put_group(Group(name, number, members, **fields))

    def flow(self, number: str, caller: Call = CALL) -> CallFlow:
        call = replace(caller, number=number)
        context: Context = self.world.forwarding.context(call)
        world = Lookups(
            reach=lambda n: self.reach.get(n, Reach.FREE),
            last_first=self.cursor.get,
            display=lambda leg: self.world.forwarding.display(leg, call, context.policy),
        )
        return CallFlow(call, plan(number, context), context, world, self.clock)


def rings(outputs: list[Output]) -> list[tuple[str, int, str]]:
    return [(o.dial, o.seconds, o.caller_name) for o in outputs if isinstance(o, Ring)]


def finished(outputs: list[Output]) -> Finished:
    [done] = [o for o in outputs if isinstance(o, Finished)]
    return done


class LineTests(SynchronousTestCase):
    def test_free_line_rings_and_answers(self) -> None:
        """CHECK → DIALLING → DONE: one Ring, then Finished with the answered leg."""
        flow = Rig().flow("200")
        self.assertEqual(flow.start(), [Ring("PJSIP/200", 60, "Anna", watch="200")])
        self.assertIs(flow.state, State.DIALLING)
        [done] = flow.dialled("ANSWER", hung_up=False)
        assert isinstance(done, Finished)
        self.assertEqual(
            (done.outcome.status, done.outcome.dials, done.outcome.offered), ("ANSWER", ("PJSIP/200",), None)
        )
        self.assertIs(flow.state, State.DONE)

    def test_busy_line_is_offered_without_ringing(self) -> None:
        """A line in a call (busy rule) is not rung: Offer, then Finished."""
        flow = Rig(**{"200": Reach.BUSY}).flow("200")
        outputs = flow.start()
        self.assertEqual(outputs[0], Offer(replace(CALL, number="200"), Unreachable.BUSY))
        self.assertEqual(finished(outputs).outcome.dials, ())

    def test_no_answer_tells_unanswered_then_offers(self) -> None:
        """A ring timeout: the line is the caller's unanswered number, then the offer."""
        flow = Rig().flow("200")
        flow.start()
        outputs = flow.dialled("NOANSWER", hung_up=False)
        self.assertEqual(
            outputs[:2],
            [
                Unanswered(replace(CALL, number="200")),
                Offer(replace(CALL, number="200"), Unreachable.NO_ANSWER),
            ],
        )

    def test_inputs_out_of_state_are_refused(self) -> None:
        """dialled() without a Ring out is a driver bug, said so."""
        flow = Rig().flow("200")
        self.assertRaises(RuntimeError, flow.dialled, "ANSWER", False)
        flow.start()
        flow.dialled("ANSWER", False)
        self.assertRaises(RuntimeError, flow.dialled, "ANSWER", False)


class StrategyTests(SynchronousTestCase):
    def test_ring_order(self) -> None:
        """Cyclic starts after the member rung first last time; unknown cursor: from the top."""
        members = ("301", "302", "303")
        self.assertEqual(ring_order(members, "hunt", "302"), members)
        self.assertEqual(ring_order(members, "cyclic", "302"), ("303", "301", "302"))
        self.assertEqual(ring_order(members, "cyclic", "303"), members)
        self.assertEqual(ring_order(members, "cyclic", "999"), members)

    def test_hunt_rings_members_one_after_another_skipping_busy(self) -> None:
        """Hunt: 301 for its ring time, 302 (in a call, call waiting on) skipped, then
        303; nobody answered and no overflow: the group is offered as no answer."""
        rig = Rig(**{"302": Reach.WAITING})
        rig.group("sales", "600", ("301", "302", "303"), strategy="hunt", ring_seconds=5)
        flow = rig.flow("600")
        self.assertEqual(rings(flow.start()), [("PJSIP/301", 5, "sales: Anna")])
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/303", 5, "sales: Anna")])
        outputs = flow.dialled("NOANSWER", False)
        group_call = replace(CALL, number="600", group=True)
        # The group, not a member, is the caller's last unanswered number (*39).
        self.assertEqual(outputs[:2], [Unanswered(group_call), Offer(group_call, Unreachable.NO_ANSWER)])
        self.assertEqual(finished(outputs).outcome.dials, ("PJSIP/301", "PJSIP/303"))

    def test_caller_who_gives_up_on_a_group_has_it_as_last_unanswered(self) -> None:
        """The caller hangs up while the hunt group rings: the group is told as
        unanswered; a member answering is not."""
        rig = Rig()
        rig.group("sales", "600", ("301", "302"), strategy="hunt", ring_seconds=5)
        flow = rig.flow("600")
        flow.start()
        outputs = flow.dialled("CANCEL", True)
        self.assertEqual(outputs[0], Unanswered(replace(CALL, number="600", group=True)))
        answered = rig.flow("600")
        answered.start()
        self.assertEqual(rings(answered.dialled("NOANSWER", False)), [("PJSIP/302", 5, "sales: Anna")])
        self.assertEqual([type(o) for o in answered.dialled("ANSWER", True)], [Finished])

    def test_member_who_became_busy_is_skipped_at_its_turn(self) -> None:
        """Who is free is asked when the member's turn comes, not at the start."""
        rig = Rig()
        rig.group("sales", "600", ("301", "302"), strategy="hunt", ring_seconds=5)
        flow = rig.flow("600")
        flow.start()
        rig.reach["302"] = Reach.DND
        outputs = flow.dialled("NOANSWER", False)
        self.assertEqual(rings(outputs), [])
        self.assertEqual(finished(outputs).outcome.status, "NOANSWER")

    def test_cyclic_moves_the_cursor_with_the_first_member_rung(self) -> None:
        """Cyclic after 302 last time: 303 first (the cursor moves to it), then 301."""
        rig = Rig()
        rig.cursor["600"] = "302"
        rig.group("sales", "600", ("301", "302", "303"), strategy="cyclic", ring_seconds=5)
        flow = rig.flow("600")
        outputs = flow.start()
        self.assertEqual(outputs[0], CursorMoved("600", "303"))
        self.assertEqual(rings(outputs), [("PJSIP/303", 5, "sales: Anna")])
        outputs = flow.dialled("BUSY", False)
        self.assertEqual(outputs, [Ring("PJSIP/301", 5, "sales: Anna")])

    def test_ringall_rings_only_free_members(self) -> None:
        """Ringall: every free member at once for the group's ring time; logged out,
        DND and in-call members (even with call waiting) are left out."""
        reach = {"301": Reach.LOGGED_OUT, "302": Reach.WAITING, "304": Reach.DND}
        rig = Rig(**reach)
        rig.group("sales", "600", ("301", "302", "303", "304", "200"), ring_seconds=7)
        flow = rig.flow("600")
        self.assertEqual(rings(flow.start()), [("PJSIP/303&PJSIP/200", 7, "sales: Anna")])

    def test_group_display_off(self) -> None:
        """GROUP_DISPLAY off: members see the caller's own name."""
        rig = Rig()
        rig.world.settings.set("GROUP_DISPLAY", "off")
        rig.group("sales", "600", ("301",))
        self.assertEqual(rings(rig.flow("600").start()), [("PJSIP/301", 20, "Anna")])


class OverflowTests(SynchronousTestCase):
    def test_everyone_skipped_without_overflow_is_busy(self) -> None:
        """Every member busy and no overflow: the group is offered as busy, nothing rang."""
        rig = Rig(**{"301": Reach.BUSY, "302": Reach.LOGGED_OUT})
        rig.group("sales", "600", ("301", "302"), strategy="hunt")
        outputs = rig.flow("600").start()
        self.assertEqual(outputs[0], Offer(replace(CALL, number="600", group=True), Unreachable.BUSY))
        self.assertEqual(finished(outputs).outcome.status, "BUSY")

    def test_overflow_busy_rejects(self) -> None:
        """Overflow "busy": the caller hears busy; no offer."""
        rig = Rig()
        rig.group("sales", "600", ("301",), overflow="busy", ring_seconds=5)
        flow = rig.flow("600")
        flow.start()
        outputs = flow.dialled("NOANSWER", False)
        self.assertEqual([type(o) for o in outputs], [Unanswered, Reject, Finished])

    def test_line_that_rang_is_told_before_the_busy_overflow(self) -> None:
        """200 rang unanswered and forwards on no answer to group 600, whose overflow
        is busy: 200 is still the caller's unanswered number, then the busy tone."""
        rig = Rig()
        rig.group("sales", "600", ("301",), overflow="busy", ring_seconds=5)
        rig.world.forwards.set("200", Forward("noanswer", "600", seconds=5))
        flow = rig.flow("200")
        flow.start()
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/301", 5, "sales: Anna")])
        outputs = flow.dialled("NOANSWER", False)
        self.assertEqual(outputs[:2], [Unanswered(replace(CALL, number="200")), Reject()])
        self.assertEqual([type(o) for o in outputs], [Unanswered, Reject, Finished])

    def test_overflow_to_a_user_and_to_another_group(self) -> None:
        """Nobody answered: the call goes on to the overflow number (a user; or a
        group, which rings its own members)."""
        rig = Rig()
        rig.group("sales", "600", ("301",), overflow="300", ring_seconds=5)
        rig.group("support", "610", ("302",), overflow="600", ring_seconds=5)
        flow = rig.flow("600")
        flow.start()
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/300", 60, "Anna")])
        self.assertEqual(flow.leg.reason, "overflow")
        flow = rig.flow("610")
        flow.start()
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/301", 5, "sales: Anna")])

    def test_overflow_loop_ends(self) -> None:
        """600 overflows to 610 and 610 to 600, everyone busy: each group is tried
        once, then the call ends busy at 610."""
        rig = Rig(**{"301": Reach.BUSY, "302": Reach.BUSY})
        rig.group("sales", "600", ("301",), overflow="610")
        rig.group("support", "610", ("302",), overflow="600")
        outputs = rig.flow("600").start()
        self.assertEqual(
            outputs[0],
            Offer(replace(CALL, number="610", forwarded_from=("600",), group=True), Unreachable.BUSY),
        )
        legs = [(leg.destination.number, status) for leg, status in finished(outputs).outcome.legs]
        self.assertEqual(legs, [("600", "BUSY"), ("610", "BUSY")])


class GroupForwardTests(SynchronousTestCase):
    def test_unconditional_group_forward(self) -> None:
        """A group's unconditional forward sends the call on before any member rings,
        with the forward display naming the group's number."""
        rig = Rig()
        rig.group("sales", "600", ("301", "302"))
        rig.world.forwards.set("600", Forward("unconditional", "300"))
        self.assertEqual(rings(rig.flow("600").start()), [("PJSIP/300", 60, "Uml. für sales: Anna")])

    def test_busy_group_forward_when_everyone_is_busy(self) -> None:
        """The busy forward applies once every member is busy; one free member rings."""
        rig = Rig(**{"301": Reach.BUSY, "302": Reach.DND})
        rig.group("sales", "600", ("301", "302"))
        rig.world.forwards.set("600", Forward("busy", "300"))
        self.assertEqual(rings(rig.flow("600").start()), [("PJSIP/300", 60, "Uml. für sales: Anna")])
        rig.reach["302"] = Reach.FREE
        self.assertEqual(rings(rig.flow("600").start()), [("PJSIP/302", 20, "sales: Anna")])

    def test_no_answer_forward_after_its_seconds_of_hunting(self) -> None:
        """No-answer forward after 8 s of a hunt group with 5 s per member: 301 rings
        5 s, 302 the remaining 3 s, then the forward target; the group's overflow
        does not apply."""
        rig = Rig()
        rig.group("sales", "600", ("301", "302", "303"), strategy="hunt", ring_seconds=5, overflow="busy")
        rig.world.forwards.set("600", Forward("noanswer", "300", seconds=8))
        flow = rig.flow("600")
        self.assertEqual(rings(flow.start()), [("PJSIP/301", 5, "sales: Anna")])
        rig.clock.advance(5)
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/302", 3, "sales: Anna")])
        rig.clock.advance(3)
        self.assertEqual(rings(flow.dialled("NOANSWER", False)), [("PJSIP/300", 60, "Anna")])

    def test_forward_target_breaks_through_a_group_forward(self) -> None:
        """The group's forward target calling the group reaches its members (seed 002)."""
        rig = Rig()
        rig.group("sales", "600", ("301",))
        rig.world.forwards.set("600", Forward("unconditional", "300"))
        from_300 = Call("600", "internal", "300", "User 300", "PJSIP/300-00000002", "1.2")
        self.assertEqual(
            rings(rig.flow("600", caller=from_300).start()), [("PJSIP/301", 20, "sales: User 300")]
        )

    def test_forward_to_a_group_grants_members_nothing(self) -> None:
        """200 forwards to group 600: member 301 calling 200 is forwarded like anyone."""
        rig = Rig()
        rig.group("sales", "600", ("301", "302"))
        rig.world.forwards.set("200", Forward("unconditional", "600"))
        from_301 = Call("200", "internal", "301", "User 301", "PJSIP/301-00000003", "1.3")
        [ring] = rings(rig.flow("200", caller=from_301).start())
        self.assertEqual(ring[0], "PJSIP/301&PJSIP/302")


class DriverTests(SynchronousTestCase):
    """The router over a fake AGI session: the thin part."""

    def test_cyclic_cursor_kept_in_the_store_across_calls(self) -> None:
        """Three calls to a cyclic group nobody answers start at 301, 302, 303; the
        cursor is in the store (a restarted appliance goes on from it)."""
        world = World()
        world.directory.put_user(User("303", "User 303"))
        world.directory.put_group(
            Group("sales", "600", ("301", "302", "303"), strategy="cyclic", ring_seconds=5)
        )
        cursors = GroupCursors(world.store)
        router = CallRouter(world.model, forwarding=world.forwarding, cursors=cursors, clock=Clock())
        firsts = []
        for _ in range(3):
            session = FakeSession("600", "internal", statuses=("NOANSWER",) * 3)
            self.successResultOf(router(session))
            dials = [e[1] for e in session.executed if e[0] == "Dial"]
            firsts.append(dials[0])
            self.assertEqual(len(dials), 3)
        self.assertEqual(firsts, ["PJSIP/301,5,tT", "PJSIP/302,5,tT", "PJSIP/303,5,tT"])
        self.assertEqual(world.store.get(NAMESPACE, "600"), "303")

    def test_group_display_set_and_restored_before_the_offer(self) -> None:
        """Members see "sales: Anna"; before the offer the caller's own name returns."""
        world = World()
        world.directory.put_group(Group("sales", "600", ("301",), ring_seconds=5))
        extensions = CallExtensions()
        offered: list[tuple[str, bool]] = []
        extensions.handle_unreachable(lambda _s, call, _why: offered.append((call.number, call.group)))
        router = CallRouter(world.model, forwarding=world.forwarding, extensions=extensions)
        session = FakeSession("600", "internal", statuses=("NOANSWER",))
        self.successResultOf(router(session))
        self.assertEqual(
            session.executed,
            [
                ("SET", "APPLIANCE_CALLER_NAME", "Anna"),
                ("SET", "CALLERID(name)", "sales: Anna"),
                ("Dial", "PJSIP/301,5,tT"),
                ("SET", "CALLERID(name)", "Anna"),
            ],
        )
        self.assertEqual(offered, [("600", True)])

    def test_overflow_busy_plays_busy(self) -> None:
        """Overflow "busy" after nobody answered: Busy() on the channel."""
        world = World()
        world.directory.put_group(Group("sales", "600", ("301",), ring_seconds=5, overflow="busy"))
        router = CallRouter(world.model, forwarding=world.forwarding)
        session = FakeSession("600", "internal", statuses=("NOANSWER",))
        self.successResultOf(router(session))
        self.assertEqual(session.executed[-1], ("Busy", "5"))

    def test_endpoints_extension_point(self) -> None:
        """A resolver plugged in decides which endpoints ring for a number (several
        devices of one user); the default is the number itself."""
        world = World()
        extensions = CallExtensions()
        extensions.resolve_endpoints(
            lambda number: (number, f"{number}-soft") if number == "300" else (number,)
        )
        router = CallRouter(world.model, forwarding=world.forwarding, extensions=extensions)
        session = FakeSession("300", "internal")
        self.successResultOf(router(session))
        self.assertEqual(session.executed[-1], ("Dial", "PJSIP/300&PJSIP/300-soft,60,tT"))
        self.assertRaises(ValueError, extensions.resolve_endpoints, lambda number: (number,))

    def test_hang_up_ends_the_hunt(self) -> None:
        """The caller left while member 301 rang: nobody else rings."""
        world = World()
        world.directory.put_group(Group("sales", "600", ("301", "302"), strategy="hunt", ring_seconds=5))
        router = CallRouter(world.model, forwarding=world.forwarding)
        session = FakeSession("600", "internal", statuses=("CANCEL",))
        session.exec_ = _hanging_up(session)  # type: ignore[method-assign]
        self.assertEqual(self.successResultOf(router(session)), "CANCEL")
        self.assertEqual([e[1] for e in session.executed if e[0] == "Dial"], ["PJSIP/301,5,tT"])


def _hanging_up(session: FakeSession) -> Any:
    original = session.exec_

    def exec_(application: str, options: str = "") -> Any:
        return original(application, options).addCallback(lambda _: -1)

    return exec_
