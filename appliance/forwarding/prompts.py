"""Which sound file says what, per language.

Only Asterisk's English core sounds exist in the lab today; a German set will
be added under ``custom/appliance/de/``.  Until then every name falls back to
English, so callers hear a confirmation either way.
"""

from __future__ import annotations

PROMPTS: dict[str, dict[str, str]] = {
    "en": {
        "unconditional": "call-fwd-unconditional",
        "busy": "call-fwd-on-busy",
        "noanswer": "call-fwd-no-ans",
        "activated": "activated",
        "deactivated": "de-activated",
        "invalid": "invalid",
        "beep": "beep",
    },
    "de": {},
}


def prompt(language: str, name: str) -> str:
    """The sound file (without extension) that says ``name`` in ``language``."""
    return PROMPTS.get(language, {}).get(name) or PROMPTS["en"][name]


def prompts(language: str, *names: str) -> str:
    """Several prompts for one ``Playback`` (``a&b``)."""
    return "&".join(prompt(language, name) for name in names)
