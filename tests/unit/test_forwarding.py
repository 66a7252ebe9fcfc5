"""Forward records, the call route with forwarding, and the forwarding feature codes."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.fastagi import AGIArgs
from appliance.callwaiting import CallWaiting
from appliance.dialplan import Call, CallOutcome, CallRouter, FeatureCodes, Unreachable
from appliance.directory import Directory, Group, User
from appliance.forwarding.records import NAMESPACE, Forward, ForwardError, Forwards
from appliance.forwarding.service import Forwarding
from appliance.pbx import PBXModel
from appliance.settings import Settings
from appliance.testing import MemoryStore


class FakeSession:
    """Records what the route asks Asterisk to do; DIALSTATUS per Dial is scripted."""

    def __init__(
        self,
        *positional: str,
        channel: str = "PJSIP/100-00000001",
        caller: str = "100",
        name: str = "Anna",
        statuses: tuple[str, ...] = ("ANSWER",),
        variables: dict[str, str] | None = None,
    ) -> None:
        self.args = AGIArgs(query={}, positional=tuple(positional))
        self.env = {
            "agi_callerid": caller,
            "agi_calleridname": name,
            "agi_channel": channel,
            "agi_uniqueid": "1.1",
            "agi_context": "appliance-call",
            "agi_extension": positional[0] if positional else "",
            "agi_priority": "3",
        }
        self.executed: list[tuple[str, ...]] = []
        self.statuses = list(statuses)
        self.variables = dict(variables or {})

    def exec_(self, application: str, options: str = "") -> Deferred[int]:
        self.executed.append((application, options))
        if application == "Dial":
            self.variables["DIALSTATUS"] = self.statuses.pop(0)
        return succeed(0)

    def getVariable(self, name: str) -> Deferred[str | None]:
        return succeed(self.variables.get(name))

    def getFullVariable(self, expression: str) -> Deferred[str | None]:
        """``${NAME}`` from the variables; the channel stays at priority 3 of ``appliance-call``."""
        where = {"CONTEXT": "appliance-call", "EXTEN": self.args.positional[0], "PRIORITY": "3"}
        known = {**where, **self.variables}
        return succeed(re.sub(r"\$\{([A-Z]+)\}", lambda m: known.get(m.group(1), ""), expression))

    def setVariable(self, name: str, value: str) -> Deferred[None]:
        self.executed.append(("SET", name, value))
        self.variables[name] = value
        return succeed(None)

    def endAfterNextCommand(self) -> None:
        self.executed.append(("LAST",))


def synced_model(**presence: str) -> PBXModel:
    model = PBXModel(clock=Clock())
    devices = [
        {"Device": f"PJSIP/{n}", "State": "INUSE" if s == "busy" else "NOT_INUSE"}
        for n, s in presence.items()
    ]
    contacts = [
        {"ObjectName": f"{n};@x", "Uri": f"sip:{n}@127.0.0.1:1"}
        for n, s in presence.items()
        if s != "logged_out"
    ]
    model.resync(devices, contacts, [], [])
    return model


class World:
    """Store, settings, directory and model as the appliance wires them."""

    def __init__(self, **presence: str) -> None:
        self.store = MemoryStore()
        self.settings = Settings(self.store)
        self.directory = Directory(self.store)
        for ext, language in [("100", "de"), ("200", "de"), ("300", "de"), ("301", "en"), ("302", "de")]:
            # 100 calls as "Anna" in most tests: the name its phone sends is its directory name
            name = "Anna" if ext == "100" else f"User {ext}"
            self.directory.put_user(User(ext, name, language=language))
        self.directory.put_group(Group("sales", "600", ("301", "302")))
        lines = {ext: "idle" for ext in ("100", "200", "300", "301", "302")}
        self.model = synced_model(**{**lines, **presence})
        self.forwards = Forwards(self.store)
        self.forwarding = Forwarding(self.forwards, self.settings, self.directory, self.model, language="de")
        self.router = CallRouter(self.model, forwarding=self.forwarding)
        self.unreachable: list[tuple[Call, Unreachable]] = []
        self.router.extensions.handle_unreachable(
            lambda session, call, why: self.unreachable.append((call, why))
        )
        self.finished: list[CallOutcome] = []
        self.router.extensions.on_finished(self.finished.append)


class OwnNameTests(SynchronousTestCase):
    def test_internal_caller_shown_by_directory_name(self) -> None:
        """One name per person: the directory name replaces what 100's phone sends,
        for the plain call and inside the forward display."""
        world = World()
        world.directory.put_user(User("100", "Anna Berger"))
        plain = FakeSession("300", "internal", name="Lab 100")
        self.route(world, plain)
        self.assertEqual(
            plain.executed[-2:], [("SET", "CALLERID(name)", "Anna Berger"), ("Dial", "PJSIP/300,60,tT")]
        )
        world.forwards.set("200", Forward("unconditional", "300"))
        forwarded = FakeSession("200", "internal", name="Lab 100")
        self.route(world, forwarded)
        self.assertIn(("SET", "CALLERID(name)", "Uml. für User 200: Anna Berger"), forwarded.executed)

    def test_internal_caller_shown_by_its_lines_number(self) -> None:
        """One number per person: a phone of line 100 sending another caller ID (e.g. an
        external DID) is shown to an internal callee as 100; one sending its own number
        costs no extra AGI command; a call out keeps what the phone sends."""
        world = World()
        claiming = FakeSession("300", "internal", caller="+4930123100")
        self.route(world, claiming)
        self.assertEqual(claiming.executed[0], ("SET", "CALLERID(num)", "100"))
        honest = FakeSession("300", "internal")
        self.route(world, honest)
        self.assertEqual(honest.executed, [("Dial", "PJSIP/300,60,tT")])
        out = FakeSession("0301234567", "internal", caller="+4930123100")
        self.route(world, out)
        self.assertNotIn("CALLERID(num)", [command[1] for command in out.executed])

    def test_external_caller_keeps_its_name(self) -> None:
        """A caller on the trunk is shown as it calls itself (no directory entry applies)."""
        world = World()
        session = FakeSession(
            "300", "external", channel="PJSIP/trunk-00000001", caller="+4930123", name="Erika"
        )
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/300,60,tT")])

    def route(self, world: World, session: FakeSession) -> Any:
        return self.successResultOf(world.router(session))


class ForwardRecordTests(SynchronousTestCase):
    def test_set_replaces_same_kind_and_scope(self) -> None:
        """Setting a forward replaces the one of the same kind and scope and keeps others."""
        forwards = Forwards(MemoryStore())
        forwards.set("200", Forward("unconditional", "300"))
        forwards.set("200", Forward("busy", "301"))
        forwards.set("200", Forward("unconditional", "302"))
        forwards.set("200", Forward("unconditional", "303", scope="external"))
        self.assertEqual(
            forwards.of("200"),
            [
                Forward("busy", "301"),
                Forward("unconditional", "302"),
                Forward("unconditional", "303", "external"),
            ],
        )
        self.assertEqual(list(forwards.all()), ["200"])

    def test_clear_by_kind_scope_or_all(self) -> None:
        """Clearing removes the named forwards; clearing everything deletes the record."""
        store = MemoryStore()
        forwards = Forwards(store)
        forwards.set("200", Forward("unconditional", "300"))
        forwards.set("200", Forward("noanswer", "301", seconds=10))
        self.assertEqual(
            forwards.clear("200", "unconditional", "all"), [Forward("noanswer", "301", seconds=10)]
        )
        self.assertEqual(forwards.clear("200"), [])
        self.assertIsNone(store.get(NAMESPACE, "200"))

    def test_invalid_forwards_are_refused_whole(self) -> None:
        """A bad field refuses the forward with a message naming it, and stores nothing."""
        forwards = Forwards(MemoryStore())
        cases = [
            (Forward("sometimes", "300"), "kind"),
            (Forward("busy", "300", scope="friends"), "scope"),
            (Forward("busy", "300&PJSIP/999"), "target"),
            (Forward("busy", "300,1,tT"), "target"),
            (Forward("busy", "200"), "itself"),
            (Forward("noanswer", "300", seconds=1), "seconds"),
            (Forward("noanswer", "300", seconds=10_000), "seconds"),
        ]
        for forward, word in cases:
            with self.assertRaises(ForwardError) as caught:
                forwards.set("200", forward)
            self.assertIn(word, str(caught.exception))
        self.assertEqual(forwards.of("200"), [])
        self.assertRaises(ForwardError, forwards.set, "2x", Forward("busy", "300"))

    def test_broken_stored_records_are_skipped(self) -> None:
        """Records an older version left behind that no longer validate are ignored."""
        store = MemoryStore()
        store.put(
            NAMESPACE,
            "200",
            [{"kind": "busy"}, {"kind": "busy", "target": "x;y"}, {"kind": "busy", "target": "300"}],
        )
        self.assertEqual(Forwards(store).of("200"), [Forward("busy", "300")])


class ForwardingRouteTests(SynchronousTestCase):
    def route(self, world: World, session: FakeSession) -> Any:
        return self.successResultOf(world.router(session))

    def test_unconditional_forward_sets_display_and_dials_target(self) -> None:
        """200 forwards to 300: the caller name becomes the German display, 300 rings."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = FakeSession("200", "internal")
        self.assertEqual(self.route(world, session), "ANSWER")
        self.assertEqual(
            session.executed,
            [
                ("SET", "APPLIANCE_CALLER_NAME", "Anna"),
                ("SET", "CALLERID(name)", "Uml. für User 200: Anna"),
                ("Dial", "PJSIP/300,60,tT"),
            ],
        )
        [outcome] = world.finished
        self.assertEqual((outcome.number, outcome.origin, outcome.status), ("200", "internal", "ANSWER"))

    def test_display_language_is_the_targets(self) -> None:
        """An English-speaking target sees ``Fwd for``."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "301"))
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed[1], ("SET", "CALLERID(name)", "Fwd for User 200: Anna"))

    def test_display_without_caller_name_shows_number(self) -> None:
        """Asterisk's ``unknown`` (no name sent, and a line the directory does not
        name) is not shown; the caller's number is."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = FakeSession("200", "internal", name="unknown")
        world.directory.delete_user("100")
        self.route(world, session)
        self.assertEqual(session.executed[1], ("SET", "CALLERID(name)", "Uml. für User 200: 100"))

    def test_display_off_keeps_caller_name(self) -> None:
        """FWD_DISPLAY off (saved while running): the target sees the caller's own name."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        world.settings.set("FWD_DISPLAY", "off")
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/300,60,tT")])

    def test_display_number_setting_names_the_forwarder_by_number(self) -> None:
        """FWD_DISPLAY_NUMBER on: ``Uml. für 200`` instead of the directory name."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        world.settings.set("FWD_DISPLAY_NUMBER", "on")
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed[1], ("SET", "CALLERID(name)", "Uml. für 200: Anna"))

    def test_display_uses_a_short_form_where_the_name_does_not_fit(self) -> None:
        """A long directory name is shortened to the display width (FWD_DISPLAY_WIDTH)."""
        world = World()
        world.directory.put_user(User("200", "Maximiliane Oberhuber-Schmidt", language="de"))
        world.forwards.set("200", Forward("unconditional", "300"))
        world.settings.set("FWD_DISPLAY_WIDTH", "32")
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed[1], ("SET", "CALLERID(name)", "Uml. für Oberhuber-Schmidt: Anna"))

    def test_noanswer_forward_keeps_caller_name(self) -> None:
        """No answer after N s: the target is dialled without any display change."""
        world = World()
        world.forwards.set("200", Forward("noanswer", "300", seconds=5))
        session = FakeSession("200", "internal", statuses=("NOANSWER", "ANSWER"))
        self.assertEqual(self.route(world, session), "ANSWER")
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,5,tT"), ("Dial", "PJSIP/300,60,tT")])

    def test_busy_reported_by_dial_forwards_with_display(self) -> None:
        """Dial answers BUSY: the busy target rings with the display."""
        world = World()
        world.forwards.set("200", Forward("busy", "300"))
        session = FakeSession("200", "internal", statuses=("BUSY", "ANSWER"))
        self.route(world, session)
        self.assertEqual(
            session.executed,
            [
                ("Dial", "PJSIP/200,60,tT"),
                ("SET", "APPLIANCE_CALLER_NAME", "Anna"),
                ("SET", "CALLERID(name)", "Uml. für User 200: Anna"),
                ("Dial", "PJSIP/300,60,tT"),
            ],
        )

    def test_busy_in_model_forwards_before_ringing(self) -> None:
        """200 busy in the PBX model: 300 rings at once; 200 is never dialled."""
        world = World(**{"200": "busy"})
        world.forwards.set("200", Forward("busy", "300"))
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed[-1], ("Dial", "PJSIP/300,60,tT"))
        self.assertNotIn(("Dial", "PJSIP/200,60,tT"), session.executed)

    def test_unreachable_hook_gets_final_target_and_original_name(self) -> None:
        """The hook hears of the final target, with the chain, after the caller name is restored."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = FakeSession("200", "internal", statuses=("BUSY",))
        self.route(world, session)
        [(call, why)] = world.unreachable
        self.assertEqual((call.number, call.forwarded_from, why), ("300", ("200",), Unreachable.BUSY))
        self.assertEqual(session.executed[-1], ("SET", "CALLERID(name)", "Anna"))

    def test_breakthrough_uses_the_channel_not_the_caller_id(self) -> None:
        """The forward target's line breaks through; another phone claiming its number does not."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        target = FakeSession("200", "internal", channel="PJSIP/300-0000000a", caller="300", name="User 300")
        self.route(world, target)
        self.assertEqual(target.executed, [("Dial", "PJSIP/200,60,tT")])
        liar = FakeSession("200", "internal", channel="PJSIP/100-0000000b", caller="300")
        self.route(world, liar)
        self.assertEqual(liar.executed[-1], ("Dial", "PJSIP/300,60,tT"))

    def test_blind_transfer_is_forwarded(self) -> None:
        """A channel Asterisk marked BLINDTRANSFER gets no forward-target breakthrough."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = FakeSession(
            "200",
            "internal",
            channel="PJSIP/300-0000000c",
            caller="300",
            variables={"BLINDTRANSFER": "PJSIP/300-0000000a"},
        )
        self.route(world, session)
        self.assertEqual(session.executed[-1], ("Dial", "PJSIP/300,60,tT"))

    def test_blind_transfer_back_to_the_transferer_rings_it(self) -> None:
        """300 (call waiting off) blindly transfers its caller to 200, forwarded to 300:
        300's only call is the one being transferred away, so 300 rings, not busy."""
        world = World()
        world.router.waiting = CallWaiting(
            world.store, world.settings, world.model, Clock(), lambda channel, cause: succeed(None)
        )
        world.forwards.set("200", Forward("unconditional", "300"))
        world.model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "INUSE"})
        world.model.handle(
            {"Event": "Newchannel", "Channel": "PJSIP/300-0000000a", "Uniqueid": "9.1", "Linkedid": "9.1"}
        )
        transferred = FakeSession("200", "internal", variables={"BLINDTRANSFER": "PJSIP/300-0000000a"})
        self.route(world, transferred)
        self.assertEqual(transferred.executed[-1], ("Dial", "PJSIP/300,60,tT"))
        dialled = FakeSession("200", "internal")
        self.route(world, dialled)
        self.assertNotIn(("Dial", "PJSIP/300,60,tT"), dialled.executed)
        self.assertEqual(world.unreachable[-1][1], Unreachable.BUSY)

    def test_rerouted_channel_keeps_the_original_caller(self) -> None:
        """A channel that already shows a forward display (blindly transferred) is routed
        as the original caller: the display is not stacked."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        session = FakeSession(
            "200",
            "internal",
            name="Uml. für User 200: Anna",
            variables={"BLINDTRANSFER": "PJSIP/300-0000000a", "APPLIANCE_CALLER_NAME": "Anna"},
        )
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/300,60,tT")])
        session = FakeSession(
            "201", "internal", name="Uml. für User 200: Anna", variables={"APPLIANCE_CALLER_NAME": "Anna"}
        )
        self.route(world, session)
        self.assertEqual(session.executed, [("SET", "CALLERID(name)", "Anna"), ("Dial", "PJSIP/201,60,tT")])

    def test_switchboard_breaks_every_forward(self) -> None:
        """A line in FWD_BREAKTHROUGH_USERS reaches 200 despite the forward."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        world.settings.set("FWD_BREAKTHROUGH_USERS", "100")
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])

    def test_breakthrough_caller_id_as_the_admin_typed_it(self) -> None:
        """An entry "030 123456" in FWD_BREAKTHROUGH_CALLERIDS lets the trunk caller
        +4930123456 through; with PHONE_AREA 30 so does the local spelling "123456"."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        world.settings.set("FWD_BREAKTHROUGH_CALLERIDS", "030 123456\n0171 99")
        trunk = "PJSIP/trunk-00000001"
        session = FakeSession("200", "external", channel=trunk, caller="+4930123456")
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])
        world.settings.set_many({"PHONE_AREA": "30", "FWD_BREAKTHROUGH_CALLERIDS": "123456"})
        session = FakeSession("200", "external", channel=trunk, caller="+4930123456")
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])

    def test_trunk_channel_is_external_whatever_the_context_says(self) -> None:
        """A blindly transferred external caller runs in the phones context but stays external."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300", scope="internal"))
        session = FakeSession("200", "internal", channel="PJSIP/trunk-00000001", caller="+4930123")
        self.route(world, session)
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])

    def test_group_and_external_targets(self) -> None:
        """A group target rings its members; an external target goes out over the trunk."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "600"))
        world.forwards.set("300", Forward("unconditional", "01701234567"))
        group = FakeSession("200", "internal")
        self.route(world, group)
        self.assertEqual(group.executed[-1], ("Dial", "PJSIP/301&PJSIP/302,20,tT"))  # the group's ring time
        out = FakeSession("300", "internal")
        self.route(world, out)
        self.assertEqual(out.executed[-1], ("Dial", "PJSIP/01701234567@trunk,60,tT"))

    def test_loop_ends_at_last_valid_target(self) -> None:
        """200->300->200: 300 rings, once."""
        world = World()
        world.forwards.set("200", Forward("unconditional", "300"))
        world.forwards.set("300", Forward("unconditional", "200"))
        session = FakeSession("200", "internal")
        self.route(world, session)
        self.assertEqual([e for e in session.executed if e[0] == "Dial"], [("Dial", "PJSIP/300,60,tT")])
        self.assertEqual(world.finished[-1].legs[-1][0].reason, "loop")


class ForwardingCodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World()
        self.codes = FeatureCodes()
        self.world.forwarding.register_codes(self.codes)

    def dial(self, code: str, channel: str = "PJSIP/200-00000001") -> FakeSession:
        session = FakeSession(code, channel=channel)
        self.successResultOf(self.codes(session))
        return session

    def test_set_codes(self) -> None:
        """``*21``, ``*68`` and ``*61<t>*<s>`` set the forward of the dialling line and confirm."""
        self.assertEqual(self.dial("*21300").executed, [("Playback", "appliance/de/fwd-unconditional-on")])
        self.dial("*68301")
        self.dial("*61302*15")
        self.assertEqual(
            self.world.forwards.of("200"),
            [
                Forward("unconditional", "300"),
                Forward("busy", "301", "internal"),
                Forward("noanswer", "302", seconds=15),
            ],
        )

    def test_bad_codes_play_invalid_and_store_nothing(self) -> None:
        """A forward to itself, seconds where none belong, or no target: ``invalid``
        (``*21200`` is 200's own BLF key, see `test_own_key_clears_every_unconditional_forward`)."""
        for code in ["*22200", "*67200", "*21300*5", "*61300*1", "*21", "*2130#0"]:
            self.assertEqual(self.dial(code).executed, [("Playback", "appliance/de/fwd-invalid")], code)
        self.assertEqual(self.world.forwards.of("200"), [])

    def test_own_key_clears_every_unconditional_forward(self) -> None:
        """``*21<own number>`` is the line's BLF key, lit by any unconditional forward:
        pressing it clears them all (every scope) and keeps the others."""
        self.dial("*21300")
        self.dial("*22301")
        self.dial("*67302")
        self.assertEqual(self.dial("*21200").executed, [("Playback", "appliance/de/fwd-unconditional-off")])
        self.assertEqual(self.world.forwards.of("200"), [Forward("busy", "302")])

    def test_codes_from_the_trunk_are_refused(self) -> None:
        """Only a phone line can set its forwards."""
        self.assertEqual(
            self.dial("*21300", channel="PJSIP/trunk-00000001").executed,
            [("Playback", "appliance/de/fwd-invalid")],
        )

    def test_clear_codes(self) -> None:
        """``#21`` clears the unconditional forward, ``#20`` every forward."""
        self.dial("*21300")
        self.dial("*67301")
        self.assertEqual(self.dial("#21").executed, [("Playback", "appliance/de/fwd-unconditional-off")])
        self.assertEqual(self.world.forwards.of("200"), [Forward("busy", "301")])
        self.dial("#20")
        self.assertEqual(self.world.forwards.of("200"), [])
