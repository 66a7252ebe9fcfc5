"""The web page's words in German and English, and which language a visitor gets.

A small catalogue instead of gettext: a feature's pages add their phrases with
`add` when their module is imported.  A missing phrase shows its key, so a
gap is visible on the page rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.settings import Language, Text
from appliance.web.auth import MIN_PASSWORD_LENGTH

LANGUAGES: tuple[Language, ...] = ("de", "en")

CATALOGUE: dict[str, Text] = {}


def add(phrases: Mapping[str, Text]) -> None:
    """Add a page group's phrases; a key used twice with other words is a bug."""
    for key, text in phrases.items():
        if CATALOGUE.get(key, text) != text:
            raise ValueError(f"web phrase {key!r} defined twice with different words")
        CATALOGUE[key] = text


def translate(key: str, language: Language) -> str:
    text = CATALOGUE.get(key)
    return key if text is None else text.in_(language)


def as_language(value: object) -> Language | None:
    if value == "de":
        return "de"
    if value == "en":
        return "en"
    return None


def from_accept_language(header: str | None, default: Language) -> Language:
    """The first supported language in the browser's preference order."""
    if not header:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower()
        quality = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        language = as_language(tag.split("-")[0])
        if language is not None:
            return language
    return default


add(
    {
        "appliance": Text("Telephony appliance", "Telefonie-Appliance"),
        "login": Text("Log in", "Anmelden"),
        "logout": Text("Log out", "Abmelden"),
        "login_name": Text("Login (admin or your extension)", "Anmeldename (admin oder Ihre Rufnummer)"),
        "password": Text("Password", "Passwort"),
        "login_failed": Text("Login failed.", "Anmeldung fehlgeschlagen."),
        "login_locked": Text(
            "Too many failed attempts. Please try again later.",
            "Zu viele Fehlversuche. Bitte später erneut versuchen.",
        ),
        "forbidden": Text("Access denied", "Zugriff verweigert"),
        "forbidden_text": Text("You may not open this page.", "Sie dürfen diese Seite nicht öffnen."),
        "csrf_failed": Text(
            "The form has expired. Please reload the page and try again.",
            "Das Formular ist abgelaufen. Bitte die Seite neu laden und erneut versuchen.",
        ),
        "not_found": Text("Not found", "Nicht gefunden"),
        "login_busy": Text(
            "Too many logins at once. Please try again in a moment.",
            "Zu viele Anmeldungen gleichzeitig. Bitte gleich erneut versuchen.",
        ),
        "invalid_input": Text("Invalid request", "Ungültige Anfrage"),
        "invalid_input_text": Text(
            "The request holds characters or names that are not allowed.",
            "Die Anfrage enthält unzulässige Zeichen oder Namen.",
        ),
        "signed_in_as": Text("Signed in as", "Angemeldet als"),
        "save": Text("Save", "Speichern"),
        "saved": Text("Saved.", "Gespeichert."),
        "cancel": Text("Cancel", "Abbrechen"),
        "delete": Text("Delete", "Löschen"),
        "edit": Text("Edit", "Bearbeiten"),
        "filter": Text("Filter", "Filtern"),
        "language": Text("Language", "Sprache"),
        "lang_de": Text("German", "Deutsch"),
        "lang_en": Text("English", "Englisch"),
        "lang_default": Text("Appliance default", "Standard der Anlage"),
        "password_too_short": Text(
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters.",
            f"Das Passwort braucht mindestens {MIN_PASSWORD_LENGTH} Zeichen.",
        ),
        "fix_errors": Text(
            "Nothing was saved. Please correct the marked fields.",
            "Nichts wurde gespeichert. Bitte die markierten Felder korrigieren.",
        ),
    }
)
