"""``./dev demo``: the Asterisk lab with its demo users, and the appliance beside it.

Runs in the foreground; Ctrl-C stops the appliance and the lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from appliance.lab import Lab, LabError, LabPorts
from appliance.web.demo import seed_config as seed_web_logins

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    lab = Lab(instance="demo", ports=LabPorts.for_instance("demo"))
    try:
        lab.build()
        lab.configure(REPO / "asterisk" / "appliance.conf")
        lab.start()
    except LabError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print(lab.describe())
    seed_web_logins(REPO / "config.ini")
    print(
        "\nDemo users: extensions 100-109, 200-209, 300-309 (PJSIP over UDP, no password,"
        f" register to {lab.ports.host}:{lab.ports.sip}); external calls come in as endpoint 'trunk'.\n"
        "Web page: http://127.0.0.1:8080/ (demo logins: admin/admin; each user: extension/extension)\n"
        "Starting the appliance: twistd -n appliance --config config.ini (Ctrl-C stops it and the lab)\n",
        flush=True,
    )
    twistd = Path(sys.executable).with_name("twistd")
    appliance = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", "appliance", "--config", str(REPO / "config.ini")], cwd=REPO
    )
    try:
        return appliance.wait()
    except KeyboardInterrupt:
        appliance.send_signal(signal.SIGINT)
        return appliance.wait()
    finally:
        if os.environ.get("APPLIANCE_DEMO_KEEP_LAB") != "1":
            lab.stop()


if __name__ == "__main__":
    sys.exit(main())
