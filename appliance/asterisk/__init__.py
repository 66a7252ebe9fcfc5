"""Our own Twisted protocols for Asterisk: AMI client and FastAGI server.

Protocol code only; feature logic lives in the feature packages.
"""
