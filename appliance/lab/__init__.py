"""The PBX lab: a real Asterisk 22 in a cached Debian sid chroot.

Used by the demo and by every end-to-end test.  Everything listens on
loopback only.  Needs root (chroot, mount).
"""

from appliance.lab.lab import Lab, LabError, LabPorts

__all__ = ["Lab", "LabError", "LabPorts"]
