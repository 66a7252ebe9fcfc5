"""Which languages the appliance's announcements exist in, and how a sound file
is named: the vocabulary every feature's prompts share.

It is its own module so the features' prompt texts can use it while
`appliance.prompts`, which builds the files, imports those texts.
"""

from __future__ import annotations

VOICES = {"de": "de", "en": "en-gb"}
"""The languages announcements exist in, with their espeak-ng voice."""
FALLBACK = "en"
"""What a user with any other language hears."""


def sound(language: str, name: str) -> str:
    """The sound file (for Playback / STREAM FILE) saying ``name`` in ``language``."""
    return f"appliance/{language if language in VOICES else FALLBACK}/{name}"
