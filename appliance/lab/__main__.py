"""``python -m appliance.lab up|down|status|cli`` for the demo and for people."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.lab import Lab, LabError, LabPorts

DIALPLAN = Path(__file__).resolve().parents[2] / "asterisk" / "appliance.conf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.lab", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "restart", "status", "cli"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="CLI command words (for 'cli')")
    parser.add_argument("--instance", default="demo", help="lab instance name (demo, test)")
    options = parser.parse_args(argv)
    lab = Lab(instance=options.instance, ports=LabPorts.for_instance(options.instance))
    try:
        if options.command == "build":
            print("built" if lab.build() else "cached", lab.root)
        elif options.command in ("up", "restart"):
            lab.build()
            lab.configure(DIALPLAN)
            if options.command == "restart":
                lab.stop()
            lab.start()
            print(lab.describe())
        elif options.command == "down":
            lab.stop()
            print(lab.describe())
        elif options.command == "status":
            print(lab.describe())
        elif options.command == "cli":
            print(lab.cli(" ".join(options.args)), end="")
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
