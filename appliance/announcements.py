"""Announcements a forward can send a call to instead of a number.

"Office closed" is the usual one: outside office hours a group's scheduled
forward plays "we are closed, please call again during our business hours"
and hangs up, where a number would ring somebody who is not there.  A forward
names an announcement as its target, ``announcement:<name>``, checked against
the catalogue (`Announcements`) when it is stored.  The catalogue is the
built-in announcements, generated with the other prompts (`appliance.prompts`)
in German and English and played in the appliance's language, and the admin's
own recordings (`appliance.recordings`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

from appliance.sounds import VOICES, sound

log = Logger()

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
"""The built-in announcements."""
FALLBACK_NAME = "unavailable"
"""What a caller hears when a forward's announcement is gone (a recording deleted)."""


def target(name: str) -> str:
    """The forward target that plays announcement ``name``."""
    made = PREFIX + name
    if TARGET.match(made) is None:
        raise ValueError(f"{name!r} cannot name an announcement")
    return made


def name_of(forward_target: str) -> str | None:
    """The announcement a forward target names (known or not), or None when it is
    something else: a number."""
    match = TARGET.match(forward_target)
    return match.group(1) if match is not None else None


def is_announcement(forward_target: str) -> bool:
    """Does the target mean an announcement (well-formed or not)?"""
    return forward_target.startswith(PREFIX)


def file_name(name: str) -> str:
    return f"announce-{name}"


def sound_of(name: str, language: str) -> str:
    """The sound file saying announcement ``name`` in ``language`` (English for others)."""
    return sound(language, file_name(name))


def texts() -> dict[tuple[str, str], str]:
    """(language, file name) → text, for `appliance.prompts`."""
    return {(language, file_name(name)): by[language] for name, by in TEXTS.items() for language in VOICES}


class Recorded(Protocol):
    """The admin's own recordings, as the catalogue needs them (`appliance.recordings`)."""

    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def sound(self, name: str) -> str: ...

    def label(self, name: str) -> str: ...


class Announcements:
    """Every announcement a forward may name: the built-in ones, then the recordings."""

    def __init__(self, language: str = "de", recordings: Recorded | None = None) -> None:
        self.language = language
        self.recordings = recordings

    def known(self, name: str) -> bool:
        return name in TEXTS or (self.recordings is not None and self.recordings.exists(name))

    def names(self) -> list[str]:
        return [*NAMES, *(self.recordings.names() if self.recordings is not None else [])]

    def built_in(self, name: str) -> bool:
        return name in TEXTS

    def label(self, name: str) -> str:
        """A recording's label ("" for a built-in one: the page says those in its language)."""
        if name in TEXTS or self.recordings is None or not self.recordings.exists(name):
            return ""
        return self.recordings.label(name)

    def sound(self, name: str) -> str:
        """What Playback plays for ``name``; a name that is gone plays the fallback."""
        if name in TEXTS:
            return sound_of(name, self.language)
        if self.recordings is not None and self.recordings.exists(name):
            return self.recordings.sound(name)
        log.error("announcement {name!r} is gone; playing {fallback!r}", name=name, fallback=FALLBACK_NAME)
        return sound_of(FALLBACK_NAME, self.language)


KnownAnnouncement = Callable[[str], bool]
"""known(name): may a forward name this announcement?"""
