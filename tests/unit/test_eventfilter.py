"""The AMI event filter asked for after every login."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from appliance.asterisk.ami import AMIActionError, AMIMessage
from appliance.asterisk.eventfilter import UNREAD_EVENTS, excludeEvents


class FakeService:
    def __init__(self) -> None:
        self.hooks: list[Any] = []

    def addConnectedHook(self, hook: Any) -> Any:
        self.hooks.append(hook)
        return lambda: self.hooks.remove(hook)


class FakeProtocol:
    def __init__(self, refuse: bool = False) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    def sendAction(self, action: str, **headers: Any) -> Deferred[Any]:
        self.actions.append((action, headers))
        if self.refuse:
            return fail(AMIActionError("Permission denied"))
        return succeed(AMIMessage([("Response", "Success")]))


class EventFilterTests(SynchronousTestCase):
    def test_every_login_excludes_the_unread_events(self) -> None:
        """Each login asks Asterisk to leave out every unread event (VarSet, Newexten, bridges …), by name."""
        service = FakeService()
        excludeEvents(service)
        for _ in range(2):
            protocol = FakeProtocol()
            self.successResultOf(service.hooks[0](protocol))
            self.assertEqual(
                protocol.actions,
                [
                    (
                        "Filter",
                        {"Operation": "Add", "MatchCriteria": f"action(exclude),name({n})", "Filter": ""},
                    )
                    for n in UNREAD_EVENTS
                ],
            )

    def test_refusal_is_logged_not_raised(self) -> None:
        """Without the permission the link works on with every event, and says so once."""
        service = FakeService()
        excludeEvents(service, ["VarSet"])
        with capturedLogs() as events:
            self.successResultOf(service.hooks[0](FakeProtocol(refuse=True)))
        [logged] = [e for e in events if "filter refused" in e["log_format"]]
        self.assertIn("Permission denied", logged["error"])

    def test_undo_removes_the_hook(self) -> None:
        """The returned function takes the hook away again."""
        service = FakeService()
        excludeEvents(service)()
        self.assertEqual(service.hooks, [])
