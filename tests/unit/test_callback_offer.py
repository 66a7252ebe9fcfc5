"""The callback offer, the feature codes and the service wiring, with fake AGI
sessions, a fake AMI link, the in-memory store and a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance import settings as keys
from appliance.asterisk.ami import AMIMessage
from appliance.asterisk.fastagi import AGIArgs
from appliance.callback.engine import Outcome, Request, State
from appliance.callback.offer import LAST_UNANSWERED
from appliance.callback.service import NAMESPACE, CallbackService
from appliance.dialplan import Call, Unreachable
from appliance.directory import Directory, User
from appliance.pbx import PBXModel
from appliance.settings import Settings
from appliance.testing import MemoryStore


class FakeSession:
    """Records every AGI command; ``keys`` are the digits the caller presses."""

    def __init__(self, channel: str = "PJSIP/100-00000001", keys: str = "", late: str = "") -> None:
        self.args = AGIArgs(query={}, positional=())
        self.env = {"agi_channel": channel, "agi_callerid": "100"}
        self.commands: list[tuple[str, ...]] = []
        self.keys = list(keys)
        """Pressed during an announcement."""
        self.late = list(late)
        """Pressed after it, while the offer waits."""
        self.variables: dict[str, str] = {}
        """What Asterisk answers to GET VARIABLE."""

    def answer(self) -> Deferred[None]:
        self.commands.append(("answer",))
        return succeed(None)

    def exec_(self, application: str, options: str = "") -> Deferred[int]:
        self.commands.append(("exec", application, options))
        return succeed(0)

    def streamFile(
        self, name: str, escapeDigits: str = "", offset: int | None = None
    ) -> Deferred[tuple[str | None, int]]:
        self.commands.append(("stream", name))
        digit = self.keys.pop(0) if escapeDigits and self.keys else None
        return succeed((digit, 0))

    def waitForDigit(self, timeoutMs: int) -> Deferred[str | None]:
        self.commands.append(("wait", str(timeoutMs)))
        return succeed(self.late.pop(0) if self.late else None)

    def getVariable(self, name: str) -> Deferred[str | None]:
        self.commands.append(("get", name))
        return succeed(self.variables.get(name))

    def setVariable(self, name: str, value: str) -> Deferred[None]:
        self.commands.append(("set", name, value))
        return succeed(None)


class FakeAMI:
    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.subscribers: dict[str | None, list[Any]] = {}

    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]:
        self.actions.append((action, headers))
        return succeed(AMIMessage([("Response", "Success"), ("ActionID", f"a{len(self.actions)}")]))

    def subscribe(self, event: str | None, callback: Any) -> Any:
        self.subscribers.setdefault(event, []).append(callback)
        return lambda: self.subscribers[event].remove(callback)

    def event(self, name: str, **headers: str) -> None:
        message = AMIMessage([("Event", name), *headers.items()])
        for callback in list(self.subscribers.get(name, [])):
            callback(message)


def model(**presence: str) -> PBXModel:
    pbx = PBXModel(clock=Clock())
    devices = [
        {"Device": f"PJSIP/{n}", "State": "INUSE" if s == "busy" else "NOT_INUSE"}
        for n, s in presence.items()
    ]
    contacts = [
        {"ObjectName": f"{n};@x", "Uri": f"sip:{n}@127.0.0.1:1"} for n, s in presence.items() if s != "out"
    ]
    dnd = [{"Presentity": f"CustomPresence:{n}", "Status": "dnd"} for n, s in presence.items() if s == "dnd"]
    pbx.resync(devices, contacts, [], dnd)
    return pbx


class Harness:
    def __init__(self, **presence: str) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.settings = Settings(self.store)
        self.pbx = model(**presence)
        self.ami = FakeAMI()
        self.directory = Directory(self.store)
        self.service = CallbackService(
            self.store, self.settings, self.pbx, self.ami, self.directory, self.clock, language="de"
        )
        self.offers = self.service.offers

    def call(self, number: str, origin: str = "internal", caller: str = "100") -> Call:
        return Call(number, origin, caller, "", f"PJSIP/{caller}-00000001", "1.1")


class OfferTests(SynchronousTestCase):
    def test_busy_target_offer_taken(self) -> None:
        """A caller who presses the key after the German offer gets a request and the confirmation."""
        h = Harness(**{"100": "busy", "200": "busy"})
        session = FakeSession(keys="5")
        result = self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.BUSY))
        self.assertEqual(result, Outcome.ACCEPTED)
        self.assertEqual(
            session.commands,
            [("answer",), ("stream", "appliance/de/cc-offer-5"), ("stream", "appliance/de/cc-confirm")],
        )
        self.assertEqual([r.id for r in h.service.pending()], ["100:200"])
        self.assertEqual(h.store.get(NAMESPACE, "100:200")["requester"], "100")

    def test_key_pressed_after_announcement(self) -> None:
        """A key pressed after the announcement ended is still read (5 s wait)."""
        h = Harness(**{"100": "busy", "200": "busy"})
        session = FakeSession(late="5")
        self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.DND))
        self.assertIn(("wait", "5000"), session.commands)
        self.assertEqual([r.id for r in h.service.pending()], ["100:200"])

    def test_other_key_makes_no_request(self) -> None:
        """Any key but the configured one makes no request and plays no confirmation."""
        h = Harness(**{"100": "busy", "200": "busy"})
        session = FakeSession(keys="1")
        self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.BUSY))
        self.assertEqual(h.service.pending(), [])
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-offer-5"))

    def test_configured_key_and_english_user(self) -> None:
        """The prompt names the configured key and follows the caller's language."""
        h = Harness(**{"100": "busy", "200": "busy"})
        h.settings.set(keys.CC_DTMF_KEY, "#")
        h.directory.put_user(User("100", "Anna", language="en"))
        session = FakeSession(keys="#")
        self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.LOGGED_OUT))
        self.assertEqual(
            session.commands[1:],
            [("stream", "appliance/en/cc-offer-hash"), ("stream", "appliance/en/cc-confirm")],
        )

    def test_busy_tone_instead_of_offer(self) -> None:
        """With CC_BUSY_TONE the caller hears the busy tone instead of the announcement,
        and the key pressed during the tone still requests the callback."""
        h = Harness(**{"100": "busy", "200": "busy"})
        h.settings.set(keys.CC_BUSY_TONE, "on")
        session = FakeSession(late="5")
        result = self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.BUSY))
        self.assertEqual(result, Outcome.ACCEPTED)
        self.assertEqual(
            session.commands,
            [
                ("answer",),
                ("exec", "Playtones", "busy"),
                ("wait", "15000"),
                ("exec", "StopPlaytones", ""),
                ("stream", "appliance/de/cc-confirm"),
            ],
        )
        self.assertEqual([r.id for r in h.service.pending()], ["100:200"])

    def test_busy_tone_without_key_books_nothing(self) -> None:
        """With CC_BUSY_TONE a caller who presses nothing hears only the tone."""
        h = Harness(**{"100": "busy", "200": "busy"})
        h.settings.set(keys.CC_BUSY_TONE, "on")
        session = FakeSession()
        self.assertIsNone(
            self.successResultOf(h.offers.unreachable(session, h.call("200"), Unreachable.BUSY))
        )
        self.assertNotIn(("stream", "appliance/de/cc-confirm"), session.commands)
        self.assertEqual(h.service.pending(), [])

    def test_offer_off_plain_busy_and_congestion(self) -> None:
        """With CC_OFFER off a busy line gives busy, a logged-out line congestion."""
        h = Harness(**{"100": "busy", "200": "busy"})
        h.settings.set(keys.CC_OFFER, "off")
        busy, out = FakeSession(keys="5"), FakeSession(keys="5")
        self.successResultOf(h.offers.unreachable(busy, h.call("200"), Unreachable.BUSY))
        self.successResultOf(h.offers.unreachable(out, h.call("200"), Unreachable.LOGGED_OUT))
        self.assertEqual(busy.commands + out.commands, [("exec", "Busy", "5"), ("exec", "Congestion", "5")])
        self.assertEqual(h.service.pending(), [])

    def test_external_needs_cc_external(self) -> None:
        """An external caller gets the offer only with CC_EXTERNAL, and the request
        remembers the number for a recall over the trunk."""
        h = Harness(**{"200": "busy"})
        call = h.call("200", origin="external", caller="+4930123456")
        first = FakeSession("PJSIP/trunk-00000001", keys="5")
        self.successResultOf(h.offers.unreachable(first, call, Unreachable.BUSY))
        self.assertEqual(first.commands, [("exec", "Busy", "5")])
        h.settings.set(keys.CC_EXTERNAL, "on")
        second = FakeSession("PJSIP/trunk-00000001", keys="5")
        self.successResultOf(h.offers.unreachable(second, call, Unreachable.BUSY))
        [request] = h.service.pending()
        self.assertEqual((request.requester, request.origin), ("+4930123456", "external"))

    def test_forged_external_caller_id_gets_no_offer(self) -> None:
        """An external caller ID that is not a plain number never becomes a requester."""
        h = Harness(**{"200": "busy"})
        h.settings.set(keys.CC_EXTERNAL, "on")
        call = h.call("200", origin="external", caller="123&PJSIP/999")
        session = FakeSession("PJSIP/trunk-00000001", keys="5")
        self.successResultOf(h.offers.unreachable(session, call, Unreachable.BUSY))
        self.assertEqual(session.commands, [("exec", "Busy", "5")])
        self.assertEqual(h.service.pending(), [])

    def test_requester_is_the_channel_not_the_caller_id(self) -> None:
        """The requester is the endpoint of the caller's channel, whatever caller ID it claims."""
        h = Harness(**{"101": "busy", "200": "busy"})
        session = FakeSession("PJSIP/101-00000007", keys="5")
        self.successResultOf(h.offers.unreachable(session, h.call("200", caller="100"), Unreachable.BUSY))
        self.assertEqual([r.id for r in h.service.pending()], ["101:200"])


class FeatureCodeTests(SynchronousTestCase):
    def test_unanswered_remembered_and_star39_requests_it(self) -> None:
        """An unanswered call (told by the router) is remembered; with CCNR on *39
        requests a callback to it, as CCNR while the target is idle."""
        h = Harness(**{"100": "busy", "200": "idle"})
        h.settings.set(keys.CC_CCNR_ENABLED, "on")
        h.offers.unanswered(h.call("200"))
        self.assertEqual(h.store.get(LAST_UNANSWERED, "100"), "200")
        session = FakeSession()
        self.assertEqual(self.successResultOf(h.offers.request_code(session, "*39", "")), Outcome.ACCEPTED)
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-confirm"))
        [request] = h.service.pending()
        self.assertEqual((request.target, request.kind.value, request.armed), ("200", "ccnr", False))

    def test_star39_for_a_target_in_a_call_waits_for_that_call(self) -> None:
        """*39 for a last unanswered number that is in a call now asks for a recall
        when that call ends (kind busy, armed)."""
        h = Harness(**{"100": "idle", "200": "busy"})
        h.settings.set(keys.CC_CCNR_ENABLED, "on")
        h.offers.unanswered(h.call("200"))
        self.successResultOf(h.offers.request_code(FakeSession(), "*39", ""))
        [request] = h.service.pending()
        self.assertEqual((request.target, request.kind.value, request.armed), ("200", "busy", True))

    def test_unanswered_from_outside_or_to_oneself_not_remembered(self) -> None:
        """Only an internal caller's call to another internal line is remembered."""
        h = Harness(**{"100": "idle", "200": "idle"})
        h.offers.unanswered(Call("200", "external", "+4930123", "", "PJSIP/trunk-00000001", "1.1"))
        h.offers.unanswered(h.call("100"))
        self.assertEqual(h.store.items(LAST_UNANSWERED), [])

    def test_star39_refused_without_ccnr(self) -> None:
        """Without CC_CCNR_ENABLED *39 is refused, even with a remembered number."""
        h = Harness(**{"100": "busy", "200": "idle"})
        h.offers.unanswered(h.call("200"))
        session = FakeSession()
        self.assertEqual(self.successResultOf(h.offers.request_code(session, "*39", "")), Outcome.INVALID)
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-refused"))

    def test_star39_with_target(self) -> None:
        """*39<target> requests a callback to that target."""
        h = Harness(**{"100": "busy", "201": "busy"})
        h.settings.set(keys.CC_CCNR_ENABLED, "on")
        self.successResultOf(h.offers.request_code(FakeSession(), "*39", "201"))
        self.assertEqual([r.id for r in h.service.pending()], ["100:201"])

    def test_hash39_cancels_all_or_one(self) -> None:
        """#39201 cancels the request for 201; #39 cancels the rest."""
        h = Harness(**{"100": "busy", "200": "busy", "201": "busy"})
        h.service.engine.request("100", "200")
        h.service.engine.request("100", "201")
        self.assertEqual(self.successResultOf(h.offers.cancel_code(FakeSession(), "#39", "201")), 1)
        self.assertEqual([r.id for r in h.service.pending()], ["100:200"])
        session = FakeSession()
        self.assertEqual(self.successResultOf(h.offers.cancel_code(session, "#39", "")), 1)
        self.assertEqual(h.service.pending(), [])
        self.assertEqual(session.commands[-1], ("stream", "appliance/de/cc-cancelled"))

    def test_dnd_codes_set_custom_presence(self) -> None:
        """*78 / #78 set the calling line's CustomPresence to dnd / available."""
        h = Harness(**{"100": "busy"})
        on, off = FakeSession(), FakeSession()
        self.successResultOf(h.offers.dnd_code(on, "*78", ""))
        self.successResultOf(h.offers.dnd_code(off, "#78", ""))
        self.assertIn(("set", "PRESENCE_STATE(CustomPresence:100)", "dnd,,"), on.commands)
        self.assertIn(("set", "PRESENCE_STATE(CustomPresence:100)", "available,,"), off.commands)

    def test_attach_registers_codes_and_handler(self) -> None:
        """attach() plugs the offer into the call route's extension points and claims
        *39, #39, *78, #78."""
        from appliance.dialplan import CallExtensions, FeatureCodes

        h = Harness(**{"100": "busy", "200": "busy"})
        extensions, codes = CallExtensions(), FeatureCodes()
        h.service.attach(extensions, codes)
        session = FakeSession(keys="5")
        outcome = self.successResultOf(extensions.unreachable(session, h.call("200"), Unreachable.BUSY))
        self.assertEqual(outcome, Outcome.ACCEPTED)
        extensions.unanswered(h.call("200"))
        self.assertEqual(h.store.get(LAST_UNANSWERED, "100"), "200")
        self.assertRaises(ValueError, extensions.handle_unreachable, h.offers.unreachable)
        self.assertEqual(sorted(codes.handlers), ["#39", "#78", "*39", "*78"])


class ServiceTests(SynchronousTestCase):
    def started(self, h: Harness) -> None:
        h.service.startService()
        self.addCleanup(h.service.stopService)

    def test_recall_originate_and_outcomes(self) -> None:
        """The target's hangup originates the recall into the callback context with
        the requester's caller ID; answered recall and target remove the request."""
        h = Harness(**{"100": "idle", "200": "busy"})
        self.started(h)
        h.service.engine.request("100", "200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        [(action, headers)] = h.ami.actions
        self.assertEqual(action, "Originate")
        self.assertEqual(
            headers,
            {
                "Channel": "PJSIP/100",
                "Context": "appliance-callback",
                "Exten": "200",
                "Priority": 1,
                "Timeout": 20000,
                "CallerID": '"200" <200>',
                "Async": "true",
                "Variable": [
                    "APPLIANCE_CALLBACK=100:200",
                    "APPLIANCE_CC_ATTEMPT=1",
                    "APPLIANCE_CC_REQUESTER=100",
                    "APPLIANCE_CC_RING=60",
                    "APPLIANCE_CC_REQUESTER_NAME=100",
                    "APPLIANCE_CC_TARGET=PJSIP/200",
                ],
            },
        )
        h.ami.event("OriginateResponse", ActionID="a1", Response="Success", Reason="4")
        self.assertEqual(h.service.engine.get("100:200").state, State.CONNECTING)
        h.ami.event(
            "UserEvent", UserEvent="ApplianceCallback", Id="100:200", Attempt="1", DialStatus="ANSWER"
        )
        self.assertEqual(h.service.pending(), [])
        self.assertIsNone(h.store.get(NAMESPACE, "100:200"))

    def test_no_store_read_between_freeing_event_and_originate(self) -> None:
        """The settings and notification modes a recall needs are kept from the
        store's change notices: the event that frees the target reaches the
        Originate without reading the store (issue 19)."""
        h = Harness(**{"100": "idle", "200": "busy"})
        self.started(h)
        h.service.engine.request("100", "200")
        reads: list[tuple[str, str]] = []
        read = h.store.get

        def counted(namespace: str, key: str, default: Any = None) -> Any:
            reads.append((namespace, key))
            return read(namespace, key, default)

        h.store.get = counted  # type: ignore[method-assign]
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertEqual([action for action, _ in h.ami.actions], ["Originate"])
        self.assertEqual(reads, [])

    def test_settings_and_mode_changed_while_running_apply_to_the_next_recall(self) -> None:
        """A ring time or notification mode changed on the web page while the service
        runs is what the next recall uses."""
        h = Harness(**{"100": "idle", "101": "idle", "200": "busy", "300": "busy"})
        self.started(h)
        self.assertEqual(h.service.notify_mode("101"), "ring")
        h.settings.set(keys.CC_TARGET_RING_TIME, 25)
        h.settings.set(keys.CC_WAIT_TIME, 30)
        h.service.set_notify_mode("101", "mail")
        self.assertEqual(h.service.notify_mode("101"), "mail")
        h.service.engine.request("100", "200")
        h.service.engine.request("101", "300")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        [(_, headers)] = h.ami.actions
        self.assertEqual(headers["Timeout"], 30000)
        self.assertIn("APPLIANCE_CC_RING=25", headers["Variable"])
        h.service.set_notify_mode("101", "ring")
        self.assertEqual(h.service.notify_mode("101"), "ring")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "NOT_INUSE"})
        self.assertEqual([headers["Channel"] for _, headers in h.ami.actions], ["PJSIP/100", "PJSIP/101"])

    def test_recall_record_written_after_asterisk_queued_it(self) -> None:
        """The Originate goes out before the recall's store write (an fdatasync would
        hold it in our send buffer); the record follows once Asterisk answered, and a
        cancel in between wins."""
        h = Harness(**{"100": "idle", "101": "idle", "200": "busy", "300": "busy"})
        replies: list[Deferred[Any]] = []

        def held(action: str, **headers: Any) -> Deferred[Any]:
            h.ami.actions.append((action, headers))
            replies.append(Deferred())
            return replies[-1]

        h.ami.sendAction = held  # type: ignore[method-assign]
        self.started(h)
        h.service.engine.request("100", "200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertEqual([action for action, _ in h.ami.actions], ["Originate"])
        self.assertEqual(h.store.get(NAMESPACE, "100:200")["state"], State.WAITING.value)
        replies[0].callback(AMIMessage([("Response", "Success"), ("ActionID", "a1")]))
        stored = h.store.get(NAMESPACE, "100:200")
        self.assertEqual((stored["state"], stored["attempts"]), (State.RINGING.value, 1))

        h.service.engine.request("101", "300")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/300", "State": "NOT_INUSE"})
        h.service.cancel("101:300")
        self.assertIsNotNone(h.store.get(NAMESPACE, "101:300"))
        replies[1].callback(AMIMessage([("Response", "Success"), ("ActionID", "a2")]))
        self.assertIsNone(h.store.get(NAMESPACE, "101:300"))

    def test_busy_requester_retried(self) -> None:
        """A requester who is busy when rung (Reason 5) is rung again after the retry delay."""
        h = Harness(**{"100": "idle", "200": "busy"})
        self.started(h)
        h.service.engine.request("100", "200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        h.ami.event("OriginateResponse", ActionID="a1", Response="Failure", Reason="5")
        self.assertEqual(len(h.ami.actions), 1)
        h.clock.advance(30)
        self.assertEqual(len(h.ami.actions), 2)
        self.assertIn("APPLIANCE_CC_ATTEMPT=2", h.ami.actions[1][1]["Variable"])

    def test_requests_reloaded_from_store(self) -> None:
        """Requests in the store are loaded on start and recalled when the target is free."""
        h = Harness(**{"100": "idle", "200": "busy"})
        h.store.put(NAMESPACE, "100:200", Request("100", "200", 0.0).to_json())
        h.store.put(NAMESPACE, "junk", {"requester": "1&2"})
        self.started(h)
        self.assertEqual([r.id for r in h.service.pending()], ["100:200"])
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertEqual(h.ami.actions[0][1]["Channel"], "PJSIP/100")

    def test_cancel_api(self) -> None:
        """The web page's cancel removes the request from engine and store."""
        h = Harness(**{"100": "idle", "200": "busy"})
        self.started(h)
        h.service.engine.request("100", "200")
        self.assertTrue(h.service.cancel("100:200"))
        self.assertFalse(h.service.cancel("100:200"))
        self.assertEqual(h.store.items(NAMESPACE), [])

    def test_timeout_setting_applies_on_save(self) -> None:
        """Lowering CC_TIMEOUT expires requests older than the new value at once."""
        h = Harness(**{"100": "idle", "200": "busy"})
        self.started(h)
        h.service.engine.request("100", "200")
        h.clock.advance(120)
        h.settings.set(keys.CC_TIMEOUT, "1")
        self.assertEqual(h.service.pending(), [])

    def test_originate_failure_retried_later(self) -> None:
        """An Originate that AMI refuses (link down) is lost, not a failed attempt: it
        is retried later with the same attempt number, never re-entering the engine at once."""
        from twisted.internet.defer import fail

        from appliance.asterisk.ami import AMINotConnected

        h = Harness(**{"100": "idle", "200": "busy"})

        def link_down(action: str, **headers: Any) -> Deferred[Any]:
            h.ami.actions.append((action, headers))
            return fail(AMINotConnected("down"))

        h.ami.sendAction = link_down  # type: ignore[method-assign]
        self.started(h)
        h.service.engine.request("100", "200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        self.assertEqual(h.service.engine.get("100:200").state, State.RINGING)
        h.clock.advance(0)
        self.assertEqual(h.service.engine.get("100:200").state, State.WAITING)
        h.clock.advance(30)
        self.assertEqual(len(h.ami.actions), 2)
        self.assertIn("APPLIANCE_CC_ATTEMPT=1", h.ami.actions[1][1]["Variable"])

    def test_originate_refused_while_asterisk_stops_waits_for_resync(self) -> None:
        """Asterisk refusing the Originate because it shuts down loses the recall; the
        resync after the restart starts it again at once, as the same attempt."""
        from twisted.internet.defer import fail

        from appliance.asterisk.ami import AMIActionError

        h = Harness(**{"100": "idle", "200": "busy"})
        answer = h.ami.sendAction

        def shutting_down_first(action: str, **headers: Any) -> Deferred[Any]:
            if h.ami.actions:
                return answer(action, **headers)
            h.ami.actions.append((action, headers))
            return fail(AMIActionError("Asterisk is shutting down"))

        h.ami.sendAction = shutting_down_first  # type: ignore[method-assign]
        self.started(h)
        h.service.engine.request("100", "200")
        h.pbx.handle({"Event": "DeviceStateChange", "Device": "PJSIP/200", "State": "NOT_INUSE"})
        h.clock.advance(0)
        self.assertTrue(h.service.engine.get("100:200").lost)
        self.assertEqual(len(h.ami.actions), 1)
        contacts = [{"ObjectName": n, "Uri": f"sip:{n}@127.0.0.1:1"} for n in ("100", "200")]
        h.pbx.resync([], contacts, [])
        self.assertEqual(len(h.ami.actions), 2)
        self.assertIn("APPLIANCE_CC_ATTEMPT=1", h.ami.actions[1][1]["Variable"])
