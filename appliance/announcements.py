"""Announcements a forward can send a call to instead of a number.

"Office closed" is the usual one: outside office hours a group's scheduled
forward plays "we are closed, please call again during our business hours"
and hangs up, where a number would ring somebody who is not there.  A forward
names an announcement as its target, ``announcement:<name>``; the names are a
fixed catalogue, so a record is checked against it when it is stored (and a
target that names no announcement is never played).  The texts are generated
with the other prompts (`appliance.prompts`) in German and English and played
in the appliance's language.
"""

from __future__ import annotations

import re

from appliance.sounds import VOICES, sound

PREFIX = "announcement:"

TARGET = re.compile(r"^announcement:([a-z][a-z0-9-]{0,31})\Z")
"""How a forward's target names an announcement (never anything Dial() could take)."""

TEXTS: dict[str, dict[str, str]] = {
    "closed": {
        "de": (
            "Guten Tag. Sie rufen außerhalb unserer Geschäftszeiten an. "
            "Bitte rufen Sie während unserer Geschäftszeiten wieder an. Vielen Dank und auf Wiederhören."
        ),
        "en": (
            "Hello. You are calling outside our business hours. "
            "Please call again during our business hours. Thank you, and goodbye."
        ),
    },
    "holiday": {
        "de": (
            "Guten Tag. Heute ist unser Büro geschlossen. "
            "Bitte rufen Sie an einem unserer Arbeitstage wieder an. Vielen Dank und auf Wiederhören."
        ),
        "en": (
            "Hello. Our office is closed today. "
            "Please call again on one of our working days. Thank you, and goodbye."
        ),
    },
    "unavailable": {
        "de": (
            "Guten Tag. Im Moment ist leider niemand für Sie erreichbar. "
            "Bitte versuchen Sie es später noch einmal. Vielen Dank und auf Wiederhören."
        ),
        "en": (
            "Hello. Unfortunately nobody can take your call at the moment. "
            "Please try again later. Thank you, and goodbye."
        ),
    },
}
"""Every announcement, by name, in every language of `appliance.sounds.VOICES`."""

NAMES = tuple(TEXTS)


def target(name: str) -> str:
    """The forward target that plays announcement ``name``."""
    if name not in TEXTS:
        raise ValueError(f"{name!r} is not an announcement (one of {', '.join(NAMES)})")
    return PREFIX + name


def name_of(forward_target: str) -> str | None:
    """The announcement a forward target names, or None when it is something else
    (a number) or names no announcement of the catalogue."""
    match = TARGET.match(forward_target)
    if match is None or match.group(1) not in TEXTS:
        return None
    return match.group(1)


def is_announcement(forward_target: str) -> bool:
    """Does the target at least look like an announcement (known or not)?"""
    return forward_target.startswith(PREFIX)


def file_name(name: str) -> str:
    return f"announce-{name}"


def sound_of(name: str, language: str) -> str:
    """The sound file saying announcement ``name`` in ``language`` (English for others)."""
    return sound(language, file_name(name))


def texts() -> dict[tuple[str, str], str]:
    """(language, file name) → text, for `appliance.prompts`."""
    return {(language, file_name(name)): by[language] for name, by in TEXTS.items() for language in VOICES}
