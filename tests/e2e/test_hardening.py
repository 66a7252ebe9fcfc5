"""Hardening end to end: fail closed after the appliance took a call, the
plain-Dial fallback when the appliance cannot be reached, and a full disk
during a missed call."""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from appliance.asterisk.fastagi import ENVIRONMENT_DEADLINE
from appliance.lab import Lab
from appliance.mail import OUTBOX
from appliance.missed.journal import JOURNAL
from appliance.pbx import ChannelChanged, Presence
from tests.e2e.calls import route_finished
from tests.e2e.test_missed import EXTERNAL, Inbox, Rig, call_and_cancel, inbox, relay_port, ringing_phones
from tests.e2e.waiting import wait_model, wait_until

__all__ = ["inbox", "relay_port"]  # the fixtures, shared with test_missed


@pytest_twisted.inlineCallbacks
def test_unreachable_appliance_falls_back_to_plain_dial(lab, phones, reactor):
    """Nothing listens on the FastAGI port: Asterisk dials the target by itself and
    the call connects."""
    callee, caller = phones("208"), phones("108")
    yield callee.register().done
    answering = callee.answer(ring_ms=100)
    calling = caller.call("208", hold_ms=500)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results


@pytest_twisted.inlineCallbacks
def test_failure_after_dialling_never_dials_again(appliance, phones, reactor):
    """The appliance dials 207, which is busy; then its handler fails.  The caller is
    hung up and 207 is rung exactly once (no plain Dial() behind the appliance)."""
    pbx = appliance.pbx
    callee, caller = phones("207"), phones("107")
    yield callee.register().done
    yield wait_model(reactor, pbx, lambda: pbx.presence("207") is Presence.IDLE, "207 logged in")
    legs: set[str] = set()

    def record(change: object) -> None:
        if isinstance(change, ChannelChanged) and change.channel.name.startswith("PJSIP/207-"):
            legs.add(change.channel.uniqueid)

    pbx.subscribe(record)

    def broken(session, call, reason):
        raise RuntimeError("a feature failed after the dial")

    appliance.call_extensions._unreachable = broken  # the callback offer, replaced by a failing one
    refusing = callee._run("cc_reject", {"ring_ms": 0, "code": 486}, local_port=callee.port)
    calling = caller._run("cc_busy", {"target": "207", "code": 486, "extra": ""}, timeout=20)
    results = yield DeferredList([refusing.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield wait_model(reactor, pbx, lambda: not pbx.channels_of("107"), "the caller's channel gone")
    assert len(legs) == 1, legs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 8 MB tmpfs for the store, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write zeros until the file system is full (bounded by its size)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as handle:
        for _ in range(10_000):
            try:
                handle.write(chunk)
                handle.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                break
        else:
            raise AssertionError("the small disk never filled")
    return filler


@pytest_twisted.inlineCallbacks
def test_disk_full_during_missed_call_keeps_entry_and_mail(
    tmp_path: Path, lab: Lab, reactor: Any, inbox: Inbox, phones: Any, small_disk: Path
) -> Any:
    """The store's disk is full when an external call to 200 goes unanswered: the
    journal entry and the mail are kept (banner on the admin page), and once space
    returns the entry is on disk and exactly one mail has arrived."""
    rig = Rig(tmp_path, lab, reactor, inbox.port)
    store_path = small_disk / "store.sqlite3"
    rig.config.write_text(rig.config.read_text().replace("path = store.sqlite3", f"path = {store_path}"))
    yield rig.start()
    try:
        rig.setup_directory()
        disk = rig.appliance.store.store  # the SQLiteStore under the holding store
        disk._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # new writes need new blocks
        filler = fill(small_disk)
        states: list[bool] = []
        rig.appliance.store.on_holding(states.append)

        [ringing] = yield ringing_phones(rig, phones, "200")
        calling = call_and_cancel(phones, "200", ring_ms=3000)
        results = yield DeferredList([ringing.done, calling.done], consumeErrors=True)
        assert [ok for ok, _ in results] == [True, True], results
        yield rig.wait_decision()
        assert states[:1] == [True]
        assert disk.get(JOURNAL, "200") is None  # not on disk yet ...
        kept = rig.appliance.missed.journal.entries("200")  # ... but kept
        assert [e.caller_num for e in kept] == [EXTERNAL]
        assert any("not writable" in alert for alert in rig.appliance.web.current_alerts())

        filler.unlink()

        def subscribe(callback: Callable[[object], None]) -> Callable[[], None]:
            rig.appliance.store.on_holding(callback)
            return lambda: None

        yield wait_until(reactor, subscribe, lambda: rig.appliance.store.holding == 0, "kept writes on disk")
        yield wait_until(reactor, inbox.subscribe, lambda: inbox.messages, "the mail arrives")
        yield rig.wait_outbox_settled()
        [entry] = disk.get(JOURNAL, "200")
        assert entry["caller_num"] == EXTERNAL
        assert [m["To"].addresses[0].addr_spec for m in inbox.messages] == ["u200@example.org"]
        assert all(r["state"] == "sent" for _, r in disk.items(OUTBOX))
        assert not any("not writable" in alert for alert in rig.appliance.web.current_alerts())
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_ami_keepalive_notices_a_silent_asterisk(appliance, lab, reactor):
    """Asterisk frozen (SIGSTOP: the TCP link stays up but nothing answers) is noticed
    by the keepalive within 15 s; once it runs again the link comes back and resyncs."""
    pbx = appliance.pbx
    lost = appliance.ami.protocol.whenDisconnected()
    dropped: list[float] = []
    lost.addCallback(lambda _: dropped.append(reactor.seconds()))

    def on_drop(callback: Callable[[object], None]) -> Callable[[], None]:
        lost.addCallback(callback)
        return lambda: None

    resyncs: list[object] = []
    pbx.subscribe(lambda change: resyncs.append(change) if type(change).__name__ == "Resynced" else None)
    pid = lab.pid()
    assert pid is not None
    frozen_at = reactor.seconds()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield wait_until(reactor, on_drop, lambda: dropped, "the AMI link dropped", timeout=20)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert dropped[0] - frozen_at <= 15.0
    yield wait_model(reactor, pbx, lambda: resyncs, "the PBX model resynced", timeout=60)
    assert appliance.ami.connected


def _post_headers_only(port: int, length: int) -> bytes:
    """Announce a huge body, send 1 MB of it, and read what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        try:
            sock.sendall(b"a" * 1024 * 1024)
        except OSError:
            pass  # the server may already have closed
        try:
            return sock.recv(4096)
        except OSError:
            return b""


@pytest_twisted.inlineCallbacks
def test_running_appliance_refuses_a_huge_post_at_once(appliance, reactor):
    """The appliance's own web port answers a 300 MB unauthenticated POST with 413 and
    the security headers right after the headers, without reading the body."""
    port = (yield appliance.web_service._waitingForPort).getHost().port
    before = appliance.web_service.factory.refusals
    reply = yield deferToThread(_post_headers_only, port, 300 * 1024 * 1024)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:100]
    assert b"Content-Security-Policy: default-src 'none'" in reply
    assert appliance.web_service.factory.refusals == before + 1


def _open_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def _closed_within(sockets: list[socket.socket], seconds: float) -> int:
    """How many of ``sockets`` the server closed within ``seconds`` (bounded wait)."""
    waiting = {sock.fileno(): sock for sock in sockets}
    closed = 0
    with select.epoll() as poller:
        for fd in waiting:
            poller.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        deadline = time.monotonic() + seconds
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.2):
                sock = waiting.pop(fd)
                poller.unregister(fd)
                if sock.recv(100) in (b"", b"FAILURE\n"):
                    closed += 1
    for sock in sockets:
        sock.close()
    return closed


@pytest_twisted.inlineCallbacks
def test_idle_fastagi_connections_do_not_block_calls(appliance, lab, phones, reactor, routed):
    """200 connections to the FastAGI port that never send an environment: a real call
    placed meanwhile still goes through the appliance, and the server closes every idle
    one within its environment deadline."""
    idle = yield deferToThread(_open_idle, lab.ports.fastagi, 200)
    callee, caller = phones("206"), phones("106")
    yield callee.register().done
    yield wait_model(reactor, appliance.pbx, lambda: appliance.pbx.presence("206") is Presence.IDLE, "206 in")
    answering = callee.answer(ring_ms=100)
    calling = caller.call("206", hold_ms=300)
    results = yield DeferredList([answering.done, calling.done], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True], results
    yield route_finished(reactor, appliance, routed)
    assert [(c.number, c.origin, c.status) for c in routed] == [("206", "internal", "ANSWER")]
    closed = yield deferToThread(_closed_within, idle, ENVIRONMENT_DEADLINE + 5)
    assert closed == 200
