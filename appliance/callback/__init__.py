"""Automatic callback (call completion on busy, logged out, DND and no reply).

`engine` is the pure state machine, `offer` the FastAGI side (announcement,
DTMF, feature codes), `service` wires both to the store, the PBX model and
AMI, `prompts` holds the German and English announcements and builds them.
"""
