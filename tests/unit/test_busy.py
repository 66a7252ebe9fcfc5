"""The single busy rule (`appliance.busy`), call waiting over the PBX model
(`appliance.callwaiting`), and the router and forwarding using it."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import busy
from appliance import settings as keys
from appliance.busy import Reach
from appliance.callwaiting import NAMESPACE, USER_BUSY, CallWaiting
from appliance.dialplan import CallRouter, Unreachable
from appliance.forwarding.records import Forward
from appliance.pbx import DeviceState, PBXModel, Presence
from appliance.settings import Settings
from appliance.testing import MemoryStore
from tests.unit.test_dialplan import FakeSession, offers_into
from tests.unit.test_forwarding import FakeSession as ForwardSession
from tests.unit.test_forwarding import World


class RuleTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Every presence with call waiting off and on."""
        table = {
            (Presence.LOGGED_OUT, False): Reach.LOGGED_OUT,
            (Presence.LOGGED_OUT, True): Reach.LOGGED_OUT,
            (Presence.DND, False): Reach.DND,
            (Presence.DND, True): Reach.DND,
            (Presence.BUSY, False): Reach.BUSY,
            (Presence.BUSY, True): Reach.WAITING,
            (Presence.RINGING, False): Reach.FREE,
            (Presence.RINGING, True): Reach.FREE,
            (Presence.IDLE, False): Reach.FREE,
            (Presence.IDLE, True): Reach.FREE,
        }
        for (presence, waiting), expected in table.items():
            self.assertIs(busy.reach(presence, waiting), expected, (presence, waiting))

    def test_in_call_states_are_busy(self) -> None:
        """INUSE, ONHOLD, RINGINUSE and BUSY devices are in a call; the rest are not."""
        in_call = {DeviceState.INUSE, DeviceState.ONHOLD, DeviceState.RINGINUSE, DeviceState.BUSY}
        pbx = PBXModel(clock=Clock())
        for state in DeviceState:
            pbx.resync(
                [{"Device": "PJSIP/200", "State": state.value}], [{"ObjectName": "200", "Uri": "u"}], []
            )
            found = busy.reach(pbx.presence("200"), call_waiting=False)
            self.assertIs(found is Reach.BUSY, state in in_call, state)

    def test_unavailable_before_ringing(self) -> None:
        """Busy forwards apply at once to logged out, DND and busy, never to a waiting line."""
        self.assertEqual({r for r in Reach if busy.unavailable(r)}, {Reach.LOGGED_OUT, Reach.DND, Reach.BUSY})

    def test_waiting_limit(self) -> None:
        """A waiting call counts as busy after the waiting time, unless it rings shorter anyway."""
        self.assertEqual(busy.waiting_limit(Reach.WAITING, 60, 20), 20)
        self.assertIsNone(busy.waiting_limit(Reach.WAITING, 15, 20))
        self.assertIsNone(busy.waiting_limit(Reach.FREE, 60, 20))

    def test_still_busy(self) -> None:
        """Only a user still in the other call makes the waiting call busy."""
        self.assertTrue(busy.still_busy(Presence.BUSY))
        self.assertFalse(busy.still_busy(Presence.RINGING))
        self.assertFalse(busy.still_busy(Presence.IDLE))


def pbx_with(**states: str) -> PBXModel:
    pbx = PBXModel(clock=Clock())
    pbx.resync(
        [{"Device": f"PJSIP/{n}", "State": s} for n, s in states.items()],
        [{"ObjectName": n, "Uri": f"sip:{n}@127.0.0.1:1"} for n in states],
        [],
    )
    return pbx


class Harness:
    def __init__(self, **states: str) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.settings = Settings(self.store)
        self.pbx = pbx_with(**states)
        self.hangups: list[tuple[str, int]] = []
        self.waiting = CallWaiting(self.store, self.settings, self.pbx, self.clock, self.hangup)

    def hangup(self, channel: str, cause: int) -> Deferred[Any]:
        self.hangups.append((channel, cause))
        return succeed(None)

    def ring(self, number: str, caller_uniqueid: str = "1.1") -> None:
        """The waiting leg appears, dialled by the caller, and rings."""
        self.pbx.handle(
            {
                "Event": "Newchannel",
                "Channel": f"PJSIP/{number}-0000000a",
                "Uniqueid": "1.2",
                "Linkedid": caller_uniqueid,
                "ChannelStateDesc": "Ringing",
            }
        )
        self.pbx.handle({"Event": "DialBegin", "Uniqueid": caller_uniqueid, "DestUniqueid": "1.2"})


class CallWaitingTests(SynchronousTestCase):
    def test_default_and_choice(self) -> None:
        """CW_DEFAULT applies until the user chooses; None returns to the default."""
        h = Harness(**{"200": "INUSE"})
        self.assertIs(h.waiting.reach("200"), Reach.BUSY)
        h.settings.set(keys.CW_DEFAULT, "on")
        self.assertIs(h.waiting.reach("200"), Reach.WAITING)
        h.waiting.choose("200", False)
        self.assertEqual(h.store.get(NAMESPACE, "200"), False)
        self.assertIs(h.waiting.reach("200"), Reach.BUSY)
        h.waiting.choose("200", None)
        self.assertIsNone(h.waiting.choice("200"))
        self.assertIs(h.waiting.reach("200"), Reach.WAITING)

    def test_unknown_or_unsynced_lines_ring(self) -> None:
        """A number that is no endpoint, or any before the first resync, is left to Dial."""
        h = Harness(**{"200": "INUSE"})
        self.assertIs(h.waiting.reach("999"), Reach.FREE)
        h.pbx.synced = False
        self.assertIs(h.waiting.reach("200"), Reach.FREE)

    def test_transferer_leaving_does_not_make_its_line_busy(self) -> None:
        """A call blindly transferred back to the transferer's own line (via a forward)
        finds the line free when the transferer's channel is its only call; another
        call on the line still makes it busy."""
        h = Harness(**{"300": "INUSE"})
        h.pbx.handle(
            {"Event": "Newchannel", "Channel": "PJSIP/300-0000000a", "Uniqueid": "9.1", "Linkedid": "9.1"}
        )
        self.assertIs(h.waiting.reach("300"), Reach.BUSY)
        self.assertIs(h.waiting.reach("300", leaving="PJSIP/300-0000000a"), Reach.FREE)
        self.assertIsNone(h.waiting.watch("1.1", "300", 60, leaving="PJSIP/300-0000000a"))
        self.assertIs(h.waiting.reach("300", leaving="PJSIP/300-0000000b"), Reach.BUSY)
        h.pbx.handle({"Event": "Hangup", "Channel": "PJSIP/300-0000000a", "Uniqueid": "9.1"})
        self.assertIs(h.pbx.presence("300"), Presence.BUSY)  # the device state comes later
        self.assertIs(h.waiting.reach("300", leaving="PJSIP/300-0000000a"), Reach.FREE)
        h.pbx.handle(
            {"Event": "Newchannel", "Channel": "PJSIP/300-0000000c", "Uniqueid": "9.2", "Linkedid": "9.2"}
        )
        self.assertIs(h.waiting.reach("300", leaving="PJSIP/300-0000000a"), Reach.BUSY)

    def test_waiting_call_cut_as_busy(self) -> None:
        """With call waiting on, the leg still ringing after CW_RING_TIME while the user is
        in the other call is hung up with cause 17, and the watch reports busy."""
        h = Harness(**{"200": "INUSE"})
        h.waiting.choose("200", True)
        watch = h.waiting.watch("1.1", "200", 60)
        assert watch is not None
        h.ring("200")
        h.clock.advance(19)
        self.assertEqual(h.hangups, [])
        h.clock.advance(1)
        self.assertEqual(h.hangups, [("PJSIP/200-0000000a", USER_BUSY)])
        self.assertTrue(watch.stop())

    def test_waiting_call_rings_on_when_the_other_call_ended(self) -> None:
        """If the user's other call ended meanwhile, the waiting call just rings on."""
        h = Harness(**{"200": "INUSE"})
        h.waiting.choose("200", True)
        watch = h.waiting.watch("1.1", "200", 60)
        assert watch is not None
        h.ring("200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "RINGING"})
        h.clock.advance(20)
        self.assertEqual(h.hangups, [])
        self.assertFalse(watch.stop())

    def test_answered_before_the_time_is_not_cut(self) -> None:
        """A waiting call answered in time is left alone; stopping cancels the timer."""
        h = Harness(**{"200": "INUSE"})
        h.waiting.choose("200", True)
        watch = h.waiting.watch("1.1", "200", 60)
        assert watch is not None
        self.assertFalse(watch.stop())
        h.clock.advance(30)
        self.assertEqual(h.hangups, [])

    def test_no_watch_without_waiting(self) -> None:
        """Free lines, call waiting off, or a ring time shorter than the waiting time: no watch."""
        h = Harness(**{"200": "INUSE", "201": "NOT_INUSE"})
        self.assertIsNone(h.waiting.watch("1.1", "200", 60))
        h.waiting.choose("200", True)
        self.assertIsNone(h.waiting.watch("1.1", "200", 10))
        self.assertIsNone(h.waiting.watch("1.1", "201", 60))


def numbers_into(into: list[str]) -> Any:
    """An unanswered observer noting each line."""
    return lambda call: into.append(call.number)


class RouterTests(SynchronousTestCase):
    def test_busy_before_ringing_without_call_waiting(self) -> None:
        """A line in a call with call waiting off is busy before anything rings."""
        h = Harness(**{"200": "INUSE"})
        seen: list[Unreachable] = []
        router = CallRouter(h.pbx, waiting=h.waiting)
        router.extensions.handle_unreachable(lambda _s, _c, reason: seen.append(reason))
        session = FakeSession("200", "internal")
        self.assertEqual(self.successResultOf(router(session)), "BUSY")
        self.assertEqual(session.executed, [])
        self.assertEqual(seen, [Unreachable.BUSY])

    def test_waiting_call_rings_then_busy(self) -> None:
        """With call waiting on the call is dialled; cut after the waiting time it
        ends as busy whatever DIALSTATUS said, and the offer follows."""
        h = Harness(**{"200": "INUSE"})
        h.waiting.choose("200", True)
        seen: list[Unreachable] = []
        router = CallRouter(h.pbx, waiting=h.waiting)
        router.extensions.handle_unreachable(lambda _s, _c, reason: seen.append(reason))
        session = FakeSession("200", "internal", dial_status="CHANUNAVAIL")
        dial: Deferred[int] = Deferred()

        def dial_pending(application: str, options: str = "") -> Deferred[int]:
            session.executed.append((application, options))
            return dial

        session.exec_ = dial_pending  # type: ignore[method-assign]
        result = router(session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])
        h.ring("200")
        h.clock.advance(20)
        dial.callback(0)
        self.assertEqual(self.successResultOf(result), "BUSY")
        self.assertEqual(seen, [Unreachable.BUSY])

    def test_cancel_and_no_answer_are_unanswered(self) -> None:
        """The caller's CANCEL and a ring timeout both make the line the caller's
        unanswered number; a CANCEL offers nothing (the caller is gone)."""
        for status in ("CANCEL", "NOANSWER"):
            h = Harness(**{"200": "NOT_INUSE"})
            told: list[str] = []
            offered: list[Unreachable] = []
            router = CallRouter(h.pbx, waiting=h.waiting)
            router.extensions.on_unanswered(numbers_into(told))
            router.extensions.handle_unreachable(offers_into(offered))
            self.successResultOf(router(FakeSession("200", "internal", dial_status=status)))
            self.assertEqual(told, ["200"], status)
            self.assertEqual(offered, [] if status == "CANCEL" else [Unreachable.NO_ANSWER], status)

    def test_answered_or_busy_is_not_unanswered(self) -> None:
        """Answered and busy calls leave the last unanswered number alone."""
        for status in ("ANSWER", "BUSY"):
            h = Harness(**{"200": "NOT_INUSE"})
            told: list[str] = []
            router = CallRouter(h.pbx, waiting=h.waiting)
            router.extensions.on_unanswered(numbers_into(told))
            self.successResultOf(router(FakeSession("200", "internal", dial_status=status)))
            self.assertEqual(told, [], status)


class ForwardingTests(SynchronousTestCase):
    def test_busy_forward_follows_the_same_rule(self) -> None:
        """A busy forward of a line in a call applies before ringing with call waiting
        off; with call waiting on the line rings first (the forward follows a busy end)."""
        world = World(**{"200": "busy"})
        waiting = CallWaiting(world.store, world.settings, world.model, Clock(), Harness().hangup)
        world.forwarding.busy_rule = waiting.unavailable
        world.router.waiting = waiting
        world.forwards.set("200", Forward("busy", "300"))
        session = ForwardSession("200", "internal")
        self.successResultOf(world.router(session))
        self.assertEqual([e for e in session.executed if e[0] == "Dial"], [("Dial", "PJSIP/300,60,tT")])

        waiting.choose("200", True)
        session = ForwardSession("200", "internal", statuses=("BUSY", "ANSWER"))
        self.successResultOf(world.router(session))
        dials = [e for e in session.executed if e[0] == "Dial"]
        self.assertEqual(dials, [("Dial", "PJSIP/200,60,tT"), ("Dial", "PJSIP/300,60,tT")])
