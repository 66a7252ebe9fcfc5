"""The PBX model, fed with a recorded Asterisk 22 AMI stream and hand-made events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import AMIActionError, AMIConnectionLost, AMIMessage, AMIProtocol
from appliance.pbx import (
    RESYNC_RETRY_SECONDS,
    ChannelChanged,
    DeviceState,
    EndpointChanged,
    PBXModel,
    PBXService,
    Presence,
    Resynced,
    endpoint_of,
)

RECORDING = Path(__file__).parent / "data" / "ami-call-100-to-200.txt"


def events_to(model: PBXModel) -> AMIProtocol:
    """Our AMI protocol handing every event to the model, as `PBXService` subscribes it."""
    handle: Callable[[Any], None] = model.handle
    return AMIProtocol(eventHandler=handle)


def feed(model: PBXModel, raw: bytes) -> None:
    """Parse ``raw`` with our AMI protocol and hand every event to the model."""
    protocol = events_to(model)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(raw)


class EndpointNameTests(SynchronousTestCase):
    def test_channel_and_device_names(self) -> None:
        """Channel suffixes are stripped, device names and dashes in names are kept."""
        self.assertEqual(endpoint_of("PJSIP/200-0000000a"), "200")
        self.assertEqual(endpoint_of("PJSIP/200"), "200")
        self.assertEqual(endpoint_of("PJSIP/front-desk"), "front-desk")
        self.assertEqual(endpoint_of("PJSIP/front-desk-00000001"), "front-desk")
        self.assertIsNone(endpoint_of("Local/200@phones-0001;1"))
        self.assertIsNone(endpoint_of("garbage"))


class RecordedCallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.model = PBXModel(clock=self.clock)
        self.changes: list[object] = []
        self.model.subscribe(self.changes.append)

    def test_recorded_call_presence_sequence(self) -> None:
        """A real 100→200 call: 200 goes busy while called and idle afterwards, and
        every channel that was created is gone at the end."""
        feed(self.model, RECORDING.read_bytes())
        states = [
            c.new.device for c in self.changes if isinstance(c, EndpointChanged) and c.new.name == "200"
        ]
        self.assertIn(DeviceState.BUSY, states)
        self.assertEqual(states[-1], DeviceState.NOT_INUSE)
        created = {c.channel.uniqueid for c in self.changes if isinstance(c, ChannelChanged) and not c.hungup}
        hung = {c.channel.uniqueid for c in self.changes if isinstance(c, ChannelChanged) and c.hungup}
        self.assertEqual(len(created), 2)
        self.assertEqual(created, hung)
        self.assertEqual(self.model.channels, {})

    def test_recorded_stream_in_small_chunks(self) -> None:
        """Split at arbitrary points, the stream gives the same model."""
        whole = PBXModel(clock=self.clock)
        feed(whole, RECORDING.read_bytes())
        chunked = PBXModel(clock=self.clock)
        protocol = events_to(chunked)
        protocol.makeConnection(StringTransport())
        data = RECORDING.read_bytes()
        for start in range(0, len(data), 7):
            protocol.dataReceived(data[start : start + 7])
        self.assertEqual(chunked.endpoints, whole.endpoints)


class EventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.model = PBXModel(clock=self.clock)

    def test_registration_and_presence(self) -> None:
        """Presence: logged out without contact, then idle, ringing, busy, DND."""
        handle = self.model.handle
        self.assertIs(self.model.presence("200"), Presence.LOGGED_OUT)
        handle(
            {"Event": "ContactStatus", "AOR": "200", "URI": "sip:200@127.0.0.1:5", "ContactStatus": "Created"}
        )
        handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertIs(self.model.presence("200"), Presence.IDLE)
        handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "RINGING"})
        self.assertIs(self.model.presence("200"), Presence.RINGING)
        handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "INUSE"})
        self.assertIs(self.model.presence("200"), Presence.BUSY)
        handle({"Event": "PresenceStateChange", "Presentity": "CustomPresence:200", "Status": "dnd"})
        self.assertIs(self.model.presence("200"), Presence.DND)
        handle(
            {"Event": "ContactStatus", "AOR": "200", "URI": "sip:200@127.0.0.1:5", "ContactStatus": "Removed"}
        )
        self.assertIs(self.model.presence("200"), Presence.LOGGED_OUT)

    def test_unknown_and_malformed_events_are_ignored(self) -> None:
        """Events the model does not know, or that lack fields, change nothing."""
        for event in [
            {"Event": "VarSet", "Variable": "X"},
            {"Event": "DeviceStateChange"},
            {"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NONSENSE"},
            {"Event": "Hangup", "Uniqueid": "nope"},
            {"Event": "Newstate", "Uniqueid": "nope"},
            {},
        ]:
            self.model.handle(event)
        self.assertEqual(self.model.endpoint("200").device, DeviceState.UNKNOWN)
        self.assertEqual(self.model.channels, {})

    def test_answer_time_from_clock(self) -> None:
        """A channel's answer time is the injected clock's time at the Up state."""
        self.clock.advance(100)
        self.model.handle(
            {
                "Event": "Newchannel",
                "Channel": "PJSIP/200-00000001",
                "Uniqueid": "u1",
                "Linkedid": "u0",
                "ChannelStateDesc": "Ring",
            }
        )
        self.clock.advance(5)
        self.model.handle({"Event": "Newstate", "Uniqueid": "u1", "ChannelStateDesc": "Up"})
        channel = self.model.channels["u1"]
        self.assertEqual((channel.created, channel.answered), (100, 105))
        self.assertEqual(self.model.call("u0"), [channel])

    def test_observer_failure_does_not_stop_others(self) -> None:
        """A failing observer is logged; the next observer still hears the change."""
        heard: list[object] = []

        def broken(change: object) -> None:
            raise RuntimeError("observer bug")

        self.model.subscribe(broken)
        self.model.subscribe(heard.append)
        self.model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "INUSE"})
        self.assertEqual(len(heard), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class EndingTests(SynchronousTestCase):
    """`PBXModel.channel_ending`: what our call route knows before Asterisk's teardown."""

    def setUp(self) -> None:
        self.model = PBXModel(clock=Clock())
        self.changes: list[object] = []
        self.model.subscribe(self.changes.append)
        handle = self.model.handle
        handle(
            {"Event": "ContactStatus", "AOR": "200", "URI": "sip:200@127.0.0.1:5", "ContactStatus": "Created"}
        )
        handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "INUSE"})
        self.channel("PJSIP/200-00000001", "1.1")

    def channel(self, name: str, uniqueid: str) -> None:
        self.model.handle(
            {"Event": "Newchannel", "Channel": name, "Uniqueid": uniqueid, "ChannelStateDesc": "Up"}
        )

    def ended(self) -> list[tuple[bool, bool]]:
        """(call_over before, after) of each change of endpoint 200 so far."""
        return [
            (c.old.call_over, c.new.call_over)
            for c in self.changes
            if isinstance(c, EndpointChanged) and c.new.name == "200"
        ]

    def test_last_channel_ending_makes_the_call_over(self) -> None:
        """The line's only channel ending: its call is over for a callback, while
        Asterisk's busy still holds for everything that rings it."""
        self.changes.clear()
        self.model.channel_ending("1.1")
        endpoint = self.model.endpoint("200")
        self.assertTrue(endpoint.call_over)
        self.assertIs(endpoint.presence, Presence.BUSY)
        self.assertEqual(self.ended(), [(False, True)])

    def test_another_call_on_the_line_keeps_it_in_a_call(self) -> None:
        """Call waiting: a second channel on the same line (ringing or held) is not
        ending, so the line's call is not over."""
        self.channel("PJSIP/200-00000002", "1.2")
        self.model.channel_ending("1.1")
        self.assertFalse(self.model.endpoint("200").call_over)
        self.model.handle({"Event": "Hangup", "Uniqueid": "1.2"})
        self.assertTrue(self.model.endpoint("200").call_over)

    def test_a_new_channel_ends_it(self) -> None:
        """A call arriving on the line while the old one ends: in a call again."""
        self.model.channel_ending("1.1")
        self.channel("PJSIP/200-00000003", "1.3")
        self.assertFalse(self.model.endpoint("200").call_over)

    def test_no_flap_between_hangup_and_device_state(self) -> None:
        """The Hangup of the ending channel keeps the call over until Asterisk's device
        state follows; then the line is simply idle, and no ending mark is left."""
        self.model.channel_ending("1.1")
        self.changes.clear()
        self.model.handle({"Event": "Hangup", "Uniqueid": "1.1"})
        self.assertTrue(self.model.endpoint("200").call_over)
        self.model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        endpoint = self.model.endpoint("200")
        self.assertEqual((endpoint.calls_ending, endpoint.presence), (False, Presence.IDLE))
        self.assertEqual(self.ended(), [(True, False)])
        self.assertEqual(self.model.ending, set())

    def test_device_state_without_channels_is_asterisks_word(self) -> None:
        """After the Hangup, a device state still in use (another call the model has
        not seen yet) counts: the line is in a call."""
        self.model.channel_ending("1.1")
        self.model.handle({"Event": "Hangup", "Uniqueid": "1.1"})
        self.model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "RINGINUSE"})
        self.assertFalse(self.model.endpoint("200").call_over)
        self.assertIs(self.model.presence("200"), Presence.BUSY)

    def test_dialling_again_is_not_ending(self) -> None:
        """A channel marked ending that dials again (moved on in a way the route did
        not see) is in a call after all."""
        self.model.channel_ending("1.1")
        self.model.handle({"Event": "DialBegin", "Uniqueid": "1.1", "DestUniqueid": "2.1"})
        self.assertFalse(self.model.endpoint("200").call_over)
        self.assertEqual(self.model.ending, set())

    def test_going_on_takes_the_line_back(self) -> None:
        """A channel let go that turns out to go on (redirected) is in a call again."""
        self.model.channel_ending("1.1")
        self.changes.clear()
        self.model.channel_goes_on("1.1")
        self.assertFalse(self.model.endpoint("200").call_over)
        self.assertEqual(self.ended(), [(True, False)])
        self.assertEqual(self.model.ending, set())

    def test_unknown_channels_are_ignored(self) -> None:
        """An unknown uniqueid or a channel of no endpoint (Local) changes nothing."""
        self.model.handle({"Event": "Newchannel", "Channel": "Local/200@x-0001;1", "Uniqueid": "9.9"})
        self.changes.clear()
        self.model.channel_ending("nope")
        self.model.channel_ending("9.9")
        self.assertEqual(self.changes, [])
        self.assertEqual(self.model.ending, set())


class ResyncTests(SynchronousTestCase):
    def test_resync_replaces_stale_state(self) -> None:
        """After a resync only what Asterisk lists is left: dead channels are hung up,
        registrations and device states are Asterisk's."""
        model = PBXModel(clock=Clock())
        model.handle(
            {
                "Event": "Newchannel",
                "Channel": "PJSIP/200-00000001",
                "Uniqueid": "old",
                "Linkedid": "old",
                "ChannelStateDesc": "Up",
            }
        )
        model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "INUSE"})
        changes: list[object] = []
        model.subscribe(changes.append)
        model.resync(
            device_states=[{"Device": "PJSIP/200", "State": "NOT_INUSE"}],
            contacts=[{"ObjectName": "200;@abc", "Uri": "sip:200@127.0.0.1:5", "Status": "NonQualified"}],
            channels=[],
            presence=[{"Presentity": "CustomPresence:201", "Status": "dnd"}],
        )
        self.assertEqual(model.channels, {})
        self.assertIs(model.presence("200"), Presence.IDLE)
        self.assertTrue(model.endpoint("201").dnd)
        self.assertTrue(model.synced)
        self.assertTrue(any(isinstance(c, ChannelChanged) and c.hungup for c in changes))
        self.assertIsInstance(changes[-1], Resynced)


class FakeAMI:
    """An AMI link whose list actions answer from a script, one answer per call."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.hooks: list[Any] = []
        self.subscriptions: list[tuple[str | None, Any]] = []
        self.asked: list[str] = []

    def subscribe(self, event: str | None, callback: Any) -> Any:
        self.subscriptions.append((event, callback))
        return lambda: self.subscriptions.remove((event, callback))

    def addConnectedHook(self, hook: Any) -> Any:
        self.hooks.append(hook)
        return lambda: self.hooks.remove(hook)

    def collectEvents(self, action: str, **headers: str) -> Deferred[Any]:
        self.asked.append(action)
        answers = self.answers.get(action) or [[]]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)

    def connect(self) -> None:
        for hook in list(self.hooks):
            hook(object())


class PBXServiceTests(SynchronousTestCase):
    def test_resync_retried_while_asterisk_boots(self) -> None:
        """A list action refused during Asterisk's boot is retried on the clock
        until the model is synced."""
        clock = Clock()
        model = PBXModel(clock=clock)
        ami = FakeAMI()
        ami.answers["DeviceStateList"] = [
            AMIActionError("Invalid/unknown command", AMIMessage()),
            [AMIMessage([("Device", "PJSIP/200"), ("State", "NOT_INUSE")])],
        ]
        service = PBXService(ami, model)
        service.startService()
        ami.connect()
        self.assertFalse(model.synced)
        clock.advance(RESYNC_RETRY_SECONDS)
        self.assertTrue(model.synced)
        self.assertEqual(model.endpoint("200").device, DeviceState.NOT_INUSE)
        self.assertEqual(ami.asked.count("DeviceStateList"), 2)
        service.stopService()

    def test_lost_connection_is_not_retried(self) -> None:
        """A resync cut short by a lost connection waits for the next connection."""
        clock = Clock()
        model = PBXModel(clock=clock)
        ami = FakeAMI()
        ami.answers["CoreShowChannels"] = [AMIConnectionLost("gone")]
        service = PBXService(ami, model)
        service.startService()
        ami.connect()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(model.synced)
        service.stopService()

    def test_empty_list_errors_mean_empty(self) -> None:
        """ "No Contacts found" is Asterisk's way of sending an empty list."""
        model = PBXModel(clock=Clock())
        ami = FakeAMI()
        ami.answers["PJSIPShowContacts"] = [AMIActionError("No Contacts found", AMIMessage())]
        service = PBXService(ami, model)
        service.startService()
        ami.connect()
        self.assertTrue(model.synced)
        service.stopService()
