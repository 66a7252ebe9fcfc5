"""``python -m appliance.demo [run]`` and ``python -m appliance.demo tour [...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.demo.runner import REPO, DemoPorts, run

DEFAULT_STATE = REPO / "var" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.demo", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    start = commands.add_parser("run", help="start the lab, the appliance and the mailbox (the default)")
    start.add_argument("--instance", default="demo", help="lab instance (demo, or test1..test9)")
    start.add_argument("--web-port", type=int, default=DemoPorts.web)
    start.add_argument("--smtp-port", type=int, default=DemoPorts.smtp)
    start.add_argument("--mailbox-port", type=int, default=DemoPorts.mailbox)
    start.add_argument(
        "--listen",
        metavar="ADDRESS",
        help="also take softphones for 100-109 on this address of the machine (with passwords)",
    )
    tour = commands.add_parser("tour", help="play scripted calls through the running demo")
    tour.add_argument("part", nargs="?", default="all", choices=["all", "callback", "forward", "missed"])
    for sub in (start, tour):
        sub.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the demo's state folder")
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or (words[0].startswith("-") and words[0] not in ("-h", "--help")):
        words.insert(0, "run")  # ./dev demo [--listen ADDRESS]
    options = parser.parse_args(words)
    if options.command == "tour":
        from appliance.demo.tour import main as tour_main

        return tour_main(options.part, options.state)
    ports = DemoPorts(web=options.web_port, smtp=options.smtp_port, mailbox=options.mailbox_port)
    return run(options.instance, options.state, ports, listen=options.listen)


if __name__ == "__main__":
    sys.exit(main())
