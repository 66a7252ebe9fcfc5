"""The lab and an in-process appliance for the benchmarks that place real calls."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer

REPO = Path(__file__).resolve().parents[1]


@defer.inlineCallbacks
def lab_and_appliance(reactor: Any, instance: str, prefix: str) -> Any:
    """Start (or reuse) lab ``instance`` and an appliance synced with it: (lab, appliance)."""
    from appliance import tap
    from appliance.lab import Lab, LabPorts
    from tests.e2e.conftest import appliance_config
    from tests.e2e.waiting import wait_model

    lab = Lab(instance=instance, ports=LabPorts.for_instance(instance))
    lab.build()
    if not lab.is_running():
        lab.configure(REPO / "asterisk" / "appliance.conf")
        lab.start()
    appliance = tap.build(str(appliance_config(Path(tempfile.mkdtemp(prefix=prefix)), lab)), reactor)
    appliance.startService()
    pbx = appliance.pbx
    yield wait_model(reactor, pbx, lambda: pbx.synced, "appliance synced", timeout=20)
    return lab, appliance
