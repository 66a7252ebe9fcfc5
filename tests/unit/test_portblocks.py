"""Ports of the test tools: blocks that never overlap, in ranges nobody else binds."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from appliance.lab import LabPorts
from tests.e2e import phones as phones_module
from tests.e2e.phones import Phone
from tests.e2e.portblocks import BLOCK, PortBlock, PortBlocks, PortPlanError, ephemeral_range
from tests.e2e.waiting import clear_aborts, wait_until

DEBIAN_EPHEMERAL = range(32768, 61000)
INSTANCES = ["demo", "test", *(f"test{n}" for n in range(1, 10))]


def sipp_ports(block: PortBlock) -> set[int]:
    """Every port one sipp run binds from its block: SIP, control, audio and video RTP/RTCP."""
    return {block.sip, block.control, *range(block.media, block.media + 4)}


def test_blocks_of_one_range_never_overlap() -> None:
    """Every block handed out holds sipp's ports and the TCP ports, and no port is in two blocks."""
    blocks = PortBlocks(6000, 6599, ephemeral=DEBIAN_EPHEMERAL)
    taken = [blocks.take() for _ in range(600 // BLOCK)]
    seen: set[int] = set()
    for block in taken:
        ports = set(block.ports())
        assert sipp_ports(block) | set(block.tcp) <= ports
        assert sipp_ports(block).isdisjoint(block.tcp)
        assert ports <= set(range(6000, 6600))
        assert seen.isdisjoint(ports)
        seen |= ports


def test_used_up_range_says_so() -> None:
    """When every block is in use the next take fails with a clear error, not a shared port."""
    blocks = PortBlocks(6000, 6015, ephemeral=DEBIAN_EPHEMERAL)
    blocks.take(), blocks.take()
    with pytest.raises(PortPlanError, match="all 2 port blocks of 6000-6015 are in use"):
        blocks.take()


def test_released_block_comes_back_last() -> None:
    """A released block is handed out again only after every other free block."""
    blocks = PortBlocks(6000, 6023, ephemeral=DEBIAN_EPHEMERAL)
    first = blocks.take()
    blocks.release(first)
    assert [blocks.take().start for _ in range(3)] == [6008, 6016, 6000]
    with pytest.raises(PortPlanError, match="was not taken"):
        blocks.release(PortBlock(6100))


def test_range_inside_the_ephemeral_ports_is_refused() -> None:
    """A range the kernel may hand to any socket is refused before a port is given out."""
    with pytest.raises(PortPlanError, match="overlap the kernel's ephemeral ports 32768-60999"):
        PortBlocks(32000, 33000, ephemeral=DEBIAN_EPHEMERAL)


def test_ephemeral_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text("32768\t60999\n")
    assert ephemeral_range(path) == DEBIAN_EPHEMERAL


@pytest.mark.parametrize("instance", INSTANCES)
def test_lab_port_plan_keeps_tools_apart(instance: str) -> None:
    """An instance's tool range is clear of every instance's lab ports, of the other tool
    ranges, of sipp's default control port search and of the ephemeral ports (here too)."""
    mine = LabPorts.for_instance(instance)
    tools = set(range(mine.tools_start, mine.tools_end + 1))
    assert tools.isdisjoint(DEBIAN_EPHEMERAL)
    PortBlocks(mine.tools_start, mine.tools_end)  # this machine's ephemeral range
    for other_name in INSTANCES:
        other = LabPorts.for_instance(other_name)
        lab = {other.sip, other.ami, other.fastagi, *range(other.rtp_start, other.rtp_end + 1)}
        assert tools.isdisjoint(lab), other_name
        if other_name != instance:
            assert tools.isdisjoint(range(other.tools_start, other.tools_end + 1)), other_name


class GoneProcess:
    def signalProcess(self, signal: str) -> None:
        raise phones_module.error.ProcessExitedAlready()


class RecordingReactor:
    """Notes each spawned sipp command line; the process never runs."""

    def __init__(self) -> None:
        self.spawned: list[tuple[Any, list[str]]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kwargs: Any) -> object:
        self.spawned.append((protocol, args))
        return GoneProcess()


def option(args: list[str], name: str) -> int:
    return int(args[args.index(name) + 1])


def test_two_phones_get_disjoint_ports(tmp_path: Path) -> None:
    """Two phones calling and answering at once: no port of one is a port of the other,
    and each run's block goes back when its sipp ends."""
    lab = LabPorts(tools_start=9000, tools_end=9599)
    reactor = RecordingReactor()
    a = Phone(reactor, lab, "100", workdir=tmp_path)  # type: ignore[arg-type]
    b = Phone(reactor, lab, "200", workdir=tmp_path)  # type: ignore[arg-type]
    a.call("200"), b.answer(), b.call("300"), a.answer()
    used: list[set[int]] = [{a.port}, {b.port}]
    for _, args in reactor.spawned:
        media = option(args, "-mp")
        used.append({option(args, "-cp"), *range(media, media + 4)})
        if option(args, "-p") not in (a.port, b.port):
            used.append({option(args, "-p")})
    for one, other in itertools.combinations(used, 2):
        assert one.isdisjoint(other)
    assert all(port in range(9000, 9600) for ports in used for port in ports)
    blocks = PortBlocks.for_lab(lab)
    assert len(blocks.in_use()) == 2 + 4
    for protocol, _ in reactor.spawned:
        protocol.processEnded(Failure(phones_module.error.ProcessTerminated(exitCode=0)))
    assert len(blocks.in_use()) == 2
    a.close()
    b.close()
    assert not blocks.in_use()


def test_sipp_that_cannot_start_ends_pending_waits(tmp_path: Path) -> None:
    """sipp's bind error fails the test's pending wait at once, with sipp's own message."""
    from twisted.internet.task import Clock

    clear_aborts()
    reactor = RecordingReactor()
    phone = Phone(reactor, LabPorts(tools_start=9600, tools_end=9699), "100", workdir=tmp_path)  # type: ignore[arg-type]
    phone.call("200")
    clock = Clock()
    waiting = wait_until(clock, lambda _cb: lambda: None, lambda: False, "200 talking")
    [(protocol, _)] = reactor.spawned
    protocol.outReceived(b"Unable to bind video RTP socket (IP=127.0.0.1, port=9612), errno = 98")
    protocol.processEnded(
        Failure(phones_module.error.ProcessTerminated(exitCode=phones_module.SIPP_COULD_NOT_BIND))
    )
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    phone.runs[0].done.addErrback(lambda _f: None)
    [failure] = failures
    assert failure.check(phones_module.SippFailed)
    assert "Unable to bind video RTP socket" in str(failure.value)
    assert not clock.getDelayedCalls()
    later = wait_until(clock, lambda _cb: lambda: None, lambda: False, "anything")
    later.addErrback(failures.append)
    assert len(failures) == 2
    clear_aborts()
    phone.close()


def test_broken_scenario_fails_before_sipp_starts(tmp_path: Path) -> None:
    """A scenario that is not well-formed XML raises at once; no sipp runs, no port is held."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "broken.xml").write_text('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario><send>')
    reactor = RecordingReactor()
    lab = LabPorts(tools_start=9700, tools_end=9799)
    phone = Phone(reactor, lab, "100", workdir=tmp_path)  # type: ignore[arg-type]
    original = phones_module.SCENARIOS
    phones_module.SCENARIOS = scenarios
    try:
        with pytest.raises(phones_module.ElementTree.ParseError):
            phone._run("broken", {})
    finally:
        phones_module.SCENARIOS = original
    assert reactor.spawned == []
    assert PortBlocks.for_lab(lab).in_use() == {phone.home}
    phone.close()


def test_sipp_timeout_leaves_waits_alone(tmp_path: Path) -> None:
    """A run that ends with sipp's -1 (its own timeout, a held call the test no longer
    needs) fails only its own Deferred."""
    from twisted.internet.task import Clock

    clear_aborts()
    reactor = RecordingReactor()
    phone = Phone(reactor, LabPorts(tools_start=9800, tools_end=9899), "100", workdir=tmp_path)  # type: ignore[arg-type]
    phone.answer()
    clock = Clock()
    waiting = wait_until(clock, lambda _cb: lambda: None, lambda: False, "request expired")
    [(protocol, _)] = reactor.spawned
    protocol.processEnded(Failure(phones_module.error.ProcessTerminated(exitCode=255)))
    failures: list[Failure] = []
    phone.runs[0].done.addErrback(failures.append)
    assert len(failures) == 1 and not waiting.called
    clock.advance(15)
    waiting.addErrback(lambda f: f.trap(Exception))
    assert waiting.called
    phone.close()
