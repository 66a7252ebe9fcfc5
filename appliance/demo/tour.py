"""``python -m appliance.demo tour [callback|forward|missed|all]``: scripted calls
through the running demo, narrated as they happen.

sipp phones (the end-to-end suite's) place and take the calls; the narration
comes from what Asterisk reports over AMI — the appliance's own AGI commands
(its prompts), DTMF, the channels it creates, the caller ID it sets — and from
the demo mailbox.  Every step waits for its real event with a bound and says
``seen``, or says plainly that it did not happen.  Phones 2xx and 3xx only, so
softphones on 1xx are left alone.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred, inlineCallbacks

from appliance.asterisk.amiservice import AMIService
from appliance.demo.runner import DemoState
from appliance.lab import Lab, LabPorts
from appliance.pbx import PBXModel, PBXService, Presence

DEBUG = os.environ.get("APPLIANCE_TOUR_DEBUG") == "1"
STEP_BOUND = 20.0
"""Seconds each step may take before the tour says it was not seen."""


@dataclass
class Seen:
    """One AMI event as the tour received it."""

    at: float
    headers: dict[str, str]

    def get(self, key: str) -> str:
        return self.headers.get(key.lower(), "")


class NotSeen(Exception):
    """A step's event did not come within its bound."""


@dataclass
class Tour:
    reactor: Any
    state: DemoState
    lab: Lab
    ami: AMIService
    pbx: PBXModel
    events: list[Seen] = field(default_factory=list)
    observers: list[Callable[[], None]] = field(default_factory=list)
    unseen: int = 0
    started: float = 0.0

    # -- narration ----------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"[{self.reactor.seconds() - self.started:6.2f}s] {text}", flush=True)

    def _event(self, message: Any) -> None:
        headers = {key.lower(): value for key, value in message.items()}
        self.events.append(Seen(self.reactor.seconds(), headers))
        if DEBUG:
            print(f"   ami {self.reactor.seconds() - self.started:6.2f}s:", headers, flush=True)
        self._changed()

    def _changed(self, _change: object = None) -> None:
        for observer in list(self.observers):
            observer()

    def wait(self, check: Callable[[], Any], what: str, bound: float = STEP_BOUND) -> Deferred[Any]:
        """Fire with ``check()``'s first truthy value, re-checked on every event."""
        done: Deferred[Any] = Deferred()

        def look() -> None:
            if done.called:
                return
            value = check()
            if value:
                finish()
                done.callback(value)

        def expire() -> None:
            finish()
            done.errback(NotSeen(f"not within {bound:.0f} s: {what}"))

        def finish() -> None:
            self.observers.remove(look)
            if timer.active():
                timer.cancel()

        self.observers.append(look)
        timer = self.reactor.callLater(bound, expire)
        look()
        return done

    def event(self, since: float, name: str, **match: str | re.Pattern[str]) -> Deferred[Seen]:
        """The first AMI event ``name`` after ``since`` whose headers match."""

        def fits(seen: Seen) -> bool:
            if seen.at < since or seen.get("event").lower() != name.lower():
                return False
            for key, wanted in match.items():
                value = seen.get(key)
                if isinstance(wanted, re.Pattern) and not wanted.search(value):
                    return False
                if isinstance(wanted, str) and value != wanted:
                    return False
            return True

        return self.wait(lambda: next(filter(fits, self.events), None), f"{name} {match}")

    @inlineCallbacks
    def step(self, text: str, waiting: Deferred[Any]) -> Generator[Deferred[Any], Any, Any]:
        """Say ``text`` once ``waiting`` fired (its value formats into it), or that it did not."""
        try:
            value = yield waiting
        except NotSeen as why:
            self.unseen += 1
            self.say(f"NOT SEEN: {text.format(value='?')} ({why})")
            return None
        self.say(f"seen: {text.format(value=value)}")
        return value

    # -- phones -------------------------------------------------------------

    @inlineCallbacks
    def phones(self, *extensions: str) -> Generator[Deferred[Any], Any, list[Any]]:
        """sipp phones for ``extensions``, after ending calls an earlier tour left behind."""
        from tests.e2e.phones import Phone

        for extension in extensions:
            yield self.hang_up(extension)
        folder = Path(self.state.config).parent / "phones"
        folder.mkdir(exist_ok=True)
        return [Phone(self.reactor, self.lab.ports, extension, workdir=folder) for extension in extensions]

    @inlineCallbacks
    def logged_in(self, *phones: Any) -> Generator[Deferred[Any], Any, None]:
        for phone in phones:
            yield phone.register().done
        names = [phone.extension for phone in phones]
        yield self.step(
            f"phones {', '.join(names)} log in",
            self.wait(lambda: all(self.pbx.presence(n) is Presence.IDLE for n in names), "logged in"),
        )

    def prompt(self, since: float, extension: str, name: re.Pattern[str]) -> Deferred[str]:
        """The first prompt matching ``name`` the appliance plays to ``extension``."""
        played = self.event(since, "AGIExecStart", channel=self.on(extension), command=name)
        return played.addCallback(lambda seen: name.findall(seen.get("command"))[0])

    def on(self, extension: str) -> re.Pattern[str]:
        return re.compile(rf"^PJSIP/{re.escape(extension)}-")

    @inlineCallbacks
    def hang_up(self, extension: str) -> Generator[Deferred[Any], Any, None]:
        for channel in self.pbx.channels_of(extension):
            yield self.ami.sendAction("Hangup", Channel=channel.name).addErrback(lambda failure: None)

    @inlineCallbacks
    def done_with(self, phones: list[Any]) -> Generator[Deferred[Any], Any, None]:
        """Stop the phones and end whatever calls they left, so the next part starts clean."""
        for phone in phones:
            phone.close()
            yield self.hang_up(phone.extension)

    # -- the parts ----------------------------------------------------------

    @inlineCallbacks
    def callback(self) -> Generator[Deferred[Any], Any, None]:
        """300 is busy; 200 takes the offer; when 300 is free the appliance rings
        200, then 300."""
        self.say("— automatic callback —")
        requester, target, peer = phones = yield self.phones("200", "300", "301")
        try:
            yield self.logged_in(*phones)
            talking = peer._run("answer", {"ring_ms": 100, "hold_ms": 0}, local_port=peer.port)
            target.call("301", hold_ms=120_000)
            yield self.step(
                "300 calls 301, 301 answers: 300 is in a call",
                self.wait(lambda: self.pbx.presence("300") is Presence.BUSY, "300 busy"),
            )
            # Call waiting is off (CW_DEFAULT): 300 is busy before anything rings there.
            since = self.reactor.seconds()
            offer = requester._run(
                "cc_offer", {"target": "300", "key": "5", "pause_ms": 1500, "extra": ""}, timeout=30
            )
            self.say("200 calls 300")
            yield self.step(
                "200 hears the callback offer",
                self.event(since, "AGIExecStart", channel=self.on("200"), command=re.compile("cc-offer")),
            )
            yield self.step(
                "200 presses 5, the appliance confirms the request",
                self.event(since, "AGIExecStart", channel=self.on("200"), command=re.compile("cc-confirm")),
            )
            yield offer.done
            recall = requester._run(
                "cc_recall",
                {"expect_from": "300", "expect_to": "200", "ring_ms": 800},
                local_port=requester.port,
            )
            target._run(
                "cc_answer_from",
                {"expect_from": "200", "ring_ms": 800, "hold_ms": 2000},
                local_port=target.port,
            )
            freed = self.reactor.seconds()
            self.say("301 hangs up: 300's call ends")
            yield self.hang_up("300")
            ended = yield self.step(
                "300 is free", self.event(freed, "Hangup", channel=self.on("300")).addCallback(lambda s: s)
            )
            # The recall may ring 200 before Asterisk reports 300's hangup (the
            # appliance's own route let 300's line go first): look from the hang-up on.
            start = freed
            rung = yield self.event(start, "Newchannel", channel=self.on("200")).addErrback(
                lambda failure: failure.trap(NotSeen) and None
            )
            if rung is None:
                self.unseen += 1
                self.say("NOT SEEN: the appliance rings 200")
            else:
                after = f"{(rung.at - ended.at) * 1000:+.0f} ms from" if ended else "after"
                self.say(f"seen: the appliance rings 200 ({after} Asterisk's report that 300 hung up)")
            yield self.step(
                "200 answers", self.event(start, "Newstate", channel=self.on("200"), channelstatedesc="Up")
            )
            yield self.step(
                "300 rings showing '{value}'",
                self.event(start, "DialBegin", destchannel=self.on("300")).addCallback(
                    lambda seen: seen.get("destconnectedlinename") or seen.get("destconnectedlinenum")
                ),
            )
            yield self.step(
                "300 answers: 200 and 300 talk",
                self.event(start, "Newstate", channel=self.on("300"), channelstatedesc="Up"),
            )
            yield recall.done.addErrback(lambda failure: None)
            talking.kill()
        finally:
            yield self.done_with(phones)

    @inlineCallbacks
    def forward(self) -> Generator[Deferred[Any], Any, None]:
        """201 forwards to 302 by feature code; 202's call to 201 rings 302 with the display."""
        self.say("— call forwarding —")
        forwarder, target, caller = phones = yield self.phones("201", "302", "202")
        try:
            yield self.logged_in(*phones)
            since = self.reactor.seconds()
            self.say("201 dials *21302 (forward every call to 302)")
            setting = forwarder.call("*21302", hold_ms=15_000)
            yield self.step(
                "the appliance confirms with the prompt '{value}'",
                self.prompt(since, "201", re.compile(r"fwd-[a-z-]+-on")),
            )
            yield setting.done.addErrback(lambda failure: None)
            answering = target._run("fwd_answer", {"ring_ms": 1000}, local_port=target.port)
            since = self.reactor.seconds()
            self.say("202 calls 201")
            calling = caller.call("201", hold_ms=1500)
            yield self.step(
                "302 rings showing '{value}'",
                self.event(since, "DialBegin", destchannel=self.on("302")).addCallback(
                    lambda seen: seen.get("destconnectedlinename") or seen.get("destconnectedlinenum")
                ),
            )
            yield self.step(
                "302 answers", self.event(since, "Newstate", channel=self.on("302"), channelstatedesc="Up")
            )
            yield defer.DeferredList([answering.done, calling.done], consumeErrors=True)
            since = self.reactor.seconds()
            self.say("201 dials #21 (forward off)")
            clearing = forwarder.call("#21", hold_ms=15_000)
            yield self.step(
                "the appliance confirms with the prompt '{value}'",
                self.prompt(since, "201", re.compile(r"fwd-[a-z-]+-off")),
            )
            yield clearing.done.addErrback(lambda failure: None)
        finally:
            yield self.done_with(phones)

    @inlineCallbacks
    def missed(self) -> Generator[Deferred[Any], Any, None]:
        """A caller from outside lets 203 ring and gives up: a mail arrives in the mailbox."""
        self.say("— missed-call mail —")
        maildir = Path(self.state.maildir) / "new"
        before = set(maildir.iterdir()) if maildir.exists() else set()
        callee, trunk = phones = yield self.phones("203", "trunk")
        try:
            yield self.logged_in(callee)
            ringing = callee._run("mc_ring", {}, local_port=callee.port)
            since = self.reactor.seconds()
            self.say("+49 30 1234567 calls 203 from outside, lets it ring 4 s and hangs up")
            values = {
                "target": "203",
                "ring_ms": 4000,
                "name": "Erika Mustermann",
                "identity_header": "P-Asserted-Identity: <sip:+49301234567@127.0.0.1>",
            }
            calling = trunk._run("mc_call_cancel", values)
            yield self.step("203 rings", self.event(since, "Newchannel", channel=self.on("203")))
            yield self.step("the caller gives up", self.event(since, "Hangup", channel=self.on("203")))
            yield defer.DeferredList([ringing.done, calling.done], consumeErrors=True)
            arrived = yield self.step(
                "a missed-call mail arrives: '{value}'", self._new_mail(maildir, before)
            )
            if arrived:
                self.say(f"see it at {self.state.mailbox_url} (web page: {self.state.web_url})")
        finally:
            yield self.done_with(phones)

    def _new_mail(self, maildir: Path, before: set[Path]) -> Deferred[str]:
        """The subject of the first mail that was not there before (looked at twice a second;
        the mailbox is another process)."""
        import email
        import email.policy

        def fresh() -> str | None:
            for path in sorted(set(maildir.iterdir()) - before) if maildir.exists() else []:
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                return str(message.get("Subject", ""))
            return None

        ticking = task.LoopingCall(self._changed)
        ticking.clock = self.reactor
        ticking.start(0.5, now=False)

        def stop(result: Any) -> Any:
            ticking.stop()
            return result

        return self.wait(fresh, "a new mail in the demo mailbox", bound=30).addBoth(stop)


@inlineCallbacks
def play(reactor: Any, part: str, state_dir: Path) -> Generator[Deferred[Any], Any, int]:
    state = DemoState.read(state_dir)
    lab = Lab(instance=state.instance, ports=LabPorts.for_instance(state.instance))
    ports = lab.ports
    ami = AMIService.fromString(
        reactor, f"tcp:host={ports.host}:port={ports.ami}", lab.ami_user, lab.ami_secret
    )
    pbx = PBXModel(clock=reactor)
    PBXService(ami, pbx).setServiceParent(ami)
    tour = Tour(reactor, state, lab, ami, pbx, started=reactor.seconds())
    ami.subscribe(None, tour._event)
    pbx.subscribe(tour._changed)
    ami.startService()
    try:
        yield tour.step("connected to the demo's Asterisk", tour.wait(lambda: pbx.synced, "AMI resync"))
        for name in ("callback", "forward", "missed") if part == "all" else (part,):
            yield getattr(tour, name)()
    finally:
        yield ami.stopService()
    print("tour: every step seen" if not tour.unseen else f"tour: {tour.unseen} step(s) NOT SEEN", flush=True)
    return 0 if not tour.unseen else 1


def main(part: str, state: Path) -> int:
    """Exits the process: 0 when every step was seen, 1 otherwise."""
    if not (state / "demo.json").exists():
        print(f"tour: no running demo in {state} (start it with ./dev demo)", file=sys.stderr)
        return 2

    def run(reactor: Any) -> Deferred[None]:
        def exit_with(code: int) -> None:
            raise SystemExit(code)

        return play(reactor, part, state).addCallback(exit_with)

    task.react(run)
    return 1  # not reached: react exits
