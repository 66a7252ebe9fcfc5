"""What the forwarding feature codes say, in German and English.

Each outcome is one whole sentence ("Rufumleitung bei Besetzt aktiviert."),
generated with the other announcements by `appliance.prompts` (espeak-ng and
sox) and played as ``appliance/<lang>/fwd-…``; users of other languages hear
English.
"""

from __future__ import annotations

from appliance.sounds import VOICES, sound

TEXTS: dict[str, dict[str, str]] = {
    "fwd-unconditional-on": {
        "de": "Sofortige Rufumleitung aktiviert.",
        "en": "Call forwarding activated for all calls.",
    },
    "fwd-unconditional-off": {
        "de": "Sofortige Rufumleitung deaktiviert.",
        "en": "Call forwarding for all calls deactivated.",
    },
    "fwd-busy-on": {"de": "Rufumleitung bei Besetzt aktiviert.", "en": "Call forwarding on busy activated."},
    "fwd-busy-off": {
        "de": "Rufumleitung bei Besetzt deaktiviert.",
        "en": "Call forwarding on busy deactivated.",
    },
    "fwd-noanswer-on": {
        "de": "Rufumleitung bei Nichtmelden aktiviert.",
        "en": "Call forwarding on no answer activated.",
    },
    "fwd-noanswer-off": {
        "de": "Rufumleitung bei Nichtmelden deaktiviert.",
        "en": "Call forwarding on no answer deactivated.",
    },
    "fwd-all-off": {"de": "Alle Rufumleitungen deaktiviert.", "en": "All call forwarding deactivated."},
    "fwd-invalid": {"de": "Ungültige Eingabe.", "en": "Invalid entry."},
}

SENTENCES: dict[tuple[str, ...], str] = {
    **{(kind, "activated"): f"fwd-{kind}-on" for kind in ("unconditional", "busy", "noanswer")},
    **{(kind, "deactivated"): f"fwd-{kind}-off" for kind in ("unconditional", "busy", "noanswer", "all")},
    ("invalid",): "fwd-invalid",
}
"""The words the service asks for → the sentence that says them."""


def prompts(language: str, *names: str) -> str:
    """The sound file that says ``names`` (``"busy", "activated"``) in ``language``."""
    return sound(language, SENTENCES[names])


def texts() -> dict[tuple[str, str], str]:
    """(language, file name) → text, every forwarding announcement."""
    return {(language, name): by[language] for name, by in TEXTS.items() for language in VOICES}
