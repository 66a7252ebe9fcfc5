"""The callback engine as a pure state machine: inputs, the Clock, and the exact outputs."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appliance.callback.engine import (
    LOST_RETRY_SECONDS,
    CallbackEngine,
    EngineSettings,
    Kind,
    Outcome,
    Recall,
    RecallResult,
    Request,
    State,
)
from appliance.pbx import Presence
from appliance.testing import RecordingOutputs

I, B, L, D = Presence.IDLE, Presence.BUSY, Presence.LOGGED_OUT, Presence.DND  # noqa: E741


class Harness:
    """An engine over a scripted presence table."""

    def __init__(self, settings: EngineSettings | None = None, **engine_args: object) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.outputs = RecordingOutputs()
        self.where: dict[str, Presence] = {}
        self.settings = settings or EngineSettings(timeout_seconds=600, wait_seconds=20)
        self.engine = CallbackEngine(
            self.clock,
            self.outputs,
            lambda name: self.where.get(name, I),
            lambda: self.settings,
            **engine_args,  # type: ignore[arg-type]
        )

    def set(self, name: str, presence: Presence) -> None:
        old = self.where.get(name, I)
        self.where[name] = presence
        self.engine.presence_changed(name, old, presence)

    def originated(self) -> list[tuple[str, int]]:
        return [(r.request_id, r.attempt) for kind, r in self.outputs.log if kind == "originate"]

    def removed(self) -> list[tuple[str, str]]:
        return [value for kind, value in self.outputs.log if kind == "removed"]

    def clear(self) -> None:
        self.outputs.log.clear()


class RequestTests(SynchronousTestCase):
    def test_request_is_saved_and_waits_while_target_busy(self) -> None:
        """A request for a busy target is saved and nothing is originated yet."""
        h = Harness()
        h.where.update({"200": B, "100": B})
        self.assertEqual(h.engine.request("100", "200"), Outcome.ACCEPTED)
        self.assertEqual(
            h.outputs.log,
            [("saved", Request("100", "200", 1000.0, state_since=1000.0))],
        )

    def test_target_hangup_originates_recall_at_once(self) -> None:
        """When the target ends its call and the requester is free, the recall starts
        in the same instant, ringing the requester for the wait time."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.clear()
        h.set("200", I)
        started = h.engine.get("100:200")
        assert started is not None
        self.assertEqual(
            h.outputs.log,
            [("originate", Recall("100:200", "100", "200", "internal", 1, 20)), ("saved", started)],
        )
        self.assertEqual(started.state, State.RINGING)

    def test_free_target_at_request_time_is_recalled_when_requester_hangs_up(self) -> None:
        """A target already free when the request is made is recalled once the
        requester has hung up the offer call."""
        h = Harness()
        h.where.update({"200": I, "100": B})
        h.engine.request("100", "200")
        self.assertEqual(h.originated(), [])
        h.set("100", I)
        self.assertEqual(h.originated(), [("100:200", 1)])

    def test_logged_out_target_recalled_when_it_registers(self) -> None:
        """A logged-out target that logs in again triggers the recall."""
        h = Harness()
        h.where.update({"200": L})
        h.engine.request("100", "200")
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1)])

    def test_dnd_target_recalled_when_dnd_ends(self) -> None:
        """A target on DND is recalled when DND is switched off, not before."""
        h = Harness()
        h.where.update({"200": D})
        h.engine.request("100", "200")
        h.set("200", B)
        h.set("200", D)
        self.assertEqual(h.originated(), [])
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1)])

    def test_duplicate_keeps_place(self) -> None:
        """Asking twice for the same target is answered DUPLICATE and changes nothing."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.clear()
        self.assertEqual(h.engine.request("100", "200"), Outcome.DUPLICATE)
        self.assertEqual(h.outputs.log, [])

    def test_self_request_is_invalid(self) -> None:
        """Nobody can request a callback from themselves."""
        h = Harness()
        self.assertEqual(h.engine.request("100", "100"), Outcome.INVALID)
        self.assertEqual(h.outputs.log, [])

    def test_limit_per_requester(self) -> None:
        """A requester holds at most max_per_requester open requests."""
        h = Harness(max_per_requester=2)
        h.where.update({"200": B, "201": B, "202": B})
        self.assertEqual(h.engine.request("100", "200"), Outcome.ACCEPTED)
        self.assertEqual(h.engine.request("100", "201"), Outcome.ACCEPTED)
        self.assertEqual(h.engine.request("100", "202"), Outcome.LIMIT)
        self.assertEqual([r.target for r in h.engine.pending(requester="100")], ["200", "201"])

    def test_limit_per_target(self) -> None:
        """A target has at most max_per_target requests waiting for it."""
        h = Harness(max_per_target=1)
        h.where.update({"200": B})
        h.engine.request("100", "200")
        self.assertEqual(h.engine.request("101", "200"), Outcome.LIMIT)


class OrderTests(SynchronousTestCase):
    def test_fifo_for_one_target(self) -> None:
        """Two requesters for one target are recalled first come, first served,
        one recall at a time."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("101", "200")
        h.clock.advance(1)
        h.engine.request("100", "200")
        h.set("200", I)
        self.assertEqual(h.originated(), [("101:200", 1)])
        h.engine.recall_result("101:200", 1, RecallResult.REQUESTER_ANSWERED)
        h.set("101", B)
        h.set("200", B)
        h.engine.recall_result("101:200", 1, RecallResult.TARGET_ANSWERED)
        h.set("101", I)
        h.set("200", I)
        self.assertEqual(h.originated(), [("101:200", 1), ("100:200", 1)])
        self.assertEqual(h.removed(), [("101:200", "done")])

    def test_busy_requester_keeps_place_and_next_is_served(self) -> None:
        """When the first requester is busy, the next one is served, and the first
        is recalled once both are free again."""
        h = Harness()
        h.where.update({"200": B, "101": B})
        h.engine.request("101", "200")
        h.clock.advance(1)
        h.engine.request("100", "200")
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1)])
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.recall_result("100:200", 1, RecallResult.TARGET_ANSWERED)
        h.set("101", I)
        self.assertEqual(h.originated(), [("100:200", 1), ("101:200", 1)])

    def test_one_recall_per_requester(self) -> None:
        """A requester waiting for two free targets gets one recall at a time."""
        h = Harness()
        h.where.update({"200": B, "201": B})
        h.engine.request("100", "200")
        h.engine.request("100", "201")
        h.set("200", I)
        h.set("201", I)
        self.assertEqual(h.originated(), [("100:200", 1)])
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.recall_result("100:200", 1, RecallResult.TARGET_ANSWERED)
        self.assertEqual(h.originated(), [("100:200", 1), ("100:201", 1)])


class RetryTests(SynchronousTestCase):
    def test_unanswered_recall_retried_after_delay(self) -> None:
        """A recall the requester does not answer is retried after retry_delay."""
        h = Harness(retry_delay=lambda attempts: 30.0 * attempts)
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_NO_ANSWER)
        h.clock.advance(29.9)
        self.assertEqual(h.originated(), [("100:200", 1)])
        h.clock.advance(0.1)
        self.assertEqual(h.originated(), [("100:200", 1), ("100:200", 2)])

    def test_attempts_limit_drops_request(self) -> None:
        """After max_attempts unanswered recalls the request is removed."""
        h = Harness(max_attempts=2, retry_delay=lambda attempts: 10.0)
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_BUSY)
        h.clock.advance(10)
        h.engine.recall_result("100:200", 2, RecallResult.REQUESTER_NO_ANSWER)
        self.assertEqual(h.removed(), [("100:200", "attempts")])
        self.assertEqual(h.engine.pending(), [])

    def test_target_busy_again_waits_without_losing_attempt(self) -> None:
        """If the target is busy again when dialled, the request waits for it again
        and the next recall counts as the same attempt."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_ANSWERED)
        h.where["200"] = B
        h.engine.recall_result("100:200", 1, RecallResult.TARGET_UNREACHABLE)
        self.assertEqual(h.engine.get("100:200").state, State.WAITING)
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1), ("100:200", 1)])

    def test_stale_result_ignored(self) -> None:
        """A result for an earlier attempt changes nothing."""
        h = Harness(retry_delay=lambda attempts: 1.0)
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_NO_ANSWER)
        h.clock.advance(1)
        h.clear()
        h.engine.recall_result("100:200", 1, RecallResult.TARGET_ANSWERED)
        self.assertEqual(h.outputs.log, [])

    def test_lost_outcome_waits_again(self) -> None:
        """A recall whose outcome never arrives is given up after ring time plus guard."""
        h = Harness()
        h.where.update({"200": B, "100": I})
        h.engine.request("100", "200")
        h.set("200", I)
        h.where["200"] = B  # target busy again meanwhile: nothing to restart
        h.clock.advance(20 + 120)
        self.assertEqual(h.engine.get("100:200").state, State.WAITING)


class ExpiryTests(SynchronousTestCase):
    def test_expires_exactly_after_timeout(self) -> None:
        """A waiting request is removed exactly timeout seconds after it was made."""
        h = Harness(EngineSettings(timeout_seconds=60))
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.clock.advance(59.99)
        self.assertEqual(h.removed(), [])
        h.clock.advance(0.01)
        self.assertEqual(h.removed(), [("100:200", "expired")])
        self.assertEqual(h.engine.pending(), [])

    def test_shorter_timeout_applies_to_open_requests(self) -> None:
        """A timeout lowered while requests wait applies on the next check."""
        h = Harness(EngineSettings(timeout_seconds=3600))
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.clock.advance(120)
        h.settings = EngineSettings(timeout_seconds=60)
        h.engine.check()
        self.assertEqual(h.removed(), [("100:200", "expired")])

    def test_disabled_pauses_recalls(self) -> None:
        """With callback switched off no recall starts; switching it on starts it."""
        h = Harness(EngineSettings(enabled=False))
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        self.assertEqual(h.originated(), [])
        h.settings = EngineSettings(enabled=True)
        h.engine.check()
        self.assertEqual(h.originated(), [("100:200", 1)])


class CancelTests(SynchronousTestCase):
    def test_cancel_one(self) -> None:
        """Cancelling one target removes only that request."""
        h = Harness()
        h.where.update({"200": B, "201": B})
        h.engine.request("100", "200")
        h.engine.request("100", "201")
        gone = h.engine.cancel("100", "200")
        self.assertEqual([r.id for r in gone], ["100:200"])
        self.assertEqual(h.removed(), [("100:200", "cancelled")])
        self.assertEqual([r.id for r in h.engine.pending()], ["100:201"])

    def test_cancel_all_of_requester(self) -> None:
        """Cancelling without a target removes all of the requester's requests, no others."""
        h = Harness()
        h.where.update({"200": B, "201": B})
        h.engine.request("100", "200")
        h.engine.request("100", "201")
        h.engine.request("101", "200")
        h.engine.cancel("100")
        self.assertEqual([r.id for r in h.engine.pending()], ["101:200"])

    def test_cancelled_request_not_recalled(self) -> None:
        """A cancelled request is not recalled when its target becomes free."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        self.assertTrue(h.engine.cancel_id("100:200"))
        h.set("200", I)
        self.assertEqual(h.originated(), [])


class CCNRTests(SynchronousTestCase):
    def test_ccnr_waits_for_the_targets_next_call(self) -> None:
        """A CCNR request for an idle target is recalled only after the target's
        next call ends."""
        h = Harness()
        h.engine.request("100", "200", Kind.CCNR)
        h.engine.check()
        self.assertEqual(h.originated(), [])
        h.set("200", B)
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1)])


class RestartTests(SynchronousTestCase):
    def test_loaded_requests_resume(self) -> None:
        """Requests loaded after a restart keep their order; one that was ringing
        waits again and is recalled when the target is free."""
        h = Harness()
        h.where.update({"200": B})
        ringing = Request("101", "200", 900.0, state=State.RINGING, attempts=1)
        waiting = Request("100", "200", 950.0)
        h.engine.load([waiting, ringing])
        self.assertEqual([r.id for r in h.engine.pending()], ["101:200", "100:200"])
        self.assertEqual(h.engine.get("101:200").state, State.WAITING)
        h.set("200", I)
        self.assertEqual(h.originated(), [("101:200", 2)])

    def test_json_round_trip(self) -> None:
        """A request survives the store's JSON unchanged."""
        request = Request(
            "100", "200", 12.5, Kind.CCNR, "internal", State.RINGING, 2, 30.0, False, 13.0, True
        )
        self.assertEqual(Request.from_json(request.to_json()), request)

    def test_lost_recall_not_counted_and_retried_on_resync(self) -> None:
        """A recall lost with the PBX link does not count as an attempt, is not
        retried while the link is down, and goes out again at once on the resync."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.LOST)
        request = h.engine.get("100:200")
        assert request is not None
        self.assertEqual((request.state, request.attempts, request.lost), (State.WAITING, 0, True))
        h.set("200", B)
        h.set("200", I)
        self.assertEqual(h.originated(), [("100:200", 1)])
        h.engine.resynced()
        self.assertEqual(h.originated(), [("100:200", 1), ("100:200", 1)])
        self.assertFalse(h.engine.get("100:200").lost)

    def test_lost_recall_retried_after_delay_without_resync(self) -> None:
        """Without a resync, a lost recall is tried again after LOST_RETRY_SECONDS."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.LOST)
        h.clock.advance(LOST_RETRY_SECONDS - 1)
        self.assertEqual(h.originated(), [("100:200", 1)])
        h.clock.advance(1)
        self.assertEqual(h.originated(), [("100:200", 1), ("100:200", 1)])

    def test_resync_restarts_recall_that_died_with_asterisk(self) -> None:
        """After a resync, a recall still ringing in the engine whose internal requester
        is not ringing (Asterisk restarted) waits again and is started at once."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.resynced()
        self.assertEqual(h.originated(), [("100:200", 1), ("100:200", 2)])

    def test_resync_keeps_recall_still_ringing(self) -> None:
        """A resync while the requester's line is ringing leaves the recall alone."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.set("100", Presence.RINGING)
        h.engine.resynced()
        self.assertEqual(h.originated(), [("100:200", 1)])
        self.assertEqual(h.engine.get("100:200").state, State.RINGING)

    def test_resync_ends_connected_recall_of_idle_requester(self) -> None:
        """After a resync, a connected recall whose requester is no longer in a call is done."""
        h = Harness()
        h.where.update({"200": B})
        h.engine.request("100", "200")
        h.set("200", I)
        h.engine.recall_result("100:200", 1, RecallResult.REQUESTER_ANSWERED)
        h.engine.resynced()
        self.assertEqual(h.removed(), [("100:200", "done")])


class CallsEndingTests(SynchronousTestCase):
    """A target whose calls our call route let go is free for a recall before
    Asterisk's device state says so; a requester is not (its phone rings now)."""

    def harness(self) -> Harness:
        h = Harness(callee_presence=lambda name: self.callee.get(name, I))
        self.callee: dict[str, Presence] = {}
        return h

    def test_target_calls_ending_starts_the_recall(self) -> None:
        """The strict presence still says busy, the callee view says free: the
        recall starts at once."""
        h = self.harness()
        h.where.update({"200": B})
        self.callee["200"] = B
        h.engine.request("100", "200")
        h.clear()
        self.callee["200"] = I
        h.engine.calls_ending("200")
        self.assertEqual(h.originated(), [("100:200", 1)])

    def test_target_still_in_another_call_waits(self) -> None:
        """One of the target's calls ended, another goes on (call waiting, a second
        phone): the callee view is still busy, nothing starts."""
        h = self.harness()
        h.where.update({"200": B})
        self.callee["200"] = B
        h.engine.request("100", "200")
        h.clear()
        h.engine.calls_ending("200")
        self.assertEqual(h.originated(), [])

    def test_requester_calls_ending_is_not_enough(self) -> None:
        """The requester's call ending does not ring it: it must be idle by Asterisk."""
        h = self.harness()
        h.where.update({"100": B, "200": I})
        h.engine.request("100", "200")
        h.clear()
        self.callee["100"] = I
        h.engine.calls_ending("100")
        self.assertEqual(h.originated(), [])
        h.set("100", I)
        self.assertEqual(h.originated(), [("100:200", 1)])
