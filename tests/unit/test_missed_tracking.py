"""Call tracking from the PBX model's channel events."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.task import Clock

from appliance.missed.service import JUDGE_DELAY
from appliance.missed.tracking import CallTracker, TrackedCall
from appliance.pbx import ChannelChanged, PBXModel


@dataclass
class Script:
    """Feed a `PBXModel` the AMI events of calls, advancing a `Clock`."""

    clock: Clock = field(default_factory=Clock)
    model: PBXModel = field(init=False)
    _n: int = 0

    def __post_init__(self) -> None:
        self.model = PBXModel(clock=self.clock)
        self.model.synced = True

    def _uid(self) -> str:
        self._n += 1
        return f"1700000000.{self._n}"

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def caller(self, endpoint: str, number: str, name: str = "", exten: str = "200") -> str:
        uid = self._uid()
        self.model.handle(
            {
                "Event": "Newchannel",
                "Channel": f"PJSIP/{endpoint}-{self._n:08x}",
                "Uniqueid": uid,
                "Linkedid": uid,
                "ChannelStateDesc": "Ring",
                "CallerIDNum": number,
                "CallerIDName": name,
                "Exten": exten,
                "Context": "from-trunk" if endpoint == "trunk" else "phones",
            }
        )
        return uid

    def dial(self, caller: str, endpoint: str) -> str:
        """A leg to ``endpoint`` that starts ringing."""
        uid = self._uid()
        self.model.handle(
            {
                "Event": "Newchannel",
                "Channel": f"PJSIP/{endpoint}-{self._n:08x}",
                "Uniqueid": uid,
                "Linkedid": caller,
                "ChannelStateDesc": "Down",
                "Exten": "s",
            }
        )
        self.model.handle({"Event": "DialBegin", "Uniqueid": caller, "DestUniqueid": uid})
        self.model.handle(
            {"Event": "Newstate", "Uniqueid": uid, "ChannelStateDesc": "Ringing", "Linkedid": caller}
        )
        return uid

    def answer(self, leg: str) -> None:
        self.model.handle({"Event": "Newstate", "Uniqueid": leg, "ChannelStateDesc": "Up"})
        self.model.handle({"Event": "DialEnd", "DestUniqueid": leg, "DialStatus": "ANSWER"})

    def pickup(self, leg: str, picker: str) -> None:
        self.model.handle(
            {"Event": "Pickup", "Channel": f"PJSIP/{picker}-0000ffff", "TargetUniqueid": leg, "Uniqueid": "x"}
        )
        self.answer(leg)

    def end_dial(self, leg: str, status: str = "CANCEL") -> None:
        self.model.handle({"Event": "DialEnd", "DestUniqueid": leg, "DialStatus": status})

    def hangup(self, *uids: str) -> None:
        """The legs end in one AMI read; then the moment finished calls are judged."""
        for uid in uids:
            self.model.handle({"Event": "Hangup", "Uniqueid": uid, "Cause": "16"})
        self.clock.advance(JUDGE_DELAY)

    def unanswered(self, endpoint: str, number: str, targets: list[str], ring: float, name: str = "") -> str:
        """A whole call from ``number`` ringing ``targets`` in parallel for ``ring`` s."""
        caller = self.caller(endpoint, number, name)
        legs = [self.dial(caller, t) for t in targets]
        self.wait(ring)
        for leg in legs:
            self.end_dial(leg)
        self.hangup(*legs, caller)
        return caller


def tracked(script: Script) -> list[TrackedCall]:
    tracker = CallTracker()
    finished: list[TrackedCall] = []

    def feed(change: object) -> None:
        if isinstance(change, ChannelChanged):
            call = tracker.feed(change, script.clock.seconds())
            if call is not None:
                finished.append(call)

    script.model.subscribe(feed)
    return finished


def test_unanswered_call_reports_caller_and_ring_time() -> None:
    """A call nobody answers ends with the caller's ID and how long the leg rang."""
    script = Script()
    finished = tracked(script)
    script.wait(100)
    script.unanswered("trunk", "+4930123456", ["200"], ring=7.5, name="Erika")
    [call] = finished
    assert (call.caller_num, call.caller_name, call.caller_endpoint) == ("+4930123456", "Erika", "trunk")
    [leg] = call.rung_legs()
    assert (leg.endpoint, leg.ring_start, leg.ring_seconds, leg.answered_here) == ("200", 100.0, 7.5, False)
    assert call.answered_by() is None and call.ended == 107.5


def test_call_ends_only_with_its_last_channel() -> None:
    """The call is reported once, when the last of its channels hangs up."""
    script = Script()
    finished = tracked(script)
    caller = script.caller("trunk", "+4930123456")
    leg = script.dial(caller, "200")
    script.hangup(leg)
    assert finished == []
    script.hangup(caller)
    assert len(finished) == 1


def test_group_call_answered_by_one_member() -> None:
    """Parallel legs: all rang; the one that answered is the call's answerer."""
    script = Script()
    finished = tracked(script)
    caller = script.caller("trunk", "+4930123456")
    legs = [script.dial(caller, ext) for ext in ("200", "201", "202")]
    script.wait(3)
    script.answer(legs[1])
    script.end_dial(legs[0])
    script.end_dial(legs[2])
    script.hangup(legs[0], legs[2])
    script.wait(10)
    script.hangup(legs[1], caller)
    [call] = finished
    assert [leg.endpoint for leg in call.rung_legs()] == ["200", "201", "202"]
    assert [leg.answered_here for leg in call.rung_legs()] == [False, True, False]
    assert [leg.ring_seconds for leg in call.rung_legs()] == [3.0, 3.0, 3.0]
    assert call.answered_by() == "201"


def test_pickup_is_a_third_party_answer() -> None:
    """A leg picked up by another phone was not answered by its own phone."""
    script = Script()
    finished = tracked(script)
    caller = script.caller("trunk", "+4930123456")
    leg = script.dial(caller, "200")
    script.wait(4)
    script.pickup(leg, "201")
    script.wait(5)
    script.hangup(leg, caller)
    [call] = finished
    [rung] = call.rung_legs()
    assert rung.answered_here is False and rung.ring_seconds == 4.0
    assert call.answered_by() == "201"


def test_sequential_legs_in_ring_order() -> None:
    """Hunt / forward on no answer: legs one after another, in the order they rang."""
    script = Script()
    finished = tracked(script)
    caller = script.caller("trunk", "+4930123456")
    first = script.dial(caller, "201")
    script.wait(5)
    script.end_dial(first, "NOANSWER")
    script.hangup(first)
    second = script.dial(caller, "200")
    script.wait(2)
    script.end_dial(second)
    script.hangup(second, caller)
    [call] = finished
    assert [(leg.endpoint, leg.ring_seconds) for leg in call.rung_legs()] == [("201", 5.0), ("200", 2.0)]


def test_suppressed_caller() -> None:
    """ "anonymous" or no number at all counts as a suppressed caller ID."""
    script = Script()
    finished = tracked(script)
    script.unanswered("trunk", "anonymous", ["200"], ring=3)
    script.unanswered("trunk", "", ["200"], ring=3)
    script.unanswered("trunk", "+4930123456", ["200"], ring=3)
    assert [c.suppressed for c in finished] == [True, True, False]
