"""The call and feature routes, with a fake AGI session and a fake PBX model."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.fastagi import AGIArgs
from appliance.dialplan import WHERE, BadCallRequest, Call, CallRouter, FeatureCodes, Unreachable
from appliance.pbx import PBXModel


class FakeSession:
    """Records what the route asks Asterisk to do; DIALSTATUS is scripted."""

    def __init__(self, *positional: str, dial_status: str = "ANSWER", dial_result: int = 0) -> None:
        self.args = AGIArgs(query={}, positional=tuple(positional))
        self.env = {
            "agi_callerid": "100",
            "agi_calleridname": "Anna",
            "agi_channel": "PJSIP/100-00000001",
            "agi_uniqueid": "1.1",
            "agi_context": "appliance-call",
            "agi_extension": positional[0] if positional else "",
            "agi_priority": "3",
        }
        self.executed: list[tuple[str, ...]] = []
        self.dial_status = dial_status
        self.dial_result = dial_result
        self.moved_to = ""
        """``context,exten,priority`` a blind transfer or redirect sent the channel to."""
        self.asked: list[str] = []
        """Variables asked for, and LAST where the session was told its next command ends it."""

    def exec_(self, application: str, options: str = "") -> Deferred[int]:
        self.executed.append((application, options))
        return succeed(self.dial_result)

    def getVariable(self, name: str) -> Deferred[str | None]:
        self.asked.append(name)
        return succeed(self.dial_status if name == "DIALSTATUS" else None)

    def getFullVariable(self, expression: str) -> Deferred[str | None]:
        self.asked.append(expression)
        env = self.env
        where = self.moved_to or f"{env['agi_context']},{env['agi_extension']},{env['agi_priority']}"
        values = {"${DIALSTATUS}": self.dial_status, WHERE: where}
        return succeed(",".join(values[part] for part in _parts(expression)))

    def setVariable(self, name: str, value: str) -> Deferred[None]:
        self.executed.append(("SET", name, value))
        return succeed(None)

    def endAfterNextCommand(self) -> None:
        self.asked.append("LAST")


def _parts(expression: str) -> list[str]:
    """The fake evaluates only the two expressions the route asks for."""
    if not expression.startswith("${DIALSTATUS},"):
        raise AssertionError(f"unexpected expression {expression!r}")
    return ["${DIALSTATUS}", expression.removeprefix("${DIALSTATUS},")]


def synced_model(**presence: str) -> PBXModel:
    model = PBXModel(clock=Clock())
    events: list[dict[str, str]] = []
    contacts = []
    for name, state in presence.items():
        events.append({"Device": f"PJSIP/{name}", "State": "NOT_INUSE"})
        if state != "logged_out":
            contacts.append({"ObjectName": f"{name};@x", "Uri": f"sip:{name}@127.0.0.1:1"})
    dnd = [{"Presentity": f"CustomPresence:{n}", "Status": "dnd"} for n, s in presence.items() if s == "dnd"]
    model.resync(events, contacts, [], dnd)
    return model


def finished(router: CallRouter) -> list[tuple[str, str, str | None]]:
    """(number, origin, status) of every call ``router`` finishes from now on."""
    seen: list[tuple[str, str, str | None]] = []
    router.extensions.on_finished(
        lambda outcome: seen.append((outcome.number, outcome.origin, outcome.status))
    )
    return seen


def offers_into(into: list[Unreachable]) -> Any:
    """An unreachable handler noting each reason."""
    return lambda _session, _call, why: into.append(why)


def calls_into(into: list[tuple[Call, Unreachable]]) -> Any:
    """An unreachable handler noting each (call, reason)."""
    return lambda _session, call, why: into.append((call, why))


class CallRouterTests(SynchronousTestCase):
    def route(self, router: CallRouter, session: FakeSession) -> Any:
        return self.successResultOf(router(session))

    def test_dials_the_endpoint(self) -> None:
        """A reachable target is dialled with transfer allowed both ways."""
        session = FakeSession("200", "internal")
        router = CallRouter(synced_model(**{"200": "idle"}))
        calls = finished(router)
        self.assertEqual(self.route(router, session), "ANSWER")
        self.assertEqual(session.executed, [("Dial", "PJSIP/200,60,tT")])
        self.assertEqual(calls, [("200", "internal", "ANSWER")])

    def test_call_ended_by_dial_asks_status_as_last_command(self) -> None:
        """Dial returning -1 (caller left or the conversation ended): DIALSTATUS is
        the session's last command, so Asterisk can free the line without
        waiting for us; no offer and no further leg follow, whatever the status."""
        for status in ("ANSWER", "CANCEL", "CHANUNAVAIL"):
            offers: list[Unreachable] = []
            router = CallRouter(synced_model(**{"200": "idle"}))
            router.extensions.handle_unreachable(offers_into(offers))
            calls = finished(router)
            session = FakeSession("200", "internal", dial_status=status, dial_result=-1)
            self.assertEqual(self.route(router, session), status)
            self.assertEqual(session.asked, ["LAST", "${DIALSTATUS}," + WHERE], status)
            self.assertEqual(offers, [], status)
            self.assertEqual(calls, [("200", "internal", status)])

    def caller_in_call(self) -> PBXModel:
        """200 idle; the caller 100 in this call (its channel is the session's)."""
        model = synced_model(**{"100": "idle", "200": "idle"})
        model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/100", "State": "INUSE"})
        model.handle({"Event": "Newchannel", "Channel": "PJSIP/100-00000001", "Uniqueid": "1.1"})
        return model

    def test_call_ended_by_dial_lets_the_line_go(self) -> None:
        """Dial ended the call (-1): Asterisk hangs the channel up once the session
        ends, so the model hears it ends (a callback to the caller may start) as the
        Dial's result arrives, before the last command and Asterisk's teardown."""
        model = self.caller_in_call()
        session = FakeSession("200", "internal", dial_status="ANSWER", dial_result=-1)
        self.route(CallRouter(model), session)
        self.assertEqual(model.ending, {"1.1"})
        self.assertTrue(model.endpoint("100").call_over)

    def test_redirected_channel_is_taken_back(self) -> None:
        """A redirect moved the channel on as its Dial ended (it is somewhere else in
        the dialplan now): the line let go at the Dial's result is in its call again."""
        for moved_to in ("phones,300,1", "appliance-call,300,1", "appliance-call,301,3"):
            model = self.caller_in_call()
            session = FakeSession("200", "internal", dial_status="ANSWER", dial_result=-1)
            session.moved_to = moved_to
            self.assertEqual(self.route(CallRouter(model), session), "ANSWER")
            self.assertEqual(model.ending, set(), moved_to)
            self.assertFalse(model.endpoint("100").call_over, moved_to)

    def test_call_going_on_after_dial_keeps_the_session(self) -> None:
        """Dial returning 0 (busy, no answer): the session stays open for what follows."""
        session = FakeSession("200", "internal", dial_status="BUSY")
        self.route(CallRouter(synced_model(**{"200": "idle"})), session)
        self.assertEqual(session.asked, ["DIALSTATUS"])

    def test_unreachable_handler_gets_reason(self) -> None:
        """Logged out and DND are found before dialling, busy and no answer after."""
        cases = [
            ("logged_out", "ANSWER", Unreachable.LOGGED_OUT, []),
            ("dnd", "ANSWER", Unreachable.DND, []),
            ("idle", "BUSY", Unreachable.BUSY, [("Dial", "PJSIP/200,60,tT")]),
            ("idle", "NOANSWER", Unreachable.NO_ANSWER, [("Dial", "PJSIP/200,60,tT")]),
            ("idle", "CHANUNAVAIL", Unreachable.LOGGED_OUT, [("Dial", "PJSIP/200,60,tT")]),
        ]
        for presence, status, reason, executed in cases:
            seen: list[tuple[Call, Unreachable]] = []
            router = CallRouter(synced_model(**{"200": presence}))
            router.extensions.handle_unreachable(calls_into(seen))
            session = FakeSession("200", "internal", dial_status=status)
            self.route(router, session)
            self.assertEqual([why for _, why in seen], [reason], presence)
            self.assertEqual(session.executed, executed, presence)
            self.assertEqual((seen[0][0].caller_num, seen[0][0].caller_name), ("100", "Anna"))

    def test_refuses_non_numbers(self) -> None:
        """Anything but a number never reaches Dial()."""
        for bad in ["200&PJSIP/300", "200,1,tT", "", "abc", "1" * 40]:
            session = FakeSession(bad, "internal")
            self.failureResultOf(CallRouter()(session), BadCallRequest)
            self.assertEqual(session.executed, [])
        self.failureResultOf(CallRouter()(FakeSession("200", "sideways")), BadCallRequest)


class FeatureCodeTests(SynchronousTestCase):
    def test_longest_prefix_wins(self) -> None:
        """``*21`` and ``*210`` both registered: ``*210300`` goes to ``*210``."""
        codes = FeatureCodes()
        calls: list[tuple[str, str]] = []
        codes.register("*21", lambda s, prefix, rest: calls.append((prefix, rest)))
        codes.register("*210", lambda s, prefix, rest: calls.append((prefix, rest)))
        self.successResultOf(codes(FakeSession("*210300")))
        self.successResultOf(codes(FakeSession("*21300")))
        self.assertEqual(calls, [("*210", "300"), ("*21", "300")])

    def test_unknown_code_plays_invalid(self) -> None:
        """An unknown or malformed code tells the caller so."""
        for dialled in ["*99", "*2;1", ""]:
            session = FakeSession(dialled)
            self.successResultOf(FeatureCodes()(session))
            self.assertEqual(session.executed, [("Playback", "invalid")])

    def test_register_refuses_clash(self) -> None:
        """A code can be registered once, and only in feature-code form."""
        codes = FeatureCodes()
        codes.register("#21", lambda *a: None)
        self.assertRaises(ValueError, codes.register, "#21", lambda *a: None)
        self.assertRaises(ValueError, codes.register, "21", lambda *a: None)
