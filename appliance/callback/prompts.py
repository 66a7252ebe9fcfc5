"""The callback announcements in German and English.

The texts live here; `appliance.prompts` generates the sound files (with every
other feature's); `appliance.sounds` names them: ``appliance/<lang>/<name>``.
"""

from __future__ import annotations

from appliance.sounds import VOICES, sound

KEYS = "0123456789*#"
KEY_WORDS = {"de": {"*": "Stern", "#": "Raute"}, "en": {"*": "star", "#": "hash"}}

TEXTS: dict[str, dict[str, str]] = {
    "cc-offer": {
        "de": "Der gewünschte Teilnehmer ist zur Zeit nicht erreichbar. "
        "Für einen automatischen Rückruf drücken Sie die Taste {key}.",
        "en": "The person you are calling is not available at the moment. "
        "For an automatic callback, press {key}.",
    },
    "cc-confirm": {
        "de": "Ihr Rückruf ist vorgemerkt. Sie werden angerufen, sobald der Teilnehmer frei ist.",
        "en": "Your callback is booked. You will be called as soon as the line is free.",
    },
    "cc-refused": {
        "de": "Der Rückruf konnte nicht vorgemerkt werden.",
        "en": "The callback could not be booked.",
    },
    "cc-cancelled": {
        "de": "Ihre Rückrufwünsche wurden gelöscht.",
        "en": "Your callback requests have been cancelled.",
    },
    "cc-dnd-on": {"de": "Nicht stören ist eingeschaltet.", "en": "Do not disturb is on."},
    "cc-dnd-off": {"de": "Nicht stören ist ausgeschaltet.", "en": "Do not disturb is off."},
    "cw-on": {"de": "Anklopfen ist eingeschaltet.", "en": "Call waiting is on."},
    "cw-off": {"de": "Anklopfen ist ausgeschaltet.", "en": "Call waiting is off."},
}


def key_name(key: str) -> str:
    """File-name part for a DTMF key: ``5``, ``star``, ``hash``."""
    return {"*": "star", "#": "hash"}.get(key, key)


def offer_prompt(language: str, key: str) -> str:
    return prompt(language, f"cc-offer-{key_name(key)}")


def prompt(language: str, name: str) -> str:
    return sound(language, name)


def texts() -> dict[tuple[str, str], str]:
    """(language, file name) → text, every callback announcement."""
    out: dict[tuple[str, str], str] = {}
    for language in VOICES:
        for key in KEYS:
            word = KEY_WORDS[language].get(key, key)
            out[(language, f"cc-offer-{key_name(key)}")] = TEXTS["cc-offer"][language].format(key=word)
        for name, by_language in TEXTS.items():
            if name != "cc-offer":
                out[(language, name)] = by_language[language]
    return out
